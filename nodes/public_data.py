"""What the public results site shows of a publication, and its open-data files (no I/O).

Everything here is computed from a :class:`sync.publication.Published` exactly as it was signed (and
the framework it names, for indicator names and groups): the ranking table, a unit's breakdown by
indicator group (the sum of its leaves' points under each top-level indicator, as the signed
explanation states them), and the three downloads:

- CSV (UTF-8 with a BOM, so Excel opens the Chinese names right; CRLF): a tidy layout, one row per
  figure, columns ``cycle, period, class, version, state, digest, unit, unit_name, measure,
  indicator, indicator_name, value, source, bundle_id``; ``measure`` is ``value`` (one row per
  unit × indicator value published, with its source and the bundle it rests on), ``score``,
  ``rank`` or ``grade`` (one row each per unit; indicator empty);
- SDMX-CSV 2.0 (nodes/exchange/sdmx.py, dataflow ``FEDAPPRAISAL:DF_APPRAISAL(1.0.0)``): one
  observation per unit × indicator value, plus the pseudo-indicators ``SCORE`` (its COMMENT is the
  grade) and ``RANK`` per assessed unit;
- JSON: the publication's figures as :func:`document` lays them out (gateway/schemas.py
  ``PublicPublication`` states the schema).

Decimal figures are written as their canonical text (aggregator.numbers.to_text), as signed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aggregator.framework import Framework
from aggregator.numbers import to_text
from nodes.exchange.cells import Cell
from nodes.exchange.sdmx import write_sdmx_csv
from sync.publication import Figure, Published

CSV_COLUMNS = ("cycle", "period", "class", "version", "state", "digest", "unit", "unit_name", "measure", "indicator",
               "indicator_name", "value", "source", "bundle_id")
SCORE, RANK = "SCORE", "RANK"  # the SDMX pseudo-indicators


def assessed(f: Figure) -> bool:
    """False: the unit reported nothing and is listed, not scored (no rank, no grade)."""
    return bool(f.explain().get("assessed", True)) and f.rank > 0


def ranked(doc: Published) -> list[Figure]:
    """The units in rank order, those not assessed last (by code)."""
    return sorted(doc.units, key=lambda f: (0, f.rank, f.unit) if assessed(f) else (1, 0, f.unit))


@dataclass(frozen=True)
class Group:
    code: str
    name: str
    weight: str  # the group's weight as the framework states it
    points: str  # the unit's points under it: Σ of its leaves' published points


def top_of(fw: Framework, code: str) -> str:
    seen = 0
    ind = fw.indicator(code)
    while ind is not None and ind.parent_code and seen < 64:
        parent = fw.indicator(ind.parent_code)
        if parent is None:
            break
        ind, seen = parent, seen + 1
    return ind.code if ind is not None else code


def groups(fw: Framework | None, f: Figure) -> list[Group]:
    """The unit's points per top-level indicator group, in the framework's order."""
    parts = f.explain().get("parts") or []
    sums: dict[str, Decimal] = {}
    for p in parts if isinstance(parts, list) else []:
        if not isinstance(p, dict) or "indicator" not in p:
            continue
        top = top_of(fw, str(p["indicator"])) if fw is not None else str(p["indicator"])
        sums[top] = sums.get(top, Decimal(0)) + Decimal(str(p.get("score", "0")))
    order = [i.code for i in fw.indicators if not i.parent_code] if fw is not None else []
    out = []
    for code in [*[c for c in order if c in sums], *sorted(c for c in sums if c not in order)]:
        ind = fw.indicator(code) if fw is not None else None
        out.append(Group(code, ind.name if ind is not None else code, to_text(ind.weight) if ind is not None else "",
                         to_text(sums[code])))
    return out


def indicator_names(fw: Framework | None) -> dict[str, str]:
    return {i.code: i.name for i in fw.indicators} if fw is not None else {}


def csv_bytes(doc: Published, fw: Framework | None) -> bytes:
    names = indicator_names(fw)
    buffer = io.StringIO(newline="")
    w = csv.writer(buffer, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    head = (doc.cycle, doc.period, doc.framework.unit_class, doc.version, doc.state, doc.digest)
    for f in ranked(doc):
        for v in f.values:
            w.writerow((*head, f.unit, f.name, "value", v.indicator, names.get(v.indicator, ""), to_text(v.value),
                        v.source, v.bundle_id))
        w.writerow((*head, f.unit, f.name, "score", "", "", to_text(f.score), "", ""))
        w.writerow((*head, f.unit, f.name, "rank", "", "", str(f.rank), "", ""))
        w.writerow((*head, f.unit, f.name, "grade", "", "", f.grade, "", ""))
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def sdmx_bytes(doc: Published) -> bytes:
    cells: list[Cell] = []
    for f in ranked(doc):
        cells.extend(Cell(f.unit, v.indicator, doc.period, to_text(v.value), v.source) for v in f.values)
        if assessed(f):
            cells.append(Cell(f.unit, SCORE, doc.period, to_text(f.score), f.grade))
            cells.append(Cell(f.unit, RANK, doc.period, str(f.rank)))
    return write_sdmx_csv(cells, max_values=max(len(cells), 1))


def document(doc: Published, node_name: str, fw: Framework | None) -> dict[str, Any]:
    """The JSON open-data document (gateway/schemas.py ``PublicPublication``)."""
    names = indicator_names(fw)
    return {
        **summary(doc, node_name),
        "reason": doc.reason, "previous": doc.previous, "as_of": doc.as_of,
        "units": [{"unit": f.unit, "name": f.name, "score": to_text(f.score), "rank": f.rank, "grade": f.grade,
                   "assessed": assessed(f),
                   "values": [{"indicator": v.indicator, "name": names.get(v.indicator, ""), "value": to_text(v.value),
                               "source": v.source, "bundle_id": v.bundle_id} for v in f.values],
                   "groups": [g.__dict__ for g in groups(fw, f)]}
                  for f in ranked(doc)],
    }


def summary(doc: Published, node_name: str) -> dict[str, Any]:
    f = doc.framework
    return {"digest": doc.digest, "node": doc.node, "node_name": node_name, "cycle": doc.cycle, "period": doc.period,
            "unit_class": f.unit_class, "state": doc.state, "version": doc.version, "published_at": doc.published_at,
            "window_opens": doc.window_opens, "window_closes": doc.window_closes,
            "framework": {"issuer": f.issuer, "cycle": f.cycle, "unit_class": f.unit_class, "version": f.version,
                          "digest": f.digest},
            "unit_count": len(doc.units),
            "links": {"proof": f"/public/proofs/{doc.digest}.pb", "csv": f"/public/data/{doc.digest}.csv",
                      "sdmx": f"/public/data/{doc.digest}.sdmx.csv", "json": f"/public/data/{doc.digest}.json"}}
