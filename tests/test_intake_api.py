"""The intake JSON API (what scripts and other systems use): accounts, the task book, batches refused
with every cell named in the problem's ``errors``, review decisions, and DHIS2 / ADX / SDMX-CSV
documents imported as entries and the values that count exported again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from nodes.accounts import SYSTEM
from nodes.clock import FixedClock
from nodes.intake import window_of
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services, gateway_services
from tests.support.nodes import make_county
from tests.test_accounts import no_redirects, sign_in

TOWNS = ("510104017", "510104018")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Node, AsyncTestClient[Any], dict[str, str]]]:
    base, _ = await make_county(tmp_path)
    node = build_services(base.context.cfg, base.context.store, FixedClock(window_of("2026-Y")[0] + 86400 * 40))
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield node, client, {"authorization": f"Bearer {node.context.cfg.admin_token}"}
    await base.context.store.close()


async def test_users_tasks_entries_and_review_over_json(api: tuple[Node, AsyncTestClient[Any], dict[str, str]]) -> None:
    _node, client, token = api
    r = await client.post("/api/v1/admin/users", headers=token, json={"login": "tjj", "name": "张三", "roles": ["provider"],
                                                                 "org": "区统计局", "password": "tjj-password-1"})
    assert r.status_code == 201 and r.json() == {"login": "tjj", "one_time_password": ""}
    r = await client.post("/api/v1/admin/users", headers=token, json={"login": "li", "name": "李四", "roles": ["reviewer"]})
    assert r.status_code == 201 and len(r.json()["one_time_password"]) >= 16
    r = await client.post("/api/v1/admin/users", headers=token, json={"login": "x", "name": "x", "roles": ["king"]})
    assert r.status_code == 400
    assert [u["login"] for u in (await client.get("/api/v1/users", headers=token)).json()] == ["li", "tjj"]
    assert (await client.post("/api/v1/tasks/generate", headers=token, json={"cycle": "2026"})).json()["tasks"] == 2
    csrf = await sign_in(client, "tjj", "tjj-password-1")
    session = {"x-csrf-token": csrf}
    assert (await client.get("/api/v1/tasks", params={"cycle": "2026"}, headers=session)).json() == []
    r = await client.post("/api/v1/admin/users", headers=session, json={"login": "y1", "name": "y", "roles": ["office"]})
    assert r.status_code == 403  # a provider manages no accounts
    await client.post("/logout", data={"_csrf": csrf})
    await _node.intake.edit_tasks("2026", "A1", [], SYSTEM, provider="区统计局",
                                  frequency="Y", confirm=False, minimum="0", maximum="")
    csrf = await sign_in(client, "tjj", "tjj-password-1")
    session = {"x-csrf-token": csrf}
    grids = (await client.get("/api/v1/entries", params={"cycle": "2026", "period": "2026-Y"}, headers=session)).json()
    assert [c["unit"] for c in grids[0]["cells"]] == list(TOWNS)
    r = await client.post("/api/v1/entries/batch", headers=session, json={
        "cycle": "2026", "period": "2026-Y", "submit": True,
        "cells": [{"unit": TOWNS[0], "key": "A1", "value": "x"}, {"unit": TOWNS[1], "key": "A1", "value": "-1"}]})
    body = r.json()
    assert r.status_code == 422 and [(e["where"], e["code"]) for e in body["errors"]] == [
        ("cells[0]", "intake.not_a_number"), ("cells[1]", "intake.below_minimum")]
    r = await client.post("/api/v1/entries/batch", headers=session, json={
        "cycle": "2026", "period": "2026-Y", "submit": True,
        "cells": [{"unit": TOWNS[0], "key": "A1", "value": "1200"}, {"unit": TOWNS[1], "key": "A1", "value": "900"}]})
    assert r.status_code == 201 and r.json()["submitted"] == 2
    r = await client.post("/api/v1/entries/review", headers=token, json={
        "cycle": "2026", "period": "2026-Y", "decision": "approve", "cells": [{"unit": t, "key": "A1"} for t in TOWNS]})
    assert r.status_code == 201 and r.json()["approved"] == 2
    # what counts now, exported as SDMX-CSV and DHIS2, and read back by the readers of those formats
    r = await client.get("/api/v1/entries/export", headers=token,
                         params={"cycle": "2026", "period": "2026-Y", "format": "sdmx"})
    assert r.status_code == 200 and "OBS_VALUE" in r.text and f"{TOWNS[0]},A1,2026,1200" in r.text.replace('"', "")
    r = await client.get("/api/v1/entries/export", headers=token,
                         params={"cycle": "2026", "period": "2026-Y", "format": "dhis2"})
    values = {(v["orgUnit"], v["dataElement"]): v["value"] for v in r.json()["dataValues"]}
    assert values[(TOWNS[0], "A1")] == "1200" and values[(TOWNS[1], "A1")] == "900"


async def test_a_dhis2_document_is_imported_whole_or_not_at_all(
        api: tuple[Node, AsyncTestClient[Any], dict[str, str]]) -> None:
    node, client, token = api
    await client.post("/api/v1/tasks/generate", headers=token, json={"cycle": "2026"})
    doc = {"dataSet": "x", "period": "2026", "dataValues": [
        {"dataElement": "A1", "orgUnit": TOWNS[0], "value": "1100"},
        {"dataElement": "A1", "orgUnit": TOWNS[1], "value": "abc"}]}
    r = await client.post("/api/v1/entries/import", headers={**token, "content-type": "application/json"},
                          params={"format": "dhis2", "cycle": "2026"}, content=json.dumps(doc).encode())
    assert r.status_code == 422 and any("dataValues[1]" in e["where"] for e in r.json()["errors"]), r.text
    async with node.context.store.read() as rd:
        assert await rd.intake.entries("2026") == []
    doc["dataValues"][1]["value"] = "1000"
    r = await client.post("/api/v1/entries/import", headers={**token, "content-type": "application/json"},
                          params={"format": "dhis2", "cycle": "2026", "submit": "true"}, content=json.dumps(doc).encode())
    assert r.status_code == 201 and r.json() == {"format": "dhis2", "periods": ["2026-Y"], "saved": 2, "submitted": 2}
    async with node.context.store.read() as rd:
        assert {(e.unit, e.value) for e in await rd.intake.entries("2026")} == {(TOWNS[0], "1100"), (TOWNS[1], "1000")}
