"""The gateway through Litestar's test client (no network needed): problem+json for every error,
schemas for every body, security headers, autoescaped pages, and the admin guard. Real node
services on a real SQLite store holding a real signed cascade."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from nodes.runtime import NodeServices, gateway_services
from tests.support.nodes import make_county
from tests.support.pages import assert_no_inline_script

TOKEN_HEADER = "authorization"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[AsyncTestClient[Any], NodeServices, str]]:
    node, _fed = await make_county(tmp_path)
    client = AsyncTestClient(app=create_app(gateway_services(node)))
    async with client:
        yield client, node, node.context.cfg.admin_token
    await node.context.store.close()


def is_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(code) and body["title"] and isinstance(body["detail"], str)


async def test_every_error_is_a_problem_document(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, _node, token = gateway
    auth = {TOKEN_HEADER: f"Bearer {token}"}
    is_problem(await client.get("/api/v1/nothing-here"), 404, "not_found")
    is_problem(await client.get("/api/v1/rankings", params={"cycle": "26"}, headers=auth), 400, "request.malformed")
    is_problem(await client.get("/api/v1/flags", params={"years": 99}, headers=auth), 400, "request.malformed")
    is_problem(await client.post("/api/v1/admin/values", json={"cycle": "2026", "period": "2026-Y", "values": {}}),
               401, "auth.required")
    # A non-ASCII Authorization header is a clean refusal, not a 500 (compare_digest on str would raise).
    is_problem(await client.post("/api/v1/admin/values", headers={TOKEN_HEADER: "Bearer 令牌".encode()},
                                 json={"cycle": "2026", "period": "2026-Y", "values": {}}), 401, "auth.required")
    is_problem(await client.post("/api/v1/admin/values", headers=auth,
                                 json={"cycle": "2026", "period": "2026-Y", "values": {"A1": "1"}, "extra": 1}),
               400, "request.malformed")
    is_problem(await client.post("/api/v1/admin/values", headers=auth, content=b"{not json"), 400, "request.malformed")
    # Well-formed, but the county holds no framework for 2027: a conflict with what the node holds.
    is_problem(await client.post("/api/v1/admin/values", headers=auth,
                                 json={"cycle": "2027", "period": "2027-Y", "values": {"A1": "1"}}),
               409, "entry.no_framework")
    is_problem(await client.post("/api/v1/admin/values", headers=auth,
                                 json={"cycle": "2026", "period": "2026-Y", "values": {"ZZ9": "1"}}),
               422, "entry.unknown_indicator")
    is_problem(await client.post("/api/v1/admin/values", headers=auth,
                                 json={"cycle": "2026", "period": "2025-Y", "values": {"A1": "1"}}), 422, "input.period")
    is_problem(await client.post("/api/v1/admin/reviews", headers=auth,
                                 json={"node": "510104017", "bundle_id": "0" * 64, "decision": "approve"}),
               404, "review.no_such_bundle")
    is_problem(await client.post("/api/v1/admin/revocations", headers=auth,
                                 json={"code": "510703001", "serial": 1, "reason": "x"}), 422, "revocations.not_a_child")
    is_problem(await client.post("/api/v1/admin/frameworks", headers=auth, json={"yaml": "issuer: [unclosed"}),
               422, "framework_file.malformed")
    # Found by Schemathesis: a control character made PyYAML's reader raise before parsing began (a 500).
    r = await client.post("/api/v1/admin/frameworks", headers=auth, json={"yaml": "g\u00f8\u0084"})
    is_problem(r, 422, "framework_file.malformed")
    assert "U+0084" in r.json()["detail"] and "framework.yaml:1" in r.json()["detail"]


async def test_office_enters_values_and_reads_them_back(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, _node, token = gateway
    r = await client.post("/api/v1/admin/values", headers={TOKEN_HEADER: f"Bearer {token}"},
                          json={"cycle": "2026", "period": "2026-Y", "values": {"A1": "１２.5", "B3": 80}})
    assert r.status_code == 201, r.text
    assert len(r.json()["bundle_id"]) == 64
    rows = (await client.get("/api/v1/values", params={"cycle": "2026"}, headers={TOKEN_HEADER: f"Bearer {token}"})).json()
    assert {(v["indicator"], v["value"], v["source"]) for v in rows} == {("A1", "12.5", "entered"),
                                                                         ("B3", "80", "entered")}
    sync = (await client.get("/api/v1/sync")).json()
    assert sync["results_to_parent"]["pending"] == 1 and sync["gave_up"] == []
    audit = (await client.get("/api/v1/audit", params={"action": "enter.values"},
                              headers={TOKEN_HEADER: f"Bearer {token}"})).json()
    assert audit["intact"] and audit["entries"][0]["actor"] == "admin"
    detail = audit["entries"][0]["detail"]  # issue 9 item 14: what was typed, beside what counts
    assert detail["values"] == {"A1": "12.5", "B3": "80"} and detail["as_entered"] == {"A1": "１２.5"}


async def test_the_audit_log_is_the_offices_newest_first_page_by_page(
        gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, node, token = gateway
    auth = {TOKEN_HEADER: f"Bearer {token}"}
    is_problem(await client.get("/api/v1/audit"), 401, "auth.required")
    is_problem(await client.get("/api/v1/audit", headers={TOKEN_HEADER: "Bearer not-the-token"}), 401, "auth.required")
    async with node.context.store.tx() as tx:
        await tx.audit.append_many([("510104", "accept.results", f"b{i}", {"i": i}) for i in range(25)], 1_800_000_000)
    seen: list[int] = []
    params: dict[str, Any] = {"action": "accept.results", "limit": 10}
    while True:
        page = (await client.get("/api/v1/audit", params=params, headers=auth)).json()
        assert page["intact"] and len(page["entries"]) <= 10
        seen += [e["seq"] for e in page["entries"]]
        if page["next"] is None:
            break
        params["before"] = page["next"]
    assert [int(s) for s in seen] == sorted(seen, reverse=True) and len(seen) == 25
    newest = (await client.get("/api/v1/audit", params={"limit": 1}, headers=auth)).json()
    assert newest["entries"][0]["subject"] == "b24" and newest["verified_seq"] == newest["entries"][0]["seq"]
    is_problem(await client.get("/api/v1/audit", params={"limit": 0}, headers=auth), 400, "request.malformed")


async def test_metrics_count_refusals_and_replays_per_sender_in_each_nodes_own_registry(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from sync.results_sender import send_bundle
    from tests.support.receivers import Memory
    from tests.test_review import me_of

    node, fed = await make_county(tmp_path / "a")
    other, _ = await make_county(tmp_path / "b")
    try:
        async with node.context.store.read() as r:
            fw_digest = (await r.frameworks.list(role="issued"))[-1].digest
        mem = Memory()
        await send_bundle(mem, me_of(fed, "510104017"), cycle="2026", period="2026-Y", framework_digest=fw_digest,
                          values={"A1": Decimal(5), "B3": Decimal(80)}, child_scores=(), now=int(time.time()))
        assert (await node.results.submit(mem.queued[0], "510104017"))[0]
        assert (await node.results.submit(mem.queued[0], "510104017"))[0]  # a replay: taken once, counted
        for _ in range(3):  # any node's certificate may call SubmitResults: named, and counted
            assert not (await node.results.submit(b"\xff\xff not a message", "5107"))[0]

        async def samples(n: NodeServices) -> dict[tuple[str, str], float]:
            async with AsyncTestClient(app=create_app(gateway_services(n))) as client:
                is_problem(await client.get("/metrics"), 401, "auth.required")
                r = await client.get("/metrics", headers={TOKEN_HEADER: f"Bearer {n.context.cfg.admin_token}"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
            return {(s.labels["sender"], s.labels["kind"]): s.value for f in text_string_to_metric_families(r.text)
                    if f.name == "fedappraisal_flagged_messages" for s in f.samples if s.name.endswith("_total")}

        assert await samples(node) == {("grpc:510104017", "replay"): 1, ("grpc:5107", "rejected"): 3}
        assert await samples(other) == {}  # several nodes in one process: each has its own registry
        assert node.metrics.registry is not other.metrics.registry
        async with AsyncTestClient(app=create_app(gateway_services(node))) as client:
            audit = (await client.get("/api/v1/audit", headers={TOKEN_HEADER: f"Bearer {node.context.cfg.admin_token}"},
                                      params={"action": "reject.results"})).json()
        assert {(c["sender"], c["total"], c["pending"]) for c in audit["counters"]} >= {("grpc:5107", 3, 2)}
        (entry,) = audit["entries"]  # one full entry; the other two wait in the window, counted
        assert entry["detail"]["sender"] == "grpc:5107" and entry["detail"]["code"] == "results.malformed"
    finally:
        await node.context.store.close()
        await other.context.store.close()


async def test_security_headers_on_every_response(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, _node, _token = gateway
    for path in ("/", "/public", "/health", "/api/v1/status", "/api/v1/nothing-here", "/static/app.css", "/schema/openapi.json"):
        r = await client.get(path)
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "same-origin", path


async def test_pages_are_templates_with_autoescaping(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>"
    node, _fed = await make_county(tmp_path, children=[{"code": "510104017", "name": hostile},
                                                       {"code": "510104018", "name": "东湖街道"}])
    try:
        async with node.context.store.tx() as tx:
            digest = (await tx.frameworks.list(role="issued"))[-1].digest
            await tx.results.put(node="510104017", cycle="2026", period="2026-Y", framework_digest=digest,
                                 values={"A1": "5"}, source="reported", bundle_id="b", now=1)
        async with AsyncTestClient(app=create_app(gateway_services(node))) as client:
            page = await client.get("/dashboard", params={"cycle": "2026", "period": "2026-Y", "indicator": "A1"},
                                    headers={TOKEN_HEADER: f"Bearer {node.context.cfg.admin_token}"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert hostile not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert_no_inline_script(page.text)  # nothing the CSP would have to allow
        assert 'href="/static/app.css"' in page.text and "锦江区" in page.text
    finally:
        await node.context.store.close()


async def test_openapi_describes_every_body(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, _node, _token = gateway
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"Problem", "EnterValues", "EnterAssessment", "Approve", "Return", "Revoke", "PublishFramework", "Ranking",
            "Drilldown", "SyncStatus", "AuditLog"} <= set(schemas)
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) == 47
    for path, method, op in operations:
        ok = [s for s in op["responses"] if s.startswith("2")]
        assert ok, (method, path)
        for status, resp in op["responses"].items():
            if status == "204":
                continue
            content = resp.get("content")
            assert content, (method, path, status)
            schema = next(iter(content.values()))["schema"]
            if path == "/api/v1/entries/export" and status == "200":  # another system's document, typed
                assert all("type" in m["schema"] for m in content.values()), content
                continue
            assert "$ref" in str(schema), (method, path, status, schema)
            if not status.startswith("2"):
                assert "application/problem+json" in content, (method, path, status)
        if method == "post" and path == "/api/v1/entries/import":  # another system's document, typed per media type
            assert all("type" in m["schema"] for m in op["requestBody"]["content"].values()), op["requestBody"]
        elif method == "post":
            body = op["requestBody"]["content"]["application/json"]["schema"]
            assert "$ref" in str(body), (path, body)
            assert "401" in op["responses"] and "400" in op["responses"], path
        for param in op.get("parameters", []):
            if param["name"] in ("cycle", "period"):
                assert "pattern" in str(param["schema"]), (path, param)


async def test_body_schemas_state_what_msgspec_enforces(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, _node, token = gateway
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    values = schemas["EnterValues"]
    assert values["additionalProperties"] is False  # unknown fields are refused, and the schema says so
    assert "pattern" in values["properties"]["values"]["propertyNames"]  # indicator codes as keys
    assert {s.get("type") for s in values["properties"]["values"]["additionalProperties"]["anyOf"]} == {"string",
                                                                                                        "integer"}
    assert "note" in schemas["Return"]["required"] and "note" not in schemas["Approve"]["required"]
    # A return without a reason does not fit the schema, so it is refused as malformed, naming the field.
    r = await client.post("/api/v1/admin/reviews", headers={TOKEN_HEADER: f"Bearer {token}"},
                          json={"node": "510104017", "bundle_id": "0" * 64, "decision": "return"})
    is_problem(r, 400, "request.malformed")
    assert "note" in r.text
    # 405 names the methods the path allows (RFC 9110).
    r = await client.delete("/api/v1/admin/values")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


async def test_warning_levels_filter_and_a_lost_store_is_a_503(tmp_path: Path) -> None:
    node, _fed = await make_county(tmp_path)
    try:
        async with AsyncTestClient(app=create_app(gateway_services(node))) as client:
            client.headers[TOKEN_HEADER] = f"Bearer {node.context.cfg.admin_token}"
            r = await client.get("/api/v1/warnings", params={"cycle": "2026", "period": "2026-Y", "level": "red"})
            assert r.status_code == 200 and r.json() == []
            is_problem(await client.get("/api/v1/warnings", params={"cycle": "2026", "period": "2026-Y",
                                                                     "level": "county"}), 400, "request.malformed")
            # The store's file is gone and a directory stands in its way: no connection can open.
            await node.context.store.engine.dispose()
            db = tmp_path / "county.db"
            db.rename(tmp_path / "county.db.moved")
            db.mkdir()
            r = await client.get("/api/v1/status")
            is_problem(r, 503, "store.unavailable")
            assert r.headers["retry-after"] == "5"
    finally:
        await node.context.store.close()


async def test_hostile_bodies_are_clear_refusals(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    """Issue 9 item 14: JSON nested 999 deep, the value 1e999999999, YAML nested 5,000 deep."""
    client, _node, token = gateway
    auth = {TOKEN_HEADER: f"Bearer {token}", "content-type": "application/json"}
    deep = "[" * 999 + "]" * 999
    body = '{"cycle": "2026", "period": "2026-Y", "values": {"A1": ' + deep + "}}"
    is_problem(await client.post("/api/v1/admin/values", headers=auth, content=body), 400, "request.too_deep")
    for value in ('"1e999999999"', "1e999999999"):
        body = '{"cycle": "2026", "period": "2026-Y", "values": {"A1": ' + value + "}}"
        is_problem(await client.post("/api/v1/admin/values", headers=auth, content=body), 400, "request.malformed")
    r = await client.post("/api/v1/admin/frameworks", headers=auth, json={"yaml": "[" * 5000 + "]" * 5000})
    is_problem(r, 422, "framework_file.malformed")
    assert "nested too deep" in r.json()["detail"]
    r = await client.post("/api/v1/admin/frameworks", headers=auth, json={"yaml": "#" * (2 * 1024 * 1024 + 1)})
    is_problem(r, 400, "request.malformed")  # the schema caps the text, before anything parses it


async def test_a_unit_that_reported_nothing_is_listed_last_as_not_assessed(
        gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    client, node, token = gateway
    client.headers[TOKEN_HEADER] = f"Bearer {token}"
    async with node.context.store.tx() as tx:
        digest = (await tx.frameworks.list(role="issued"))[-1].digest
        await tx.results.put(node="510104018", cycle="2026", period="2026-Y", framework_digest=digest,
                             values={"A1": "400"}, source="reported", bundle_id="b", now=1)
        await node.scoring.recompute(tx, "2026", "2026-Y", digest, cause="test")
    rows = (await client.get("/api/v1/rankings", params={"cycle": "2026", "period": "2026-Y"})).json()
    assert [(r["unit"], r["assessed"], r["rank"]) for r in rows] == [("510104018", True, 1), ("510104017", False, 0)]
    assert rows[1]["grade"] == "" and "not assessed" in rows[1]["explanation"]["grade_reason"]
    page = (await client.get("/dashboard", params={"cycle": "2026", "period": "2026-Y"})).text
    assert "未参评" in page and page.index("东湖街道") < page.index("未参评")


async def test_computed_results_are_not_public(gateway: tuple[AsyncTestClient[Any], NodeServices, str]) -> None:
    """Issue 11: interim scores, ranks, values and the dashboard need results.interim; "/" sends the
    public to the published results."""
    client, _node, token = gateway
    params = {"cycle": "2026", "period": "2026-Y"}
    for path in ("/api/v1/rankings", "/api/v1/values", "/api/v1/warnings", "/api/v1/flags"):
        is_problem(await client.get(path, params=params), 401, "auth.required")
        assert (await client.get(path, params=params, headers={TOKEN_HEADER: f"Bearer {token}"})).status_code == 200, path
    r = await client.get("/dashboard", params=params, headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code in (302, 303) and r.headers["location"].startswith("/login"), r.status_code
    r = await client.get("/", follow_redirects=False)
    assert r.status_code in (302, 303) and r.headers["location"] == "/public"
