"""Departments as units (分类考评, issue 10): a node appraises its own departments (县直部门) in a class
of their own, with their own framework, ranking and grades. A department is not a node: its framework
is kept here, signed, and cascaded to no one; its values come in through this node's task book and
review; where its framework links an indicator of the framework this node received, the departments'
roll-up is this node's own value of it, signed into this node's bundle for its parent."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from aggregator.errors import AppraisalError
from nodes.accounts import Principal
from nodes.config import load_config
from nodes.intake import CellInput
from nodes.launcher import Federation, load_topology
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services
from nodes.store import Store
from sync.cascade_receiver import verify_framework_chain
from sync.codec import bundle_from_message
from sync.envelope import EnvelopeError
from tests.support.nodes import make_county

TOWN = "510104017"
DEPTS = [{"code": f"{TOWN}-CJB", "name": "城建办", "class": "街道站所"},
         {"code": f"{TOWN}-SBZ", "name": "社保站", "class": "街道站所"}]
OFFICE = Principal(login="wang", name="王", roles=frozenset({"office"}), via="password")
REVIEWER = Principal(login="li", name="李", roles=frozenset({"reviewer"}), via="password")


def dept_framework(link: bool) -> str:
    a1 = "link: {indicator: A1, rule: sum}" if link else ""
    return f"""\
issuer: "{TOWN}"
cycle: "2026"
class: 街道站所
version: 1
valid_days: 300
indicators:
  - code: K
    name: 站所工作
    weight: 100
    children:
      - {{code: K1, name: 辖区项目投资, weight: 60, unit: 亿元, target: 300, rollup: sum, {a1}}}
      - {{code: K2, name: 服务事项办结率, weight: 40, unit: "%", target: 95, provider: 街道统计站, rollup: mean}}
"""


@pytest.fixture
async def town(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    """锦官驿街道 on its own store, holding 锦江区's framework (taken from the county's cascade), with
    two departments configured."""
    county, fed = await make_county(tmp_path)
    async with county.context.store.read() as r:
        cascade = (await r.frameworks.list(role="issued"))[-1].cascade
    path = fed.node_dir(TOWN) / "node.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["departments"] = DEPTS
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    node = build_services(load_config(path), await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'town.db'}"))
    assert await node.cascade.take(None, cascade)
    yield node, fed
    await node.context.store.close()
    await county.context.store.close()


def test_departments_in_node_yaml_are_checked(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    path = fed.node_dir(TOWN) / "node.yaml"
    base = yaml.safe_load(path.read_text(encoding="utf-8"))
    for bad, needle in (([{"code": "510104018-X", "name": "x", "class": "c"}], "部门代码"),
                        ([{"code": f"{TOWN}-X", "name": "x"}], "class"),
                        ([{"code": f"{TOWN}-X", "name": "x", "class": "c"}, {"code": f"{TOWN}-X", "name": "y",
                                                                               "class": "c"}], "重复"),
                        ([{"code": f"{TOWN}-X", "name": "x", "class": "c", "typo": 1}], "typo")):
        path.write_text(yaml.safe_dump({**base, "departments": bad}, allow_unicode=True), encoding="utf-8")
        with pytest.raises(AppraisalError) as e:
            load_config(path)
        assert needle in str(e.value) and "node.yaml" in str(e.value)
    path.write_text(yaml.safe_dump({**base, "departments": DEPTS}, allow_unicode=True), encoding="utf-8")
    assert [d.code for d in load_config(path).departments] == [d["code"] for d in DEPTS]


async def test_departments_are_appraised_in_their_own_class_and_roll_into_the_node(
        town: tuple[Node, Federation], tmp_path: Path) -> None:
    node, _ = town
    src = tmp_path / "depts.yaml"
    src.write_text(dept_framework(link=True), encoding="utf-8")
    async with node.context.store.read() as r:
        before = await r.outbox.pending_count()
    digest = await node.cascade.publish_file(src, actor="wang")
    async with node.context.store.read() as r:
        row = await r.frameworks.get(digest)
        assert row is not None and row.role == "internal"
        assert await r.outbox.pending_count() == before  # cascaded to no one: no node receives it
    # anyone can verify it up to the province key, as a department framework; as a cascade it would be refused
    cfg = node.context.cfg
    fw, got, _ = verify_framework_chain(row.cascade, cfg.root, int(time.time()), internal=True)
    assert got == digest and [u.code for u in fw.units] == [d["code"] for d in DEPTS]
    with pytest.raises(EnvelopeError) as not_a_cascade:
        verify_framework_chain(row.cascade, cfg.root, int(time.time()))
    assert not_a_cascade.value.code == "cascade.bad_length"  # no cascade reaches below a township
    # the task book: K1 for each department (each enters its own), K2 from the street's statistics station;
    # the township's own A1 is now its departments' roll-up, so it is no task; its B3 is rated, not entered
    await node.intake.generate("2026", OFFICE)
    tasks = {(t.unit, t.indicator): t.provider for t in await node.intake.tasks("2026", OFFICE)}
    assert tasks == {(d["code"], "K1"): "" for d in DEPTS} | {(d["code"], "K2"): "街道统计站" for d in DEPTS}
    cjb = Principal(login="cjb", name="城建办", roles=frozenset({"unit"}), units=frozenset({DEPTS[0]["code"]}),
                    via="password")
    sbz = Principal(login="sbz", name="社保站", roles=frozenset({"unit"}), units=frozenset({DEPTS[1]["code"]}),
                    via="password")
    stat = Principal(login="tjz", name="统计站", roles=frozenset({"provider"}), org="街道统计站", via="password")
    assert {(c.unit, c.key) for g in await node.intake.grids("2026", "2026-Y", cjb) for c in
            [CellInput(u, k, "") for u, k in g.cells]} == {(DEPTS[0]["code"], "K1")}
    await node.intake.save("2026", "2026-Y", [CellInput(DEPTS[0]["code"], "K1", "70")], cjb, submit=True)
    await node.intake.save("2026", "2026-Y", [CellInput(DEPTS[1]["code"], "K1", "40")], sbz, submit=True)
    await node.intake.save("2026", "2026-Y", [CellInput(d["code"], "K2", v) for d, v in zip(DEPTS, ("96", "88"),
                                                                                              strict=True)],
                           stat, submit=True)
    queue, total = await node.intake.queue("2026", REVIEWER)
    assert total == 4
    await node.intake.decide("2026", "2026-Y", [(q.entry.unit, q.entry.key) for q in queue], "approve", REVIEWER)
    async with node.context.store.read() as r:
        scores = {s.unit: s for s in await r.scores.list("2026", "2026-Y") if s.framework_digest == digest}
        received = (await r.frameworks.list(role="received"))[-1].digest
        own = await r.results.values("2026", "2026-Y", received, nodes=[TOWN])
        last = await r.bundles.last(TOWN)
    # ranked among themselves, by their own framework
    assert set(scores) == {d["code"] for d in DEPTS}
    assert scores[DEPTS[0]["code"]].rank == 1 and scores[DEPTS[1]["code"]].rank == 2
    # and their K1 rolled into the township's own A1 (sum), signed into its bundle for the county
    assert own[TOWN]["A1"] == "110"
    assert last is not None and bundle_from_message(last.message).values["A1"] == Decimal(110)
    # the dashboard's read shows the departments' class beside the township's own
    versions = await node.read.versions("2026", None, None)
    assert "街道站所" in {v.framework.unit_class for v in versions}
    ranked = await node.read.rankings("2026", "2026-Y", [v for v in versions if v.framework.unit_class == "街道站所"])
    assert [r.record.unit for r in ranked] == [DEPTS[0]["code"], DEPTS[1]["code"]]


async def test_a_department_framework_names_only_departments(town: tuple[Node, Federation], tmp_path: Path) -> None:
    node, _ = town
    src = tmp_path / "depts.yaml"
    src.write_text(dept_framework(link=False).replace("class: 街道站所", "class: 街道站所\nunits:\n"
                                                       "  - {code: \"510104018\", name: 东湖街道}"), encoding="utf-8")
    with pytest.raises(AppraisalError) as e:
        await node.cascade.publish_file(src)
    assert e.value.code == "framework.foreign_units"


async def test_opinion_providers_rate_departments_too(town: tuple[Node, Federation], tmp_path: Path) -> None:
    """A department framework with an indicator scored by raters: the opinion provider's ratings of a
    department are recorded against the department's own framework and re-score its class."""
    node, _ = town
    src = tmp_path / "depts.yaml"
    src.write_text(dept_framework(link=False).replace(
        "weight: 40, unit: \"%\", target: 95, provider: 街道统计站, rollup: mean}",
        "weight: 20, unit: \"%\", target: 95, provider: 街道统计站, rollup: mean}\n"
        "      - {code: K3, name: 群众评议, weight: 20, method: raters}"), encoding="utf-8")
    digest = await node.cascade.publish_file(src)
    await node.entry.enter_assessment("2026", "2026-Y", DEPTS[1]["code"], {"ratings": {"K3": [90, 80, 85]}}, "pingyi")
    async with node.context.store.read() as r:
        held = await r.assessments.for_period("2026", "2026-Y")
        scores = {s.unit: s for s in await r.scores.list("2026", "2026-Y") if s.framework_digest == digest}
    assert json.loads(held[DEPTS[1]["code"]])["ratings"]["K3"] == ["90", "80", "85"]
    assert DEPTS[1]["code"] in scores  # scored by the departments' framework
    with pytest.raises(AppraisalError) as e:
        await node.entry.enter_assessment("2026", "2026-Y", "510104017-XXX", {"ratings": {"K3": [90]}}, "pingyi")
    assert e.value.code == "entry.not_a_unit"
