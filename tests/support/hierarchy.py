"""A small signed hierarchy for protocol tests: 四川省 → 成都市 → 锦江区 → two townships."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aggregator.framework import Framework, Unit, derive_child_framework
from nodes.framework_file import load_framework
from nodes.launcher import DATA
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, digest, sign
from sync.identity import Me
from sync.trust import Identity, issue_certificate, root_identity

NOW = int(time.time())
LEVELS = {2: "province", 4: "city", 6: "county", 9: "township"}
NAMES = {"51": "四川省", "5101": "成都市", "510104": "锦江区", "510104017": "锦官驿街道", "510104018": "东湖街道",
         "5107": "绵阳市"}
PARENT = {"5101": "51", "5107": "51", "510104": "5101", "510104017": "510104", "510104018": "510104"}
CHILDREN = {"51": ["5101", "5107"], "5101": ["510104"], "510104": ["510104017", "510104018"]}


@dataclass
class Hierarchy:
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    chains: dict[str, list[bytes]] = field(default_factory=dict)

    @classmethod
    def build(cls) -> Hierarchy:
        h = cls()
        for code in ["51", "5101", "5107", "510104", "510104017", "510104018"]:
            h.keys[code] = keys.generate()
            if code == "51":
                h.chains[code] = []
            else:
                p = PARENT[code]
                h.chains[code] = [*h.chains[p], h.certify(p, code, h.keys[code])]
        return h

    def certify(self, issuer: str, code: str, key: Ed25519PrivateKey, *, not_after: int | None = None) -> bytes:
        return issue_certificate(self.keys[issuer], issuer, code=code, name=NAMES.get(code, code),
                                 level=LEVELS[len(code)], public_key=key.public_key(), serial=1,
                                 not_before=NOW - 60, not_after=not_after or NOW + 86400)

    @property
    def root(self) -> Identity:
        return root_identity("51", "四川省", self.keys["51"].public_key())

    def me(self, code: str) -> Me:
        path = [code]
        while path[0] in PARENT:
            path.insert(0, PARENT[path[0]])
        return Me(code=code, name=NAMES[code], level=LEVELS[len(code)], path=tuple(path), key=self.keys[code],
                  chain=tuple(self.chains[code]), root=self.root, parent=PARENT.get(code),
                  children={c: NAMES[c] for c in CHILDREN.get(code, [])})

    def province_framework(self, version: int = 1, title: str = "") -> Framework:
        fw = load_framework(DATA / "sample-framework.yaml",
                            units=(Unit("5101", "成都市"), Unit("5107", "绵阳市")), now=NOW)
        return replace(fw, version=version, title=title or fw.title)

    def signed(self, code: str, fw: Framework) -> tuple[bytes, str]:
        payload = encode_framework(fw)
        return sign(PAYLOAD_FRAMEWORK, payload, self.keys[code]), digest(payload)

    def cascade_to_city(self, version: int = 1, title: str = "") -> tuple[bytes, str]:
        env, d = self.signed("51", self.province_framework(version, title))
        return pb.CascadeMessage(frameworks=[env]).SerializeToString(), d

    def cascade_to_county(self) -> bytes:
        pfw = self.province_framework()
        penv, pd = self.signed("51", pfw)
        cfw = derive_child_framework(pfw, pd, "成都市", "5101", [Unit("510104", "锦江区")], unit_class="县市区",
                                     issued_at=NOW, expires_at=NOW + 86400)
        cenv, _ = self.signed("5101", cfw)
        return pb.CascadeMessage(frameworks=[penv, cenv], certificate_chain=self.chains["5101"]).SerializeToString()


def values_for(fw: Framework, factor: str = "1.1") -> dict[str, Decimal]:
    return {i.code: (i.target or Decimal(1)) * Decimal(factor) for i in fw.leaves()}


def sample_path() -> Path:
    return DATA / "sample-framework.yaml"
