"""Exchange formats: values of leaf indicators to and from other systems' documents.

Pure conversion, bytes in and bytes out (no store, no network, no clock):

| module | what |
|---|---|
| ``cells`` | :class:`Cell` (unit, indicator, period, value, comment); :class:`ExchangeError` with every :class:`Problem` |
| ``mapping`` | :class:`CodeMap`: our codes and DHIS2 uids/codes, one to one, from a YAML file (identity when none) |
| ``periods`` | our periods and their equals in DHIS2, ADX and SDMX; anything else refused |
| ``dhis2`` | DHIS2 ``dataValueSets`` JSON, read and written |
| ``adx`` | IHE ADX XML (``urn:ihe:qrph:adx:2015``), read (defusedxml, no DTD) and written |
| ``sdmx`` | SDMX-CSV 2.0, written, and read back in the same shape |

A reader takes a whole document or nothing: it collects every problem, then raises once.
"""
