"""NATS server configuration for a federation: one user per node, allowed to publish only its own
subjects and to consume only through its own durable consumers with their fixed filters
(docs/design.md rule 12). The application still checks that a signer owns its subject; this makes the
server refuse the forgery before any node sees it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STREAMS = ("FA_CASCADE", "FA_RESULTS")


@dataclass(frozen=True)
class NodeAccess:
    code: str
    path: tuple[str, ...]  # codes from the province down to this node
    has_parent: bool
    has_children: bool


def inbox_prefix(code: str) -> str:
    """Each node's reply subjects: a node may read only its own (see NatsTransport.connect)."""
    return f"_INBOX.{code}"


def permissions(n: NodeAccess) -> dict[str, dict[str, list[str]]]:
    p = ".".join(n.path)
    pub = [f"$JS.API.STREAM.INFO.{s}" for s in STREAMS] + [f"$JS.API.STREAM.CREATE.{s}" for s in STREAMS]
    pub.append("$JS.API.INFO")
    sub = [f"{inbox_prefix(n.code)}.>"]  # its own replies and pull deliveries, nobody else's
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
    # Not the legacy CONSUMER.DURABLE.CREATE: its subject carries no filter, so a node could give its
    # durable any filter (a county reading its whole city's results).
    return [f"{api}.CREATE.{stream}.{durable}.{filter_subject}",
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


# --------------------------------------------------------------------------- a hierarchy of servers
#
# The province runs the hub; each city runs a leaf server joined to it, with a JetStream domain of its
# own ("hub", "c<city>"). The city's node and every node below it connect to the city's server, so a
# county's and a township's traffic never leaves its city. Streams per server:
#
#   hub      FA_CASCADE  casc.<prov>                      (the province publishes)
#            FA_RESULTS  sourced from each city's FA_RESULTS with filter_subject res.<prov>.<city>
#   c<city>  FA_CASCADE  casc.<prov>.<city>[.>]           + sourced from the hub's, filter casc.<prov>
#            FA_RESULTS  res.<prov>.<city>[.>]
#
# The hub's user for each leaf connection may send the hub only what sourcing needs (delivery, flow
# control and replies, and consumer calls on the hub's FA_CASCADE); it may not publish a single
# application subject. Without that, a leaf server's operator could publish casc.<prov> into the hub
# or res.<prov>.<other city> into another city's stream (shown in tests/test_nats_hierarchy.py). The
# filter_subject per source means a city's server forwards only its own city's results upwards.

HUB_DOMAIN = "hub"


def city_domain(city: str) -> str:
    return f"c{city}"


def leaf_permissions() -> dict[str, dict[str, list[str]]]:
    """What a city's leaf server may send into the hub (publish, from the leaf's side)."""
    hub_api = f"$JS.{HUB_DOMAIN}.API"
    allow = ["$JS.S.>", "$JS.FC.>", "$JSC.R.>", "_INBOX.>", "$LDS.>",
             f"{hub_api}.CONSUMER.CREATE.FA_CASCADE.>", f"{hub_api}.CONSUMER.DELETE.FA_CASCADE.>",
             f"{hub_api}.CONSUMER.INFO.FA_CASCADE.>", f"{hub_api}.STREAM.INFO.FA_CASCADE", "$JS.ACK.FA_CASCADE.>"]
    return {"publish": {"allow": allow}}


@dataclass(frozen=True)
class ServerPlan:
    name: str                     # "hub" or a city code
    domain: str
    listen: str                   # host:port for clients
    nodes: tuple[NodeAccess, ...]  # the nodes that connect to this server
    leaf_listen: str = ""          # hub only: where leaf servers connect
    hub_leaf_url: str = ""         # leaf only: nats-leaf://user:password@hub:port


def plan_hierarchy(nodes: Sequence[NodeAccess], hub_listen: str, leaf_listen: str,
                   city_listen: Mapping[str, str], hub_leaf_host: str, leaf_passwords: Mapping[str, str]) -> list[ServerPlan]:
    province = next(n for n in nodes if not n.has_parent)
    cities = [n for n in nodes if len(n.path) == 2]
    plans = [ServerPlan("hub", HUB_DOMAIN, hub_listen, (province,), leaf_listen=leaf_listen)]
    leaf_port = leaf_listen.rsplit(":", 1)[1]
    for c in cities:
        members = tuple(n for n in nodes if len(n.path) >= 2 and n.path[1] == c.code)
        plans.append(ServerPlan(c.code, city_domain(c.code), city_listen[c.code], members,
                                hub_leaf_url=f"nats-leaf://leaf-{c.code}:{leaf_passwords[c.code]}@{hub_leaf_host}:{leaf_port}"))
    return plans


def render_server(plan: ServerPlan, cities: Sequence[str], passwords: Mapping[str, str],
                  leaf_passwords: Mapping[str, str], admin_password: str, store_dir: str, *,
                  restrict_leaves: bool = True) -> str:
    """One server's configuration. ``restrict_leaves`` False: the plain leaf-node set-up, only for
    the test that shows why the restriction is needed."""
    users: list[dict[str, Any]] = [{"user": f"node-{n.code}", "password": passwords[n.code], "permissions": permissions(n)}
                                   for n in plan.nodes]
    users.append({"user": "operator", "password": admin_password})  # this server's operator: unrestricted
    conf: dict[str, Any] = {
        "listen": plan.listen, "server_name": f"fedappraisal-{plan.name}", "max_payload": 8 * 1024 * 1024,
        "jetstream": {"store_dir": store_dir, "sync_interval": "always", "domain": plan.domain},
    }
    if plan.leaf_listen:
        users += [{"user": f"leaf-{c}", "password": leaf_passwords[c],
                   **({"permissions": leaf_permissions()} if restrict_leaves else {})} for c in cities]
        conf["leafnodes"] = {"listen": plan.leaf_listen}
    else:
        conf["leafnodes"] = {"remotes": [{"url": plan.hub_leaf_url, "account": "FEDERATION"}]}
    conf["accounts"] = {"FEDERATION": {"jetstream": "enabled", "users": users}}
    return json.dumps(conf, ensure_ascii=False, indent=2) + "\n"


def stream_plan(plan: ServerPlan, province: str, cities: Sequence[str]) -> list[dict[str, Any]]:
    """The streams an operator creates on one server (nats-py StreamConfig fields)."""
    if plan.domain == HUB_DOMAIN:
        return [
            {"name": "FA_CASCADE", "subjects": [f"casc.{province}"]},
            {"name": "FA_RESULTS", "subjects": [],
             "sources": [{"name": "FA_RESULTS", "filter_subject": f"res.{province}.{c}",
                          "external": {"api": f"$JS.{city_domain(c)}.API"}} for c in cities]},
        ]
    c = plan.name
    return [
        {"name": "FA_CASCADE", "subjects": [f"casc.{province}.{c}", f"casc.{province}.{c}.>"],
         "sources": [{"name": "FA_CASCADE", "filter_subject": f"casc.{province}",
                      "external": {"api": f"$JS.{HUB_DOMAIN}.API"}}]},
        {"name": "FA_RESULTS", "subjects": [f"res.{province}.{c}", f"res.{province}.{c}.>"]},
    ]
