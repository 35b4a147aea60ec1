"""The OpenAPI document with msgspec's own JSON Schema for every body.

msgspec validates the bodies, so its schema is the exact statement of what is accepted: patterns
on dictionary keys (``propertyNames``), constraints inside unions, ``additionalProperties: false``
for bodies that refuse unknown fields, and tagged unions. Litestar's generator loses some of
these, so the component schemas of gateway/schemas.py (and of every ``gateway/*_schemas.py``, the
bodies of one URL group each) are replaced by msgspec's when the document is rendered (computed once)."""

from __future__ import annotations

import functools
import sys
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from gateway import schemas


@functools.cache
def body_components() -> dict[str, Any]:
    # the controllers imported their schema modules before any document is rendered
    modules = [schemas, *(m for name, m in sorted(sys.modules.items())
                          if name.startswith("gateway.") and name.endswith("_schemas"))]
    structs = [v for m in modules for v in vars(m).values()
               if isinstance(v, type) and issubclass(v, msgspec.Struct) and v.__module__ == m.__name__
               and not v.__name__.startswith("_")]
    _, components = msgspec.json.schema_components(structs, ref_template="#/components/schemas/{name}")
    return components


class SchemaRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        doc = dict(openapi_schema)
        components = dict(doc.get("components") or {})
        components["schemas"] = {**(components.get("schemas") or {}), **body_components()}
        doc["components"] = components
        return self.render_json(request, doc)
