"""Who this node is, as the protocol roles need it (no store, no transport)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aggregator.framework import Framework
from sync.limits import DEFAULT_LIMITS, Limits
from sync.trust import Identity, TrustState


@dataclass(frozen=True)
class Me:
    code: str
    name: str
    level: str
    path: tuple[str, ...]
    key: Ed25519PrivateKey
    chain: tuple[bytes, ...]
    root: Identity
    parent: str | None
    children: dict[str, str]  # code -> name
    # Revocation lists in force and keys seen: shared, mutable, loaded from and saved to the store by the node.
    trust: TrustState = field(default_factory=TrustState, compare=False)
    limits: Limits = field(default=DEFAULT_LIMITS, compare=False)
    # Frameworks are immutable under their digest: each decoded once per node (results receiver).
    decoded: dict[str, Framework] = field(default_factory=dict, compare=False)

    def identity(self) -> Identity:
        """This node as a verified signer would look to its children (for checking what it is about
        to sign exactly as they will check it)."""
        return Identity(self.code, self.name, self.level, self.key.public_key(), self.path, 2**62)

    def cascade_subject(self) -> str:
        return "casc." + ".".join(self.path)

    def parent_cascade_subject(self) -> str:
        return "casc." + ".".join(self.path[:-1])

    def results_subject(self) -> str:
        return "res." + ".".join(self.path)

    def children_results_filter(self) -> str:
        return "res." + ".".join(self.path) + ".*"


@dataclass(frozen=True)
class Outcome:
    """What happened to one received message."""

    accepted: bool
    duplicate: bool
    reason: str
    origin: str = ""
    msg_id: str = ""
    retry: bool = False  # not decided yet (e.g. a gap): the transport should deliver it again later
    code: str = ""  # why, for programs: the stable code of a rejection (e.g. "cascade.rollback"); "" when accepted
