"""NATS server configuration for a federation: one user per node, allowed to publish only its own
subjects and to consume only through its own durable consumers with their fixed filters
(DESIGN.md rule 12). The application still checks that a signer owns its subject; this makes the
server refuse the forgery before any node sees it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STREAMS = ("FA_CASCADE", "FA_RESULTS")


@dataclass(frozen=True)
class NodeAccess:
    code: str
    path: tuple[str, ...]  # codes from the province down to this node
    has_parent: bool
    has_children: bool


def permissions(n: NodeAccess) -> dict[str, dict[str, list[str]]]:
    p = ".".join(n.path)
    pub = [f"$JS.API.STREAM.INFO.{s}" for s in STREAMS] + [f"$JS.API.STREAM.CREATE.{s}" for s in STREAMS]
    pub.append("$JS.API.INFO")
    sub = ["_INBOX.>"]
    if n.has_parent:  # its results go up; it reads what its parent cascades and its parent's heartbeat
        parent = ".".join(n.path[:-1])
        pub.append(f"res.{p}")
        pub += _consumer("FA_CASCADE", f"casc-{n.code}", f"casc.{parent}")
        sub.append(f"hb.{parent}")
    if n.has_children:  # its frameworks and heartbeats go down; it reads what its children report
        pub += [f"casc.{p}", f"hb.{p}"]
        pub += _consumer("FA_RESULTS", f"res-{n.code}", f"res.{p}.*")
    return {"publish": {"allow": pub}, "subscribe": {"allow": sub}}


def _consumer(stream: str, durable: str, filter_subject: str) -> list[str]:
    api = "$JS.API.CONSUMER"
    return [f"{api}.CREATE.{stream}.{durable}.{filter_subject}", f"{api}.DURABLE.CREATE.{stream}.{durable}",
            f"{api}.INFO.{stream}.{durable}", f"{api}.MSG.NEXT.{stream}.{durable}", f"$JS.ACK.{stream}.{durable}.>"]


def render(nodes: Sequence[NodeAccess], passwords: Mapping[str, str], admin_password: str, *, listen: str,
           store_dir: str, server_name: str = "fedappraisal") -> str:
    """A nats-server configuration (JSON is valid NATS configuration syntax)."""
    users = [{"user": f"node-{n.code}", "password": passwords[n.code], "permissions": permissions(n)} for n in nodes]
    users.append({"user": "operator", "password": admin_password})  # operators and tests: unrestricted
    conf = {
        "listen": listen, "server_name": server_name, "max_payload": 8 * 1024 * 1024,
        # sync_interval always: acknowledged writes must survive a crash (rule 14)
        "jetstream": {"store_dir": store_dir, "sync_interval": "always"},
        "accounts": {"FEDERATION": {"jetstream": "enabled", "users": users}},
    }
    return json.dumps(conf, ensure_ascii=False, indent=2) + "\n"
