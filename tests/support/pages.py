"""What a page may contain under the gateway's CSP (script-src 'self', no inline script): script
elements that load the gateway's own files, and JSON data blocks (never run) whose text cannot close
the element (Jinja's tojson writes <, > and & as \\u escapes)."""

from __future__ import annotations

import re

OWN_SCRIPT = re.compile(r'<script src="/static/[\w./-]+" defer></script>')
DATA_BLOCK = re.compile(r'<script type="application/json" id="[\w-]+">([^<]*)</script>')


def assert_no_inline_script(html: str) -> None:
    rest = DATA_BLOCK.sub("", OWN_SCRIPT.sub("", html))
    assert "<script" not in rest.lower(), rest[rest.lower().index("<script"):][:200]
    assert " style=" not in html and "<style" not in html.lower()  # nothing the CSP would have to allow
    assert OWN_SCRIPT.search(html)  # the pattern above still matches how the layout loads its scripts
