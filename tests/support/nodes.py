"""A county node on the demo keys holding 成都市's framework: real node code, real SQLite store, real
signed cascade (no NATS needed: the receiving path is called directly)."""

from __future__ import annotations

import time
from pathlib import Path

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


async def make_county(tmp_path: Path, province: str = PROVINCE, *, store_url: str | None = None,
                      store: Store | None = None, **config: object) -> tuple[Node, Federation]:
    """锦江区's node on the demo keys, holding 成都市's framework (``config``: extra node.yaml settings;
    ``store_url``: its store, else a SQLite file under ``tmp_path``; or ``store``, one already open)."""
    node, fed = await county_node(tmp_path, store_url=store_url, store=store, **config)
    message, _ = city_cascade(fed, tmp_path, province)
    await node.cascade.take(None, message)
    return node, fed


async def county_node(tmp_path: Path, *, store_url: str | None = None, store: Store | None = None,
                      **config: object) -> tuple[Node, Federation]:
    """锦江区's node on the demo keys, holding nothing yet."""
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    path = fed.node_dir("510104") / "node.yaml"
    if config:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data.update(config)
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    node = build_services(load_config(path),
                          store or await Store.open(store_url or f"sqlite+aiosqlite:///{tmp_path / 'county.db'}"))
    return node, fed


def city_cascade(fed: Federation, tmp_path: Path, province: str = PROVINCE) -> tuple[bytes, str]:
    """成都市's cascade message for its two counties (the province's framework first), and the digest
    of 成都市's framework in it."""
    now = int(time.time())
    src = tmp_path / "province.yaml"
    src.write_text(province, encoding="utf-8")
    prov_fw = load_framework(src, units=(Unit("5101", "成都市", "市州"), Unit("5107", "绵阳市", "市州")), now=now)
    prov_payload = encode_framework(prov_fw)
    prov_env = sign(PAYLOAD_FRAMEWORK, prov_payload, keys.load_private(fed.node_dir("51") / "key.pem"))
    city_fw = derive_child_framework(prov_fw, digest(prov_payload), "成都市", "5101",
                                     [Unit("510104", "锦江区"), Unit("510105", "青羊区")], unit_class="县市区",
                                     issued_at=now, expires_at=now + 86400)
    city_payload = encode_framework(city_fw)
    city_env = sign(PAYLOAD_FRAMEWORK, city_payload, keys.load_private(fed.node_dir("5101") / "key.pem"))
    chain = pb.CertificateChain.FromString((fed.node_dir("5101") / "chain.pb").read_bytes()).certificates
    return (pb.CascadeMessage(frameworks=[prov_env, city_env], certificate_chain=chain).SerializeToString(),
            digest(city_payload))
