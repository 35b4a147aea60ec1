"""A county node records assessments about its townships and scores with them: real node code,
real SQLite store, real signed cascade (no NATS needed: the receiving path is called directly)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from aggregator.errors import AppraisalError
from aggregator.framework import Unit, derive_child_framework
from nodes.config import load_config
from nodes.framework_file import load_framework
from nodes.launcher import Federation, load_topology
from nodes.runtime import NodeServices as Node
from nodes.runtime import build_services
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, digest, sign

PROVINCE = """\
issuer: "51"
issuer_name: 四川省
cycle: "2026"
class: 市州
bonus_cap: 5
adjustments:
  - {code: J1, name: 获国家级表彰, kind: bonus, max_points: 2}
  - {code: V1, name: 重大安全生产责任事故, kind: veto, grade_cap: 一般}
indicators:
  - code: A
    name: 经济发展
    weight: 60
    children:
      - {code: A1, name: 地区生产总值, weight: 60, unit: 亿元, target: 1000, targets: {"5101": 2000}}
  - code: B
    name: 治理
    weight: 40
    children:
      - {code: B3, name: 营商环境评价, weight: 40, method: raters, params: {trim: 1}}
"""


async def make_county(tmp_path: Path, province: str = PROVINCE, **config: object) -> tuple[Node, Federation]:
    """锦江区's node on the demo keys, holding 成都市's framework (``config``: extra node.yaml settings)."""
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    path = fed.node_dir("510104") / "node.yaml"
    if config:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data.update(config)
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    node = build_services(load_config(path), await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'county.db'}"))
    now = int(time.time())
    src = tmp_path / "province.yaml"
    src.write_text(province, encoding="utf-8")
    prov_fw = load_framework(src, units=(Unit("5101", "成都市", "市州"), Unit("5107", "绵阳市", "市州")), now=now)
    prov_payload = encode_framework(prov_fw)
    prov_env = sign(PAYLOAD_FRAMEWORK, prov_payload, keys.load_private(fed.node_dir("51") / "key.pem"))
    city_fw = derive_child_framework(prov_fw, digest(prov_payload), "成都市", "5101",
                                     [Unit("510104", "锦江区"), Unit("510105", "青羊区")], unit_class="县市区",
                                     issued_at=now, expires_at=now + 86400)
    city_env = sign(PAYLOAD_FRAMEWORK, encode_framework(city_fw), keys.load_private(fed.node_dir("5101") / "key.pem"))
    chain = pb.CertificateChain.FromString((fed.node_dir("5101") / "chain.pb").read_bytes()).certificates
    await node.cascade.take(None, pb.CascadeMessage(frameworks=[prov_env, city_env],
                                                  certificate_chain=chain).SerializeToString())
    return node, fed


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[Node]:
    node, _ = await make_county(tmp_path)
    yield node
    await node.context.store.close()


async def test_assessments_feed_the_scores(county: Node) -> None:
    async with county.context.store.read() as r:
        issued = await r.frameworks.list(role="issued")
    assert len(issued) == 1  # the county derived its townships' framework from the signed chain
    await county.entry.enter_assessment("2026", "2026-Y", "510104017",
                                  {"ratings": {"B3": [60, 80, 85, 90, 100]}, "events": [{"item": "J1", "points": 3}]},
                                  "市统计局")
    await county.entry.enter_assessment("2026", "2026-Y", "510104018", {"ratings": {"B3": [70, 70, 70]},
                                                                 "events": [{"item": "V1", "note": "12·3 事故"}]},
                                  "区应急局")
    async with county.context.store.read() as r:
        scores = {s.unit: json.loads(s.explanation) for s in await r.scores.list("2026", "2026-Y")}
        audit = await r.audit.entries(action="enter.assessment")
    town = scores["510104017"]
    b3 = next(p for p in town["parts"] if p["indicator"] == "B3")
    assert b3["share"] == "0.85" and Decimal(b3["score"]) == Decimal(34)  # 40 × mean(80, 85, 90)/100
    assert Decimal(town["bonus"]) == 2  # J1 capped at 2 per item
    assert Decimal(town["score"]) == 36  # A1 not reported yet: 0 (flagged) + 34 + 2
    other = scores["510104018"]
    assert Decimal(other["score"]) == 28 and other["grade"] == "差"  # 40 × 0.7; the veto is recorded too
    assert {"item": "V1", "kind": "veto", "points": "0", "note": "12·3 事故"} in other["adjustments"]
    assert [e.actor for e in audit] == ["市统计局", "区应急局"]
    async with county.context.store.read() as r:
        changes = [(e.actor, json.loads(e.detail)) for e in await r.audit.entries(action="score.change")]
    # Every change of a score, rank or grade is audited: who, what triggered it, old and new.
    actor, last = changes[-1]
    assert actor == "区应急局" and "510104018" in last["cause"] and "assessment" in last["cause"]
    assert last["changes"]["510104018"]["score"][1] == "28"
    assert "grade" not in last["changes"]["510104018"]  # 差 before (nothing reported) and after: only changes
    assert "510104017" not in last["changes"]  # unchanged units are not repeated


async def test_assessments_are_checked(county: Node) -> None:
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017", {"ratings": {"B3": [120]}}, "x")
    assert refused.value.code == "assessment.score_range", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510703001", {"ratings": {"B3": [80]}}, "x")
    assert refused.value.code == "entry.not_a_unit", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017", {"gossip": {}}, "x")
    assert refused.value.code == "assessment.unknown_fields", refused.value
    with pytest.raises(AppraisalError) as refused:
        await county.entry.enter_assessment("2026", "2026-Y", "510104017",
                                      {"milestones": {"B3": [{"code": "m1", "due": "soon"}]}}, "x")
    assert refused.value.code == "assessment.bad_date", refused.value
    async with county.context.store.read() as r:
        assert await r.audit.entries(action="enter.assessment") == []


async def test_progress_warnings_and_repeated_grades(county: Node) -> None:
    async with county.context.store.tx() as tx:
        digest_ = (await tx.frameworks.list(role="issued"))[0].digest
        for town, value in (("510104017", "120"), ("510104018", "80")):
            await tx.results.put(node=town, cycle="2026", period="2026-M03", framework_digest=digest_,
                                values={"A1": value}, source="reported", bundle_id="b", now=1)
        for cycle, grades in (("2025", ("一般", "良好")), ("2026", ("一般", "一般"))):
            await tx.scores.put([{"unit": u, "cycle": cycle, "period": f"{cycle}-Y", "framework_digest": "d",
                                  "score": "70", "rank": 1, "explanation": json.dumps({"grade": g})}
                                 for u, g in zip(("510104017", "510104018"), grades, strict=True)])
    found = {w["unit"]: w for w in await county.read.warnings("2026", "2026-M03")}
    # township target 500 (2000 split by the city, then by the county); a quarter of it is expected by March
    assert found["510104017"]["expected"] == "125" and found["510104017"]["level"] == "green"
    assert found["510104018"]["level"] == "red" and found["510104018"]["name"] == "东湖街道"
    assert await county.read.repeated_grades("一般", 2) == ["510104017"]
    with pytest.raises(AppraisalError) as refused:
        await county.read.warnings("2026", "2026-M13")
    assert refused.value.code == "input.period", refused.value
