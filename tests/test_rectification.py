"""Rectification (整改) and public comments (公众评议), issue 11: items made from the weak indicators of a
publication (lowest shares of their weight, below the class average), from a decided appeal, from a
comment and by hand; the unit's measure, evidence and closure request, the office's acceptance;
overdue flags; carrying open items into next year's task book (/tasks of that year); a public
comment routed to its unit, answered, then shown as answered; the form's token, trap, Origin and
rate limits; and scope: a unit cannot see or touch another unit's items or comments."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from aggregator.errors import AppraisalError
from gateway.app import create_app
from gateway.rectification_view import cst_date
from nodes import rectification as rules
from nodes.accounts import SYSTEM, Principal
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from nodes.runtime import gateway_services
from nodes.services.rectification import PER_SENDER_HOUR
from nodes.store import Store
from nodes.tables import appeals
from sync import publication as pubs
from tests.support.closing import DAY, OFFICE, TOWNS, publicise, report
from tests.support.nodes import make_county
from tests.test_accounts import no_redirects, sign_in

U17 = Principal(login="u17", name="锦官驿", roles=frozenset({"unit"}), units=frozenset({TOWNS[0]}), via="password")
U18 = Principal(login="u18", name="东湖", roles=frozenset({"unit"}), units=frozenset({TOWNS[1]}), via="password")


async def _county(tmp_path: Path, store: Store | None = None) -> tuple[Node, Federation]:
    """锦江区 with both townships' bundles: 510104017 A1=300 (60 % of its target), 510104018 A1=900
    (capped at 120 %), B3 rated for neither."""
    node, fed = await make_county(tmp_path, store=store)
    await report(node, fed, TOWNS[0], {"A1": Decimal(300), "B3": Decimal(80)})
    await report(node, fed, TOWNS[1], {"A1": Decimal(900), "B3": Decimal(80)})
    return node, fed


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[Node]:
    node, _ = await _county(tmp_path)
    yield node
    await node.context.store.close()


@pytest.fixture
async def site(county: Node) -> AsyncIterator[tuple[Node, AsyncTestClient[Any]]]:
    for login, roles, kw in (("wang", ["office"], {}), ("u17", ["unit"], {"units": [TOWNS[0]]}),
                             ("u18", ["unit"], {"units": [TOWNS[1]]}), ("sj", ["auditor"], {})):
        await county.accounts.add(login, login, roles, SYSTEM, password=f"{login}-password-1", **kw)
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(county)))) as client:
        yield county, client


def _date(ts: int) -> str:
    return cst_date(ts)


def _form_token(html: str) -> str:
    m = re.search(r'name="token" value="([^"]+)"', html)
    assert m, html[:2000]
    return m.group(1)


async def _switch(client: AsyncTestClient[Any], csrf: str, login: str) -> str:
    await client.post("/logout", data={"_csrf": csrf})
    return await sign_in(client, login, f"{login}-password-1")


# ------------------------------------------------------------------ the pure rules

async def test_weak_indicators_are_the_lowest_shares_below_the_class_average(county: Node) -> None:
    doc = pubs.read((await publicise(county)).envelope)
    weak = rules.weak_indicators(doc)
    # 510104017's A1 earned 60 % of its weight, the class averages 90 %; 510104018 is capped at 120 %
    # and B3 (rated for neither) is 0 for both, so not below the average
    assert [(w.unit, w.indicator, w.share, w.average) for w in weak] == [
        (TOWNS[0], "A1", Decimal("0.6"), Decimal("0.9"))]
    assert "60.0%" in weak[0].title("地区生产总值") and "90.0%" in weak[0].title()


def test_moves_overdue_and_form_token() -> None:
    rules.check_move("open", "review", 1)
    rules.check_move("review", "done", 1)
    rules.check_move("review", "open", 1)
    for frm, to in (("open", "done"), ("done", "open"), ("carried", "open"), ("done", "carried")):
        with pytest.raises(AppraisalError) as e:
            rules.check_move(frm, to, 7)
        assert e.value.code == "rectification.state"
    assert rules.overdue("open", 100, 100) and not rules.overdue("open", 100, 99)
    assert not rules.overdue("review", 100, 200) and not rules.overdue("done", 100, 200)
    key = b"k" * 32
    # the address is kept only as a keyed hash; an IPv6 subscriber's /64 counts as one sender
    assert rules.sender_of(key, "2001:db8:1:2::5") == rules.sender_of(key, "2001:db8:1:2:ffff::9")
    assert rules.sender_of(key, "2001:db8:1:3::5") != rules.sender_of(key, "2001:db8:1:2::5")
    assert rules.sender_of(key, "10.0.0.1") != rules.sender_of(key, "10.0.0.2") != rules.sender_of(b"j" * 32, "10.0.0.2")
    assert "10.0.0.1" not in rules.sender_of(key, "10.0.0.1")
    token = rules.form_token(key, "510104017", 1000)
    rules.check_form_token(key, "510104017", token, 1000 + 60)
    for unit, tok, now in (("510104018", token, 1060), ("510104017", token, 1000 + rules.FORM_TOKEN_SECONDS),
                           ("510104017", token[:-1] + "0", 1060), ("510104017", "junk", 1060)):
        with pytest.raises(AppraisalError) as e:
            rules.check_form_token(key, unit, tok, now)
        assert e.value.code == "comments.form_token"


# ------------------------------------------------------------------ the service, on both stores

async def test_weak_items_closure_and_carry_on_both_stores(store: Store, tmp_path: Path) -> None:
    node, _ = await _county(tmp_path, store)
    rect = node.rectification
    now = node.context.clock()
    with pytest.raises(AppraisalError) as e:
        await rect.from_weak(OFFICE, cycle="2026", deadline=now + 30 * DAY)
    assert e.value.code == "rectification.no_publication"
    await publicise(node)
    made = await rect.from_weak(OFFICE, cycle="2026", deadline=now + 30 * DAY)
    assert [(m.unit, m.source, m.ref, m.owner, m.status) for m in made] == [(TOWNS[0], "weak", "A1", TOWNS[0], "open")]
    assert "地区生产总值" in made[0].title or "A1" in made[0].title
    assert await rect.from_weak(OFFICE, cycle="2026", deadline=now + 30 * DAY) == []  # made once
    item = made[0].id

    # closure: a measure and evidence first, then the office accepts
    with pytest.raises(AppraisalError) as e:
        await rect.request_closure(U17, item, "已完成")
    assert e.value.code == "rectification.evidence_missing"
    sha = await rect.attach(U17, item, "整改报告.pdf", b"%PDF-1.4 rect")
    with pytest.raises(AppraisalError) as e:
        await rect.request_closure(U17, item, "已完成")
    assert e.value.code == "rectification.measure_missing"
    await rect.set_measure(U17, item, "加快重点项目建设，按月调度")
    await rect.request_closure(U17, item, "已按月调度，完成率回升")
    with pytest.raises(AppraisalError) as e:
        await rect.set_measure(U17, item, "改")
    assert e.value.code == "rectification.not_open"
    await rect.reopen(OFFICE, item, "佐证不足")
    await rect.request_closure(U17, item, "补充了月度调度表")
    await rect.accept(OFFICE, item)
    done = (await rect.item(item)).record
    assert (done.status, done.evidence, done.closed_by) == ("done", (sha,), "wang")
    assert (await rect.evidence_file(item, sha))[2] == b"%PDF-1.4 rect"

    # carry: the open ones of 2026 become 2027's, naming their origin; the closed one stays
    other = await rect.create(OFFICE, cycle="2026", unit=TOWNS[1], title="营商环境投诉办理", deadline=now + DAY)
    carried = await rect.carry(OFFICE, cycle="2026", deadline=now + 300 * DAY)
    assert [(c.cycle, c.unit, c.source, c.carried_from, c.title) for c in carried] == [
        ("2027", TOWNS[1], "carried", other.id, "营商环境投诉办理")]
    assert (await rect.item(other.id)).record.status == "carried"
    assert [i.record.id for i in await rect.tasks_of("2027", SYSTEM)] == [carried[0].id]
    assert await rect.tasks_of("2027", U17) == []  # another unit's task
    async with node.context.store.read() as r:
        actions = [a.action for a in await r.audit.entries()]
    for action in ("rectification.create", "rectification.evidence", "rectification.measure", "rectification.request",
                   "rectification.reopen", "rectification.accept", "rectification.carry"):
        assert action in actions, action


async def test_items_from_an_appeal_and_a_comment(county: Node) -> None:
    rect = county.rectification
    now = county.context.clock()
    pub = await publicise(county)
    async with county.context.store.tx() as tx:
        for status in ("upheld", "filed"):
            await tx.conn.execute(appeals.insert().values(
                cycle="2026", period="2026-Y", unit=TOWNS[0], publication=pub.digest, target="value", indicator="A1",
                reason="数据口径有误", status=status, filed_by="u17", filed_at=now, decision="已更正口径"))
    item = await rect.from_appeal(OFFICE, appeal=1, deadline=now + 10 * DAY)
    assert (item.unit, item.source, item.ref) == (TOWNS[0], "appeal", "1") and "已更正口径" in item.title
    for appeal, code in ((1, "rectification.duplicate"), (2, "rectification.appeal_open"), (9, "rectification.no_appeal")):
        with pytest.raises(AppraisalError) as e:
            await rect.from_appeal(OFFICE, appeal=appeal, deadline=now + 10 * DAY)
        assert e.value.code == code

    c = await rect.submit_comment(unit=TOWNS[1], body="窗口办事排队太久", contact="", address="10.0.0.9",
                                  token=rect.form_token(TOWNS[1]))
    made = await rect.from_comment(OFFICE, comment=c.id, deadline=now + 10 * DAY)
    assert (made.unit, made.source, made.ref) == (TOWNS[1], "comment", str(c.id))
    assert (await rect.comment(c.id)).rectification == made.id
    with pytest.raises(AppraisalError) as e:
        await rect.from_comment(OFFICE, comment=c.id, deadline=now + 10 * DAY)
    assert e.value.code == "comments.already_item"


# ------------------------------------------------------------------ pages

async def test_weak_items_closure_flow_and_scope_as_pages(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    await publicise(node)
    due = _date(node.context.clock() + 30 * DAY)
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post("/rectification/weak", data={"_csrf": csrf, "cycle": "2026", "deadline": due})
    assert r.status_code == 200 and 'data-testid="done"' in r.text and "1 项" in r.text
    assert "锦官驿街道" in r.text and 'data-status="open"' in r.text
    r = await client.post("/rectification/weak", data={"_csrf": csrf, "cycle": "2026", "deadline": "2026-13-01"})
    assert r.status_code == 422 and 'data-code="form.date"' in r.text
    item = (await node.rectification.items(SYSTEM, cycle="2026"))[0].record.id

    # the other township neither sees the item nor may touch it
    csrf = await _switch(client, csrf, "u18")
    page = await client.get("/rectification?cycle=2026")
    assert page.status_code == 200 and f'id="item-{item}"' not in page.text
    r = await client.post(f"/rectification/{item}/measure", data={"_csrf": csrf, "measure": "我来改"})
    assert r.status_code == 403 and "auth.scope" in r.text
    r = await client.get("/api/v1/rectifications?cycle=2026", headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json() == []
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "measure", "measure": "我来改"},
                          headers={"x-csrf-token": csrf})
    assert r.status_code == 403 and r.json()["code"] == "auth.scope"

    # its own unit writes the measure, uploads evidence and asks for closure
    csrf = await _switch(client, csrf, "u17")
    page = await client.get("/rectification?cycle=2026")
    assert f'id="item-{item}"' in page.text and f'action="/rectification/{item}/measure"' in page.text
    r = await client.post(f"/rectification/{item}/request", data={"_csrf": csrf, "closure": "已完成"})
    assert r.status_code == 422 and "rectification.evidence_missing" in r.text
    r = await client.post(f"/rectification/{item}/measure", data={"_csrf": csrf, "measure": "加快项目建设"})
    assert r.status_code == 200 and "加快项目建设" in r.text
    r = await client.post(f"/rectification/{item}/evidence", data={"_csrf": csrf},
                          files={"file": ("整改报告.pdf", b"%PDF-1.4 evidence", "application/pdf")})
    assert r.status_code == 200 and f"/rectification/{item}/evidence/" in r.text
    sha = re.search(rf"/rectification/{item}/evidence/([0-9a-f]{{64}})", r.text)
    assert sha
    r = await client.post(f"/rectification/{item}/evidence", data={"_csrf": csrf},
                          files={"file": ("x.exe", b"MZ", "application/octet-stream")})
    assert r.status_code == 422 and "intake.attachment_type" in r.text
    r = await client.post(f"/rectification/{item}/request", data={"_csrf": csrf, "closure": "已按月调度"})
    assert r.status_code == 200 and 'data-status="review"' in r.text
    r = await client.post(f"/rectification/{item}/accept", data={"_csrf": csrf})
    assert r.status_code == 403  # a unit does not accept its own closure
    got = await client.get(f"/rectification/{item}/evidence/{sha.group(1)}")
    assert got.status_code == 200 and got.content == b"%PDF-1.4 evidence"

    csrf = await _switch(client, csrf, "u18")
    assert (await client.get(f"/rectification/{item}/evidence/{sha.group(1)}")).status_code == 403

    # the office accepts; the auditor reads but cannot change
    csrf = await _switch(client, csrf, "wang")
    r = await client.post(f"/rectification/{item}/accept", data={"_csrf": csrf})
    assert r.status_code == 200 and 'data-status="done"' in r.text
    r = await client.post(f"/rectification/{item}/accept", data={"_csrf": csrf})
    assert r.status_code == 409 and "rectification.state" in r.text
    csrf = await _switch(client, csrf, "sj")
    page = await client.get("/rectification?cycle=2026")
    assert page.status_code == 200 and f'id="item-{item}"' in page.text and "/rectification/weak" not in page.text
    r = await client.post("/rectification/new", data={"_csrf": csrf, "cycle": "2026", "unit": TOWNS[0], "title": "x",
                                                      "deadline": due})
    assert r.status_code == 403


async def test_overdue_is_flagged_on_the_page_the_api_and_home(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    start = node.context.clock()
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post("/rectification/new", data={"_csrf": csrf, "cycle": "2026", "unit": TOWNS[0],
                                                      "title": "补齐台账", "deadline": _date(start + 2 * DAY)})
    assert r.status_code == 200 and "补齐台账" in r.text and 'data-testid="overdue-count"' not in r.text
    node.context.clock = lambda: start + 5 * DAY  # type: ignore[method-assign]
    csrf = await sign_in(client, "wang", "wang-password-1")  # five days on, the old session has ended
    r = await client.get("/rectification?cycle=2026")
    assert 'class="overdue"' in r.text and 'data-testid="overdue-count"' in r.text
    csrf = await _switch(client, csrf, "u17")
    r = await client.get("/api/v1/rectifications?cycle=2026")
    assert [(i["title"], i["overdue"], i["status"]) for i in r.json()] == [("补齐台账", True, "open")]
    home = await client.get("/home")
    assert 'data-testid="rect-todo"' in home.text and "已逾期 1 项" in home.text


async def test_carried_items_are_next_years_tasks(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    now = node.context.clock()
    await node.rectification.create(OFFICE, cycle="2026", unit=TOWNS[0], title="提高一次办成率", deadline=now + DAY)
    await node.rectification.create(OFFICE, cycle="2026", unit=TOWNS[1], title="改进政务公开", deadline=now + DAY)
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post("/rectification/carry", data={"_csrf": csrf, "cycle": "2026",
                                                        "deadline": _date(now + 200 * DAY)})
    assert r.status_code == 200 and "2027" in r.text and 'data-status="carried"' in r.text
    tasks = await client.get("/tasks?cycle=2027")
    assert 'data-testid="rectification-tasks"' in tasks.text
    assert "提高一次办成率" in tasks.text and "改进政务公开" in tasks.text
    assert 'data-testid="rectification-tasks"' not in (await client.get("/tasks?cycle=2026")).text
    csrf = await _switch(client, csrf, "u17")
    tasks = await client.get("/tasks?cycle=2027")
    assert "提高一次办成率" in tasks.text and "改进政务公开" not in tasks.text
    items = (await client.get("/api/v1/rectifications?cycle=2027")).json()
    assert [(i["source"], i["status"], i["cycle"]) for i in items] == [("carried", "open", "2027")]
    assert items[0]["carried_from"] > 0


async def test_public_comment_is_answered_and_then_shown(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    form = await client.get(f"/public/comment/{TOWNS[0]}")
    assert form.status_code == 200 and "锦官驿街道" in form.text and 'name="_csrf"' not in form.text
    token = _form_token(form.text)
    r = await client.post(f"/public/comment/{TOWNS[0]}", data={"token": token, "body": "社区服务中心周末不开门",
                                                                "contact": "13800000000", "website": ""})
    assert r.status_code == 200 and 'data-testid="sent"' in r.text
    comments = await node.rectification.comments(SYSTEM)
    assert [(c.unit, c.status, c.contact) for c in comments] == [(TOWNS[0], "new", "13800000000")]
    cycle = comments[0].cycle
    assert await node.rectification.answered(cycle, TOWNS[0]) == []  # not shown before it is answered

    # routed to its unit: flagged on its /home, listed on its /comments; not the other unit's
    csrf = await sign_in(client, "u18", "u18-password-1")
    assert "社区服务中心" not in (await client.get("/comments")).text
    r = await client.post(f"/comments/{comments[0].id}/answer", data={"_csrf": csrf, "answer": "不归我管"})
    assert r.status_code == 403
    csrf = await _switch(client, csrf, "u17")
    home = await client.get("/home")
    assert "待答复的公众评议 1 条" in home.text
    page = await client.get("/comments")
    assert "社区服务中心周末不开门" in page.text and 'data-testid="waiting"' in page.text
    r = await client.post(f"/comments/{comments[0].id}/answer", data={"_csrf": csrf, "answer": ""})
    assert r.status_code == 422 and "rectification.text_missing" in r.text
    r = await client.post(f"/comments/{comments[0].id}/answer",
                          data={"_csrf": csrf, "answer": "自下月起周六上午开放"})
    assert r.status_code == 200 and 'data-status="answered"' in r.text
    assert "待答复的公众评议" not in (await client.get("/home")).text
    api = (await client.get("/api/v1/comments")).json()
    assert [(c["status"], c["answer"]) for c in api] == [("answered", "自下月起周六上午开放")]

    shown = await node.rectification.answered(cycle, TOWNS[0])
    assert [(c.body, c.answer, c.contact, c.sender) for c in shown] == [
        ("社区服务中心周末不开门", "自下月起周六上午开放", "", "")]
    async with node.context.store.read() as rd:
        assert "comments.answer" in [a.action for a in await rd.audit.entries()]


async def test_public_form_refusals_and_rate_limit(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    url = f"/public/comment/{TOWNS[1]}"
    token = _form_token((await client.get(url)).text)

    async def post(**data: str) -> Any:
        return await client.post(url, data={"token": token, "body": "路灯坏了", "website": "", **data})

    assert (await client.get("/public/comment/999999999")).status_code == 404
    r = await post(website="http://spam.example")
    assert r.status_code == 422 and 'data-code="comments.trap"' in r.text
    r = await post(token="1.abc")
    assert r.status_code == 422 and 'data-code="comments.form_token"' in r.text
    r = await post(body="长" * 1001)
    assert r.status_code == 422 and 'data-code="comments.too_long"' in r.text
    r = await client.post(url, data={"token": token, "body": "x"}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403
    assert await node.rectification.comments(SYSTEM) == []  # nothing refused was kept

    for n in range(PER_SENDER_HOUR):
        assert (await post(body=f"路灯坏了 {n}")).status_code == 200
    r = await post(body="再来一条")
    assert r.status_code == 429 and 'data-code="comments.rate_sender"' in r.text and r.headers["retry-after"]
    assert "再来一条" in r.text  # what was typed is kept for later
    assert len(await node.rectification.comments(SYSTEM)) == PER_SENDER_HOUR
    # an hour later the same address may send again
    later = node.context.clock() + 3601
    node.context.clock = lambda: later  # type: ignore[method-assign]
    token = _form_token((await client.get(url)).text)
    assert (await post(body="一小时后")).status_code == 200
    # counted, not one audit entry each
    async with node.context.store.read() as rd:
        counters = {(c.action, c.code): c.total for c in await rd.audit.counters()}
        entries = [a for a in await rd.audit.entries() if a.action.startswith("comments.")]
    assert counters[("comments.received", "ok")] == PER_SENDER_HOUR + 1
    assert counters[("comments.refused", "rate_sender")] == 1
    assert counters[("comments.refused", "trap")] == 1 and counters[("comments.refused", "form_token")] == 1
    assert len(entries) < PER_SENDER_HOUR + 4


async def test_office_hides_a_comment_and_makes_another_an_item(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    rect = node.rectification
    rude = await rect.submit_comment(unit=TOWNS[0], body="骂人的话", contact="", address="10.0.0.1",
                                     token=rect.form_token(TOWNS[0]))
    real = await rect.submit_comment(unit=TOWNS[0], body="小区门口积水", contact="", address="10.0.0.2",
                                     token=rect.form_token(TOWNS[0]))
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post(f"/comments/{rude.id}/hide", data={"_csrf": csrf, "reason": "辱骂"})
    assert r.status_code == 200 and f'id="comment-{rude.id}" data-status="hidden"' in r.text
    r = await client.post(f"/comments/{real.id}/item", data={"_csrf": csrf,
                                                            "deadline": _date(node.context.clock() + 20 * DAY)})
    assert r.status_code == 200 and "已转为整改事项" in r.text
    items = await rect.items(SYSTEM, cycle=real.cycle)
    assert [(i.record.source, i.record.ref) for i in items] == [("comment", str(real.id))]
    csrf = await _switch(client, csrf, "u17")
    assert "待答复的公众评议 1 条" in (await client.get("/home")).text  # the hidden one is not owed an answer
    r = await client.post(f"/comments/{rude.id}/answer", data={"_csrf": csrf, "answer": "x"})
    assert r.status_code == 409 and "comments.hidden" in r.text
    r = await client.post(f"/comments/{real.id}/hide", data={"_csrf": csrf, "reason": "不想答"})
    assert r.status_code == 403  # only the office hides
    async with node.context.store.read() as rd:
        hidden = [a for a in await rd.audit.entries() if a.action == "comments.hide"]
    assert [(a.actor, a.subject) for a in hidden] == [("wang", str(rude.id))]


async def test_the_api_creates_and_updates_items(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    node, client = site
    await publicise(node)
    token = {"authorization": f"Bearer {node.context.cfg.admin_token}"}
    due = node.context.clock() + 30 * DAY
    r = await client.post("/api/v1/rectifications", json={"from": "weak", "cycle": "2026", "deadline": due},
                          headers=token)
    assert r.status_code == 201 and [(i["unit"], i["source"], i["ref"]) for i in r.json()] == [(TOWNS[0], "weak", "A1")]
    r = await client.post("/api/v1/rectifications", json={"from": "office", "cycle": "2026", "unit": TOWNS[1],
                                                          "title": "规范公文处理", "deadline": due}, headers=token)
    assert r.status_code == 201
    item = r.json()[0]["id"]
    r = await client.post("/api/v1/rectifications", json={"from": "office", "cycle": "2026", "unit": TOWNS[1],
                                                          "title": "x", "deadline": 5}, headers=token)
    assert r.status_code == 422 and r.json()["code"] == "rectification.deadline"
    r = await client.post("/api/v1/rectifications", json={"from": "nowhere", "cycle": "2026"}, headers=token)
    assert r.status_code == 400
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "accept"}, headers=token)
    assert r.status_code == 409 and r.json()["code"] == "rectification.state"
    r = await client.post("/api/v1/rectifications/9999", json={"action": "accept"}, headers=token)
    assert r.status_code == 404
    allow = (await client.options("/api/v1/rectifications")).headers["allow"]
    assert {m.strip() for m in allow.split(",")} == {"GET", "POST", "OPTIONS"}
    doc = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert doc["SetMeasure"]["additionalProperties"] is False  # msgspec's own schema, as the server enforces it

    csrf = await sign_in(client, "u18", "u18-password-1")
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "accept"}, headers={"x-csrf-token": csrf})
    assert r.status_code == 403  # the unit cannot accept
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "measure", "measure": "建立台账"},
                          headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and r.json()["measure"] == "建立台账"
    sha = await node.rectification.attach(U18, item, "制度.docx", b"PK docx")
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "request", "closure": "已建立",
                                                                 "evidence": ["0" * 64]},
                          headers={"x-csrf-token": csrf})
    assert r.status_code == 422 and r.json()["code"] == "rectification.evidence_unknown"
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "request", "closure": "已建立"},
                          headers={"x-csrf-token": csrf})
    assert r.status_code == 200 and (r.json()["status"], r.json()["evidence"]) == ("review", [sha])
    r = await client.post(f"/api/v1/rectifications/{item}", json={"action": "reopen", "reason": "再补"}, headers=token)
    assert r.status_code == 200 and r.json()["status"] == "open"
