"""/api/v1/frameworks (read) and /api/v1/admin/frameworks (publish)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from aggregator.errors import AppraisalError
from gateway.guards import actor, require
from gateway.params import Envelopes, OptCycle
from gateway.problems import documented
from gateway.response_cache import ANSWER_SECONDS
from gateway.schemas import (
    FrameworkView,
    IndicatorView,
    Link,
    NodeRef,
    ParentPin,
    Published,
    PublishFramework,
)
from nodes.services.cascade import CascadeService
from nodes.services.read_models import FrameworkView as Held
from nodes.services.read_models import ReadModels


def view(held: Held, envelopes: bool) -> FrameworkView:
    row, fw = held.record, held.framework
    return FrameworkView(
        digest=row.digest, role=row.role, issuer=fw.issuer, issuer_name=fw.issuer_name, cycle=fw.cycle,
        unit_class=fw.unit_class, version=fw.version, title=fw.title,
        parent=None if fw.parent is None else ParentPin(issuer=fw.parent.issuer, version=fw.parent.version,
                                                        digest=fw.parent.digest),
        units=[NodeRef(code=u.code, name=u.name) for u in fw.units],
        indicators=[IndicatorView(
            code=i.code, name=i.name, parent_code=i.parent_code, weight=str(i.weight), leaf=i.leaf,
            unit=i.measure_unit, direction=i.direction, rollup=i.rollup,
            target=None if i.target is None else str(i.target),
            links=[Link(parent_indicator=lk.parent_indicator, rule=lk.rule, share=str(lk.share),
                        parent_framework_digest=lk.parent_framework_digest) for lk in i.links],
        ) for i in fw.indicators],
        **({"cascade": base64.b64encode(row.cascade).decode()} if envelopes else {}),
    )


class FrameworkController(Controller):
    tags = ("frameworks",)

    @get("/api/v1/frameworks", summary="Frameworks held (received and issued), with each indicator's link",
         cache=ANSWER_SECONDS, responses=documented(400))
    async def frameworks(self, read: NamedDependency[ReadModels], cycle: OptCycle = None,
                         envelopes: Envelopes = False) -> list[FrameworkView]:
        return [view(h, envelopes) for h in await read.frameworks(cycle)]

    @post("/api/v1/admin/frameworks", summary="Publish a framework (YAML text) for this node's children",
          tags=["admin"], status_code=201, guards=[require("frameworks.manage")],
          responses=documented(400, 401, 403, 409, 422), security=[{"bearer": []}])
    async def publish(self, request: Request[Any, Any, Any], cascade: NamedDependency[CascadeService],
                      data: JSONBody[PublishFramework]) -> Published:
        # The client's file name only labels messages; the file itself always has a fixed name.
        label = Path(data.filename).name or "framework.yaml"
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "framework.yaml"
            await asyncio.to_thread(path.write_text, data.yaml, encoding="utf-8")
            try:
                digest = await cascade.publish_file(path, label=label, actor=actor(request).actor)
            except AppraisalError as exc:
                raise type(exc)(str(exc).replace(str(path), label), code=exc.code) from None
        return Published(digest=digest)
