"""Results use (结果运用, issue 11): rules over FINAL publications → signed lists → Excel, CSV and the
signed envelope.

The 2026 publication goes the real path (tests/support/closing.py: both townships report, the
office publicises, the window closes, it finalises: both townships grade 一般, 东湖街道 first). The
2025 publication, needed for "一般 two years running", is not: building a second cycle's framework,
bundles and window through the real path would double the test's cost for nothing the rules read,
so it is constructed as a signed ``Published`` (sync.publication.sign_publication, the county's
key) and inserted with ``tx.publications.add`` — exactly what the publication service stores.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from openpyxl import load_workbook

from aggregator.errors import AppraisalError
from aggregator.framework import FrameworkRef
from aggregator.grading import GRADE_ORDER
from gateway.app import create_app
from nodes import use_export
from nodes.accounts import SYSTEM
from nodes.config import _load_results_use, load_config
from nodes.launcher import Federation, load_topology
from nodes.repositories.publications import PublicationRecord
from nodes.results_use import DEFAULT_RULES, Rule, When, evaluate
from nodes.runtime import NodeServices as Node
from nodes.runtime import gateway_services
from nodes.store import Store
from nodes.yamlfile import FileError, load
from sync import publication as pubs
from sync import use_lists
from sync.envelope import PAYLOAD_USE_LIST, EnvelopeError, sign
from tests.support.closing import OFFICE, TOWNS, county_with_results, finalise, me_of, publicise, root_of
from tests.support.properties import generous_deadline
from tests.test_accounts import no_redirects, sign_in

FAIR_TOWN, GOOD_TOWN = TOWNS  # 510104017 锦官驿街道 (60, 2nd), 510104018 东湖街道 (72, 1st)


async def add_2025(node: Node, fed: Federation, grades: dict[str, str]) -> PublicationRecord:
    """A final 2025 publication of the townships' class, signed by the county (see the module docstring)."""
    me = me_of(fed, "510104")
    async with node.context.store.read() as r:
        klass = (await node.publication.frameworks(r, "2026"))[0].unit_class
    names = {FAIR_TOWN: "锦官驿街道", GOOD_TOWN: "东湖街道"}
    ranked = sorted(grades, key=lambda u: GRADE_ORDER.index(grades[u]))
    figs = tuple(pubs.Figure(u, names[u], Decimal(90 - 10 * GRADE_ORDER.index(grades[u])), ranked.index(u) + 1,
                             grades[u], (), "", "{}") for u in sorted(grades))
    at = node.context.clock() - 300 * 86400
    doc = pubs.Published(me.code, "2025", "2025-Y", FrameworkRef(me.code, "2025", klass, 1, "ab" * 32), pubs.FINAL, 1,
                         "", "终审 (final)", at, at, at - 10 * 86400, at - 3 * 86400, True, figs)
    envelope, signed = pubs.sign_publication(me, doc)
    rec = PublicationRecord(signed.digest, me.code, "2025", "2025-Y", klass, "ab" * 32, 1, pubs.FINAL, True,
                            doc.window_opens, doc.window_closes, doc.reason, "own", envelope, b"", at, "wang")
    async with node.context.store.tx() as tx:
        await tx.publications.add(rec)
    return rec


def by_list(made: list[tuple[tuple[Any, use_lists.UseList], bool]]) -> dict[str, use_lists.UseList]:
    return {u.list: u for (_, u), _new in made}


# ------------------------------------------------------------------ the service, on SQLite and PostgreSQL

async def test_two_years_running_signed_versioned_audited(store: Store, tmp_path: Path) -> None:
    node, fed = await county_with_results(tmp_path, store=store)
    # nothing final yet: refused, named
    with pytest.raises(AppraisalError) as none:
        await node.results_use.produce(OFFICE, "2026")
    assert none.value.code == "use.no_final" and "终审" in str(none.value)
    await publicise(node)
    with pytest.raises(AppraisalError) as publicity_only:  # 公示中 is not final
        await node.results_use.produce(OFFICE, "2026")
    assert publicity_only.value.code == "use.no_final"
    old = await add_2025(node, fed, {FAIR_TOWN: "一般", GOOD_TOWN: "良好"})
    final = await finalise(node)

    made = await node.results_use.produce(OFFICE, "2026")
    assert [u.list for (_, u), _ in made] == ["reward", "criticism", "rectification_talk"]  # the configured order
    assert all(new for _, new in made)
    lists = by_list(made)
    assert lists["reward"].entries == ()  # nobody 优秀/良好 in 2026
    assert [(e.unit, e.rule, e.because) for e in lists["criticism"].entries] == [
        (GOOD_TOWN, "criticise_fair", "2026 一般"), (FAIR_TOWN, "criticise_fair", "2026 一般")]  # by rank
    assert [(e.unit, e.name, e.rule, e.because) for e in lists["rectification_talk"].entries] == [
        (FAIR_TOWN, "锦官驿街道", "rectify_fair_twice", "2025 一般、2026 一般")]  # 东湖街道 was 良好 in 2025
    assert lists["criticism"].body == "organisation" and lists["rectification_talk"].body == "discipline"
    assert all(u.publications == tuple(sorted([old.digest, final.digest])) for u in lists.values())

    # each list is signed by the county and verifies against its chain and the province key
    me = me_of(fed, "510104")
    for (rec, u), _ in made:
        checked = use_lists.verify(rec.envelope, me.chain, root_of(fed))
        assert checked == u and checked.digest == rec.digest and checked.version == 1
    # a list signed by another key does not verify; one claiming another node is refused
    forged = sign(PAYLOAD_USE_LIST, use_lists.encode(lists["criticism"]), me_of(fed, FAIR_TOWN).key)
    with pytest.raises(EnvelopeError):
        use_lists.verify(forged, me.chain, root_of(fed))
    claim = use_lists.UseList(**{**lists["criticism"].__dict__, "node": "510105", "digest": ""})
    with pytest.raises(EnvelopeError) as other:
        use_lists.verify(use_lists.sign_use_list(me, claim)[0], me.chain, root_of(fed))
    assert other.value.code == "use_list.signer"

    # producing again with nothing changed makes no new version
    again = await node.results_use.produce(OFFICE, "2026")
    assert not any(new for _, new in again)
    assert [r.digest for (r, _), _ in again] == [r.digest for (r, _), _ in made]

    # a revision of the results: a new version of every list, resting on the revised publication; the old kept
    async with node.context.store.tx() as tx:
        revised = await node.publication.revise(tx, OFFICE, cycle="2026", period="2026-Y",
                                                unit_class=final.unit_class, reason="复核更正 (correction)")
    third = await node.results_use.produce(OFFICE, "2026")
    assert all(new and u.version == 2 and revised.digest in u.publications and final.digest not in u.publications
               for (_, u), new in third)
    every = await node.results_use.lists("2026", every_version=True)
    assert len(every) == 6 and {u.version for _, u in every} == {1, 2}
    assert [u.version for _, u in await node.results_use.lists("2026")] == [2, 2, 2]

    async with node.context.store.read() as r:
        entries = await r.audit.entries(action="use.produce")
    assert len(entries) == 6 and all(e.actor == OFFICE.actor for e in entries)
    details = [json.loads(e.detail) for e in entries]
    talk = next(d for d in details if d["list"] == "rectification_talk" and d["version"] == 1)
    assert talk["units"] == [FAIR_TOWN] and talk["rules"] == ["rectify_fair_twice"]


async def test_a_cycle_that_is_not_a_year_is_refused(tmp_path: Path) -> None:
    node, _ = await county_with_results(tmp_path)
    try:
        with pytest.raises(AppraisalError) as bad:
            await node.results_use.produce(OFFICE, "26")
        assert bad.value.code == "use.cycle"
    finally:
        await node.context.store.close()


# ------------------------------------------------------------------ configuration

RULES_YAML: list[dict[str, Any]] = [
    {"code": "last_one", "list": "bottom", "title": "末位约谈", "body": "discipline", "when": {"rank_bottom": 1}},
    {"code": "below_65", "list": "bottom", "title": "末位约谈", "body": "discipline", "when": {"score_below": 65}},
    {"code": "fair_low", "list": "fair_low", "title": "一般且低于65分", "body": "organisation",
     "when": {"grade": "一般", "score_below": "65"}},
]


async def test_configured_rules_rank_and_score(tmp_path: Path) -> None:
    node, _ = await county_with_results(tmp_path, results_use=RULES_YAML)
    try:
        assert node.results_use.configured and [r.code for r in node.results_use.rules] == [
            "last_one", "below_65", "fair_low"]
        await publicise(node)
        await finalise(node)
        lists = by_list(await node.results_use.produce(OFFICE, "2026"))
        assert list(lists) == ["bottom", "fair_low"]
        assert [(e.unit, e.rule, e.because) for e in lists["bottom"].entries] == [
            (FAIR_TOWN, "last_one", "排名 2/2（后 1 名）")]  # both rules hold: the first configured is named
        assert [(e.unit, e.because) for e in lists["fair_low"].entries] == [(FAIR_TOWN, "2026 一般；得分 60 < 65")]
    finally:
        await node.context.store.close()


@pytest.mark.parametrize(("rules", "where", "says"), [
    ([], "results_use", "non-empty list"),
    ([{**RULES_YAML[0], "code": "Bad Code"}], "results_use.0.code", "a code"),
    ([{**RULES_YAML[0], "when": {"grade": "好"}}], "results_use.0.when.grade", "grade: one of the grades"),
    ([{**RULES_YAML[0], "when": {"grade": "一般", "cycles": 0}}], "results_use.0.when.cycles", "integer 1-10"),
    ([{**RULES_YAML[0], "when": {"cycles": 2}}], "results_use.0.when.cycles", "needs a grade"),
    ([{**RULES_YAML[0], "when": {"score_below": "sixty"}}], "results_use.0.when.score_below", "a number"),
    ([{**RULES_YAML[0], "when": {}}], "results_use.0.when", "at least one condition"),
    ([RULES_YAML[0], {**RULES_YAML[1], "title": "别的标题"}], "results_use.1", "share its title and body"),
    ([RULES_YAML[0], {**RULES_YAML[0], "list": "other"}], "results_use.1.code", "duplicate rule code"),
    ([{k: v for k, v in RULES_YAML[0].items() if k != "body"}], "results_use.0.body", "missing required"),
    ([{**RULES_YAML[0], "when": {"grade": "一般", "bottom": 1}}], "results_use.0.when.bottom", "unknown setting"),
])
async def test_bad_rules_are_refused_naming_the_field(tmp_path: Path, rules: list[Any], where: str, says: str) -> None:
    import yaml

    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    path = fed.node_dir("510104") / "node.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) | {"results_use": json.loads(json.dumps(rules))}  # no aliases
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FileError) as bad:
        load_config(path)
    assert where in str(bad.value) and says in str(bad.value), str(bad.value)


def test_no_rules_configured_means_the_default_rules(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    assert load_config(fed.node_dir("510104") / "node.yaml").results_use is None
    # the shipped example writes the default rules out: the two stay the same
    shipped = Path(__file__).resolve().parent.parent / "deploy" / "nodes" / "510104.yaml"
    assert _load_results_use(load(shipped)) == DEFAULT_RULES


def test_exports_never_hold_a_formula() -> None:
    u = use_lists.UseList("510104", "2026", "criticism", "公开批评", "organisation", ("a" * 64,),
                          (use_lists.UseEntry("510104017", '=HYPERLINK("http://x","点我")', "r", "-1+1"),), 1, 1, "d" * 64)
    ws = load_workbook(io.BytesIO(use_export.xlsx([u], "锦江区"))).worksheets[0]
    assert ws.cell(11, 3).value == '=HYPERLINK("http://x","点我")' and ws.cell(11, 3).data_type == "s"
    row = next(csv.DictReader(io.StringIO(use_export.csv_bytes([u]).decode("utf-8-sig"))))
    assert row["name"] == "\'=HYPERLINK(\"http://x\",\"点我\")" and row["because"] == "\'-1+1"


# ------------------------------------------------------------------ the pure rules (Hypothesis)

UNITS = [f"51010400{i}" for i in range(1, 7)]
CYCLES = ("2024", "2025", "2026")
rule_st = st.builds(
    When, grades=st.frozensets(st.sampled_from(GRADE_ORDER), max_size=2), cycles=st.integers(1, 3),
    rank_bottom=st.none() | st.integers(1, 4), score_below=st.none() | st.sampled_from([Decimal(60), Decimal("75.5")]),
).filter(lambda w: bool(w.grades) or (w.cycles == 1 and (w.rank_bottom is not None or w.score_below is not None)))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Rule], list[pubs.Published]]:
    whens = draw(st.lists(rule_st, min_size=1, max_size=5))
    codes = [draw(st.sampled_from(["a", "b"])) for _ in whens]
    rules = [Rule(f"r{i}", code, f"title {code}", "finance", w) for i, (code, w) in enumerate(zip(codes, whens, strict=True))]
    out = []
    for cycle in CYCLES:
        for klass in ("甲", "乙"):
            units = draw(st.lists(st.sampled_from(UNITS[:3] if klass == "甲" else UNITS[3:]), unique=True))
            for version in range(1, draw(st.integers(1, 2)) + 1):  # a revision replaces the earlier final
                scores = [draw(st.integers(0, 100)) for _ in units]
                order = sorted(range(len(units)), key=lambda i: (-scores[i], units[i]))
                figs = tuple(pubs.Figure(u, f"名{u}", Decimal(scores[i]), order.index(i) + 1,
                                         draw(st.sampled_from(GRADE_ORDER)), (), "", "{}")
                             for i, u in enumerate(units))
                state = draw(st.sampled_from([pubs.FINAL, pubs.FINAL, pubs.PUBLICITY]))
                out.append(pubs.Published("510104", cycle, f"{cycle}-Y", FrameworkRef("510104", cycle, klass, 1, "f" * 64),
                                          state, version, "", "", 0, 0, 0, 0, True, figs, digest=f"{cycle}{klass}{version}"))
    return rules, out


def _oracle(rule: Rule, unit: str, pubs_: list[pubs.Published]) -> bool:
    """Independently of nodes/results_use.py: the latest final version per (cycle, class) decides."""
    final: dict[tuple[str, str], pubs.Published] = {}
    for p in pubs_:
        key = (p.cycle, p.framework.unit_class)
        if p.state == pubs.FINAL and (key not in final or p.version > final[key].version):
            final[key] = p

    def fig(cycle: str) -> tuple[pubs.Figure, int] | None:
        for (c, _), p in sorted(final.items()):
            for f in p.units:
                if c == cycle and f.unit == unit:
                    return f, len(p.units)
        return None

    now = fig("2026")
    if now is None:
        return False
    w = rule.when
    for back in range(w.cycles):
        then = fig(str(2026 - back))
        if then is None or (w.grades and then[0].grade not in w.grades):
            return False
    if w.rank_bottom is not None and not now[0].rank > now[1] - w.rank_bottom:
        return False
    return w.score_below is None or now[0].score < w.score_below


@given(worlds(), st.randoms(use_true_random=False))
@settings(deadline=generous_deadline(), max_examples=150)
def test_a_unit_is_on_a_list_iff_one_of_its_rules_holds(world: tuple[list[Rule], list[pubs.Published]],
                                                        rnd: random.Random) -> None:
    rules, published = world
    lists = evaluate(rules, "2026", published)
    assert [d.list for d in lists] == list(dict.fromkeys(r.list for r in rules))
    for d in lists:
        of_list = [r for r in rules if r.list == d.list]
        on = {e.unit: e for e in d.entries}
        assert len(on) == len(d.entries)  # once per list
        for unit in UNITS:
            holding = [r.code for r in of_list if _oracle(r, unit, published)]
            assert (unit in on) == bool(holding), (unit, d.list)
            if holding:
                assert on[unit].rule == holding[0]  # the first rule in the configured order
        keys = [(e.unit_class, e.rank, e.unit) for e in d.entries]
        assert keys == sorted(keys)
    shuffled = list(published)
    rnd.shuffle(shuffled)
    assert evaluate(rules, "2026", shuffled) == lists  # the order publications come in changes nothing


# ------------------------------------------------------------------ exports and pages

@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation, AsyncTestClient[Any]]]:
    node, fed = await county_with_results(tmp_path)
    for login, roles in (("wang", ["office"]), ("sj", ["auditor"]), ("dw", ["unit"])):
        await node.accounts.add(login, login, roles, SYSTEM, password=f"{login}-password-1")
    await add_2025(node, fed, {FAIR_TOWN: "一般", GOOD_TOWN: "优秀"})
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield node, fed, client
    await node.context.store.close()


async def test_office_produces_on_the_page_and_downloads_excel_csv_dsse(
        site: tuple[Node, Federation, AsyncTestClient[Any]]) -> None:
    node, fed, client = site
    csrf = await sign_in(client, "wang", "wang-password-1")
    page = await client.get("/use?cycle=2026")
    assert page.status_code == 200 and "参照福州市" in page.text and 'data-testid="produce"' in page.text
    r = await client.post("/use", data={"_csrf": csrf, "cycle": "2026"})
    assert r.status_code == 409 and 'data-code="use.no_final"' in r.text
    await publicise(node)
    await finalise(node)  # the node's clock moves past the window: the session has expired
    csrf = await sign_in(client, "wang", "wang-password-1")
    r = await client.post("/use", data={"_csrf": csrf, "cycle": "2026"})
    assert r.status_code == 201 and 'data-testid="produced"' in r.text
    assert "2025 一般、2026 一般" in r.text and "书面整改报告并约谈" in r.text

    held = {u.list: (rec, u) for rec, u in await node.results_use.lists("2026")}
    rec, talk = held["rectification_talk"]
    x = await client.get(f"/use/{rec.digest}.xlsx")
    assert x.status_code == 200 and x.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "attachment" in x.headers["content-disposition"]
    ws = load_workbook(io.BytesIO(x.content)).worksheets[0]
    header = {ws.cell(i, 1).value: ws.cell(i, 2).value for i in range(1, 9)}
    assert header["节点 Node"] == "锦江区（510104）" and header["年度 Cycle"] == "2026"
    assert header["清单 List"] == "书面整改报告并约谈（rectification_talk）"
    assert header["使用机关 Body"] == "纪检监察（discipline）" and header["摘要 Digest (SHA-256)"] == rec.digest
    assert str(header["签署时间 Signed"]).endswith("(UTC+8)")
    rows = [[c.value for c in row] for row in ws.iter_rows(min_row=11)]
    assert rows == [[1, FAIR_TOWN, "锦官驿街道", "rectify_fair_twice", "2025 一般、2026 一般"]]

    c = await client.get(f"/use/{rec.digest}.csv")
    assert c.status_code == 200 and c.content.startswith(b"\xef\xbb\xbf")  # BOM, for Excel
    parsed = list(csv.DictReader(io.StringIO(c.content.decode("utf-8-sig"))))
    assert [(p["unit"], p["name"], p["rule"], p["because"], p["digest"]) for p in parsed] == [
        (FAIR_TOWN, "锦官驿街道", "rectify_fair_twice", "2025 一般、2026 一般", rec.digest)]

    d = await client.get(f"/use/{rec.digest}.dsse")
    assert d.status_code == 200 and d.content == rec.envelope
    assert use_lists.verify(d.content, me_of(fed, "510104").chain, root_of(fed)) == talk

    whole = await client.get("/use/2026.xlsx")
    wb = load_workbook(io.BytesIO(whole.content))
    assert wb.sheetnames == ["绩效奖励", "公开批评", "书面整改报告并约谈"]
    assert wb["公开批评"].cell(11, 2).value == GOOD_TOWN  # ranked first
    rows_all = list(csv.DictReader(io.StringIO((await client.get("/use/2026.csv")).content.decode("utf-8-sig"))))
    assert sorted({r["list"] for r in rows_all}) == ["criticism", "rectification_talk"]  # nobody on reward

    assert (await client.get("/use/" + "0" * 64 + ".xlsx")).status_code == 404
    assert (await client.get("/use/nonsense.exe")).status_code == 400


async def test_auditor_reads_but_cannot_produce_and_a_unit_sees_nothing(
        site: tuple[Node, Federation, AsyncTestClient[Any]]) -> None:
    node, _, client = site
    await publicise(node)
    await finalise(node)
    await node.results_use.produce(OFFICE, "2026")
    csrf = await sign_in(client, "sj", "sj-password-1")
    page = await client.get("/use?cycle=2026")
    assert page.status_code == 200 and "公开批评" in page.text and 'data-testid="produce"' not in page.text
    assert (await client.post("/use", data={"_csrf": csrf, "cycle": "2026"})).status_code == 403
    await client.post("/logout", data={"_csrf": csrf})
    await sign_in(client, "dw", "dw-password-1")
    assert (await client.get("/use?cycle=2026")).status_code == 403
    assert (await client.get("/api/v1/use-lists")).status_code == 403


async def test_json_api(site: tuple[Node, Federation, AsyncTestClient[Any]]) -> None:
    node, fed, client = site
    token = {"authorization": f"Bearer {fed.tokens['510104']}"}
    r = await client.post("/api/v1/use-lists", json={"cycle": "2026"}, headers=token)
    assert r.status_code == 409 and r.json()["code"] == "use.no_final"
    r = await client.post("/api/v1/use-lists", json={"cycle": "2026", "extra": 1}, headers=token)
    assert r.status_code == 400
    await publicise(node)
    await finalise(node)
    r = await client.post("/api/v1/use-lists", json={"cycle": "2026"}, headers=token)
    assert r.status_code == 201, r.text
    made = r.json()
    assert [m["list"] for m in made] == ["reward", "criticism", "rectification_talk"] and all(m["new"] for m in made)
    assert made[1]["body_name"] == "组织部" and made[1]["dsse"].endswith(".dsse")
    got = (await client.get("/api/v1/use-lists?cycle=2026", headers=token)).json()
    assert [g["digest"] for g in got] == [m["digest"] for m in made] and not any(g["new"] for g in got)
    assert (await client.get("/api/v1/use-lists?cycle=26", headers=token)).status_code == 400
    assert (await client.post("/api/v1/use-lists", json={"cycle": "2026"})).status_code == 401


async def test_options_names_both_methods(site: tuple[Node, Federation, AsyncTestClient[Any]]) -> None:
    r = await site[2].options("/api/v1/use-lists")
    assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS, POST"
