"""NATS server configuration for a federation: every node is a user in an account of its own, and
the streams live in one account, ``FEDERATION``, that no node is a member of (docs/design.md §4.5,
rule 12). The application still checks that a signer owns its subject; this makes the server refuse
the forgery before any node sees it.

Why accounts and not only user permissions. The JetStream server answers an API request on whatever
reply subject the requester named, and it publishes that answer itself, so the requester's publish
permissions never apply to it; nor does nats-server (2.15) require the reply subject to be one the
requester may subscribe to. In one shared account, a node that may send ``$JS.API.STREAM.INFO.FA_CASCADE``
could name ``casc.51`` or ``hb.51.5101`` as the reply and have the server write the answer into the
province's cascade or a city's heartbeat (as the same requests from inside FEDERATION still do: the
control in tests/test_nats_replies.py). Across an account boundary the server rewrites the reply of
every imported request to a one-off ``_R_`` subject in the exporting account, and delivers the answer
back into the requester's own account under the reply it named. So whatever a node names as a reply, the answer lands
in its own account, where the only ways out are the node's own imports: its own ``res.``/``casc.``
subjects (a stream message it could have published anyway, under its own subject and the stream's
limits) and its own heartbeat. That holds for every API subject at once, because it does not depend on
which API subject was asked.

What each node account imports from ``FEDERATION`` is exactly what the node may do there, one subject
each: publish (with JetStream's acknowledgement) its own subjects, read the two streams' info, create,
read and pull from its own durable consumers with their fixed filters, and acknowledge their messages.
``FEDERATION`` exports only those kinds of subjects, and only to the node accounts of its server. A
heartbeat is core NATS: the parent's account exports ``hb.<path>`` as a stream to its children's accounts
(on a hierarchy's hub, to ``FEDERATION``, whose leaf connections carry it to the cities' servers). The
node accounts have no JetStream of their own, so a node cannot make streams where no limit applies.

Each user's own permissions repeat the same lists, so a node that tries anything else gets a
permissions violation rather than silence. Streams are created and updated by the operator
(``appraise deploy nats-streams``; the demo's launcher), never by a node: their limits
(``sync.limits``) are only worth something if no node can choose them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nkeys

from sync.limits import DEFAULT_LIMITS, Limits
from sync.transport.nats import stream_limits

STREAMS = ("FA_CASCADE", "FA_RESULTS")
JS_ACCOUNT = "FEDERATION"  # the streams' account: operators and leaf connections, never a node


# --------------------------------------------------------------------------- how each user authenticates
#
# Every secret these functions take (a node's, a leaf connection's, an operator's) is either an nkey
# (nats-server ``nkey:`` users: the server keeps only the public key and checks a signature of a fresh
# challenge, so its configuration holds nothing worth stealing) or, for configurations written before
# nkeys, a password. A seed ``SU…`` or a public key ``U…`` means an nkey user; anything else a password.
# Given a seed, only its public key is written into a server's configuration, except where the server
# itself must sign in (a city server's leaf connection): that seed goes into a file of its own
# (``leaf_seed_file``, mode 0600) which the configuration includes, so the configuration can be shown.

_PUBLIC = re.compile(r"U[A-Z2-7]{55}")
_SEED = re.compile(r"SU[A-Z2-7]{56}")


def new_seed() -> str:
    """A new user nkey seed (``SU…``): the private key of one node, leaf connection or operator."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode()


def is_seed(secret: str) -> bool:
    return bool(_SEED.fullmatch(secret))


def is_nkey(secret: str) -> bool:
    return is_seed(secret) or bool(_PUBLIC.fullmatch(secret))


def public_key(secret: str) -> str:
    """The public key (``U…``) of a seed; a public key as it is."""
    if not is_seed(secret):
        return secret
    key: bytes = nkeys.from_seed(secret.encode()).public_key
    return key.decode()


def _user(name: str, secret: str, **extra: Any) -> dict[str, Any]:
    """One ``users`` entry: an nkey user when ``secret`` is an nkey, else (older configurations) a password."""
    if is_nkey(secret):
        return {"nkey": public_key(secret), **extra}
    return {"user": name, "password": secret, **extra}


@dataclass(frozen=True)
class ServerTls:
    """A NATS server's certificate from the deployment CA (sync/transport/tls.py), its key and the CA.

    Clients (nodes, operators) must speak TLS and check the server against the CA; they sign in with
    their nkey, so no client certificate is asked for. Server to server (cluster routes, leaf
    connections) both sides show a certificate of the CA (``verify``): a route or a leaf connection
    from a machine without one is refused before any protocol is spoken."""

    cert_file: str
    key_file: str
    ca_file: str

    def block(self, *, verify: bool) -> dict[str, Any]:
        return {"cert_file": self.cert_file, "key_file": self.key_file, "ca_file": self.ca_file,
                "verify": verify, "timeout": 5}

    def client(self) -> dict[str, Any]:
        """What a server dialling out (a leaf remote) shows and checks."""
        return {"cert_file": self.cert_file, "key_file": self.key_file, "ca_file": self.ca_file, "timeout": 5}


@dataclass(frozen=True)
class NodeAccess:
    code: str
    path: tuple[str, ...]  # codes from the province down to this node
    has_parent: bool
    has_children: bool


def inbox_prefix(code: str) -> str:
    """Each node's reply subjects: a node may read only its own (see NatsTransport.connect)."""
    return f"_INBOX.{code}"


def node_account(code: str) -> str:
    return f"NODE_{code}"


def permissions(n: NodeAccess) -> dict[str, dict[str, list[str]]]:
    """What node ``n``'s user may publish and subscribe to; its account imports the same (``_account``)."""
    p = ".".join(n.path)
    pub = [f"$JS.API.STREAM.INFO.{s}" for s in STREAMS]
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


# What FEDERATION offers the node accounts of its server; each account imports only its own subjects of
# these. Pull deliveries are many answers to one request, so MSG.NEXT answers as a stream.
_SERVICES = ("$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.CREATE.>", "$JS.API.CONSUMER.INFO.>",
             "$JS.ACK.>", "casc.>", "res.>")
_PULL = "$JS.API.CONSUMER.MSG.NEXT.>"


def accounts(nodes: Sequence[NodeAccess], passwords: Mapping[str, str],
             federation_users: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``accounts`` block of one server: ``FEDERATION`` (JetStream, ``federation_users``) and one
    account per node of ``nodes`` (the nodes that connect to this server). ``passwords``: each node's
    nkey (seed or public key) or, in older configurations, its password."""
    here = {n.code for n in nodes}
    members = [node_account(n.code) for n in nodes]
    exports: list[dict[str, Any]] = [{"service": s, "accounts": members} for s in _SERVICES]
    exports += [{"service": _PULL, "response_type": "stream", "accounts": members},
                {"stream": "hb.>", "accounts": members}]
    federation: dict[str, Any] = {"jetstream": "enabled", "users": federation_users, "exports": exports}
    out: dict[str, Any] = {JS_ACCOUNT: federation}
    for n in nodes:
        out[node_account(n.code)] = _account(n, nodes, here, passwords[n.code], federation)
    return out


def _account(n: NodeAccess, nodes: Sequence[NodeAccess], here: set[str], password: str,
             federation: dict[str, Any]) -> dict[str, Any]:
    perms = permissions(n)
    own_hb = "hb." + ".".join(n.path)
    imports: list[dict[str, Any]] = [{"service": {"account": JS_ACCOUNT, "subject": s}}
                                     for s in perms["publish"]["allow"] if s != own_hb]
    account: dict[str, Any] = {"users": [_user(f"node-{n.code}", password, permissions=perms)], "imports": imports}
    if n.has_parent:
        # From the parent's account when it is on this server; else it came over the leaf connection
        # into FEDERATION. (A stream import is not passed on by a second one, so there is no relay.)
        parent = n.path[-2]
        source = node_account(parent) if parent in here else JS_ACCOUNT
        imports.append({"stream": {"account": source, "subject": "hb." + ".".join(n.path[:-1])}})
    if n.has_children:
        children = [node_account(c.code) for c in nodes if c.path[:-1] == n.path]
        if not children:  # its children are on other servers: into FEDERATION, over the leaf connections
            children = [JS_ACCOUNT]
            federation.setdefault("imports", []).append({"stream": {"account": node_account(n.code), "subject": own_hb}})
        account["exports"] = [{"stream": own_hb, "accounts": children}]
    return account


def render(nodes: Sequence[NodeAccess], passwords: Mapping[str, str], admin_password: str, *, listen: str,
           store_dir: str, server_name: str = "fedappraisal", tls: ServerTls | None = None) -> str:
    """A nats-server configuration (JSON is valid NATS configuration syntax). ``tls``: clients must
    use TLS (a plaintext connection is refused)."""
    conf: dict[str, Any] = {
        "listen": listen, "server_name": server_name, "max_payload": 8 * 1024 * 1024,
        # sync_interval always: acknowledged writes must survive a crash (rule 14)
        "jetstream": {"store_dir": store_dir, "sync_interval": "always"},
        # operators and tests: unrestricted, in the streams' account
        "accounts": accounts(nodes, passwords, [_user("operator", admin_password)]),
    }
    if tls is not None:
        conf["tls"] = tls.block(verify=False)
    return _dump(conf)


_INCLUDE = "__include__"


def _dump(conf: Mapping[str, Any]) -> str:
    """JSON, except that a ``__include__`` key becomes the NATS ``include`` directive (a file of its own)."""
    text = json.dumps(conf, ensure_ascii=False, indent=2)
    return re.sub(rf'"{_INCLUDE}": ("[^"]+")', r"include \1", text) + "\n"


def single_stream_plan(limits: Limits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    """The streams of a single server (``render``): every subject of each kind, with the limits."""
    return [{"name": "FA_CASCADE", "subjects": ["casc.>"], **stream_limits(limits)},
            {"name": "FA_RESULTS", "subjects": ["res.>"], **stream_limits(limits)}]


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


def source_deliver(direction: str, city: str) -> str:
    """The deliver prefix of a cross-domain source (``external.deliver``): ``down`` the hub's cascade
    into city ``city``'s stream, ``up`` that city's results into the hub's. Without one, every source
    delivers on ``$JS.S.<random>``, which a leaf user must then be allowed wholesale: any city's server
    could subscribe to another city's roll-up on its way to the hub, or publish into its deliveries."""
    return f"fa.{direction}.{city}"


def leaf_permissions(city: str = "", province: str = "") -> dict[str, dict[str, list[str]]]:
    """What city ``city``'s leaf server may send into the hub (publish) and have the hub send it
    (subscribe), from the leaf's side. Only its own: its results' source deliveries (``up``), its
    domain's API (the hub sourcing from it), its cascade source's deliveries (``down``), the province's
    heartbeat; replies and flow control (random subjects, nothing stored). No application subject of
    another city, nor the province's ``casc.``/``res.`` (those reach it only through its stream's source).
    ``city`` "": the older set-up with ``$JS.S.>`` deliveries (sources without a deliver prefix)."""
    hub_api = f"$JS.{HUB_DOMAIN}.API"
    replies = ["$JS.FC.>", "$JSC.R.>", "_INBOX.>", "$LDS.>"]
    consumers = [f"{hub_api}.CONSUMER.CREATE.FA_CASCADE.>", f"{hub_api}.CONSUMER.DELETE.FA_CASCADE.>",
                 f"{hub_api}.CONSUMER.INFO.FA_CASCADE.>", f"{hub_api}.STREAM.INFO.FA_CASCADE", "$JS.ACK.FA_CASCADE.>"]
    if not city:
        return {"publish": {"allow": ["$JS.S.>", *replies, *consumers]}}
    return {"publish": {"allow": [f"{source_deliver('up', city)}.>", *replies, *consumers]},
            "subscribe": {"allow": [f"{source_deliver('down', city)}.>", f"$JS.{city_domain(city)}.API.>", *replies,
                                    f"hb.{province or '*'}"]}}


@dataclass(frozen=True)
class HubMember:
    """One server of the province's hub: a cluster of three in a real province (JetStream replicas 3, so
    the hub's streams survive the loss of any one), or a single server."""

    listen: str              # host:port for clients (the province's node, operators)
    leaf_listen: str         # host:port where city servers connect
    leaf_host: str           # how the city servers reach leaf_listen's port
    cluster_listen: str = ""  # host:port for routes among the hub's servers ("" for a single hub)
    route_host: str = ""      # how the other hub servers reach cluster_listen's port


@dataclass(frozen=True)
class ServerPlan:
    name: str                     # "hub", "hub-<i>" (a cluster's i-th server) or a city code
    domain: str
    listen: str                   # host:port for clients
    nodes: tuple[NodeAccess, ...]  # the nodes that connect to this server
    leaf_listen: str = ""          # hub only: where leaf servers connect
    hub_leaf_url: str = ""         # leaf only: the first of hub_leaf_urls (older callers)
    hub_leaf_urls: tuple[str, ...] = ()  # leaf only: every hub server, so the leaf fails over between them
    cluster_listen: str = ""       # a hub cluster's member only
    routes: tuple[str, ...] = ()   # a hub cluster's member only: every member's route URL

    @property
    def is_hub(self) -> bool:
        return self.domain == HUB_DOMAIN

    @property
    def replicas(self) -> int:
        """JetStream replicas of this server's streams: the hub cluster's size, else 1."""
        return len(self.routes) if self.routes else 1


def _port(hostport: str) -> str:
    return hostport.rsplit(":", 1)[1]


def plan_hierarchy(nodes: Sequence[NodeAccess], hub_listen: str, leaf_listen: str,
                   city_listen: Mapping[str, str], hub_leaf_host: str, leaf_passwords: Mapping[str, str], *,
                   hub_members: Sequence[HubMember] = ()) -> list[ServerPlan]:
    """The hub (``hub_listen``/``leaf_listen``/``hub_leaf_host``, or ``hub_members``: a cluster, whose
    servers are named hub-1, hub-2, …) and one leaf server per city. ``leaf_passwords``: each city's leaf
    connection secret (an nkey seed, or a password for an older configuration, then carried in the URL)."""
    province = next(n for n in nodes if not n.has_parent)
    cities = [n for n in nodes if len(n.path) == 2]
    members = list(hub_members) or [HubMember(hub_listen, leaf_listen, hub_leaf_host)]
    clustered = len(members) > 1
    routes = tuple(f"nats-route://{m.route_host}:{_port(m.cluster_listen)}" for m in members) if clustered else ()
    plans = [ServerPlan(f"hub-{i}" if clustered else "hub", HUB_DOMAIN, m.listen, (province,), leaf_listen=m.leaf_listen,
                        cluster_listen=m.cluster_listen if clustered else "", routes=routes)
             for i, m in enumerate(members, 1)]
    for c in cities:
        secret = leaf_passwords[c.code]
        auth = "" if is_nkey(secret) else f"leaf-{c.code}:{secret}@"
        urls = tuple(f"nats-leaf://{auth}{m.leaf_host}:{_port(m.leaf_listen)}" for m in members)
        city_nodes = tuple(n for n in nodes if len(n.path) >= 2 and n.path[1] == c.code)
        plans.append(ServerPlan(c.code, city_domain(c.code), city_listen[c.code], city_nodes,
                                hub_leaf_url=urls[0], hub_leaf_urls=urls))
    return plans


def leaf_seed_file(city: str) -> str:
    """The file, beside the city server's configuration, holding the seed its leaf connection signs in
    with (``leaf_seed_conf``); the configuration includes it by this name."""
    return f"{city}-leaf.nkey"


def leaf_seed_conf(seed: str) -> str:
    return f'nkey: "{seed}"\n'


def render_server(plan: ServerPlan, cities: Sequence[str], passwords: Mapping[str, str],
                  leaf_passwords: Mapping[str, str], admin_password: str, store_dir: str, *,
                  restrict_leaves: bool = True, tls: ServerTls | None = None) -> str:
    """One server's configuration. ``restrict_leaves`` False: the plain leaf-node set-up, only for
    the test that shows why the restriction is needed. ``tls``: every connection of this server (clients,
    leaf connections, cluster routes) is TLS with the deployment CA; server to server, both sides show
    a certificate. A city server whose leaf secret is a seed includes ``leaf_seed_file(city)``."""
    users: list[dict[str, Any]] = [_user("operator", admin_password)]  # this server's operator
    conf: dict[str, Any] = {
        "listen": plan.listen, "server_name": f"fedappraisal-{plan.name}", "max_payload": 8 * 1024 * 1024,
        "jetstream": {"store_dir": store_dir, "sync_interval": "always", "domain": plan.domain},
    }
    if tls is not None:
        conf["tls"] = tls.block(verify=False)
    if plan.leaf_listen:
        province = plan.nodes[0].code  # the hub's only node
        users += [_user(f"leaf-{c}", leaf_passwords[c],
                        **({"permissions": leaf_permissions(c, province)} if restrict_leaves else {})) for c in cities]
        conf["leafnodes"] = {"listen": plan.leaf_listen, **({"tls": tls.block(verify=True)} if tls else {})}
    else:
        remote: dict[str, Any] = {"urls": list(plan.hub_leaf_urls or (plan.hub_leaf_url,)), "account": JS_ACCOUNT}
        if tls is not None:
            remote["tls"] = tls.client()
        if is_nkey(leaf_passwords[plan.name]):
            remote[_INCLUDE] = leaf_seed_file(plan.name)  # last: the directive takes no comma after it
        conf["leafnodes"] = {"remotes": [remote]}
    if plan.routes:
        # The hub's servers form one JetStream cluster: its meta leader places each stream's replicas.
        conf["cluster"] = {"name": "fedappraisal-hub", "listen": plan.cluster_listen, "routes": list(plan.routes),
                           **({"tls": tls.block(verify=True)} if tls else {})}
    conf["accounts"] = accounts(plan.nodes, passwords, users)
    return _dump(conf)


def stream_plan(plan: ServerPlan, province: str, cities: Sequence[str],
                limits: Limits = DEFAULT_LIMITS) -> list[dict[str, Any]]:
    """The streams an operator creates on one server (nats-py StreamConfig fields), each with the limits;
    on a hub cluster, with one replica on each of its servers."""
    bounds = stream_limits(limits)
    if plan.is_hub:
        replicas = {"num_replicas": plan.replicas} if plan.replicas > 1 else {}
        return [
            {"name": "FA_CASCADE", "subjects": [f"casc.{province}"], **bounds, **replicas},
            {"name": "FA_RESULTS", "subjects": [], **bounds, **replicas,
             "sources": [{"name": "FA_RESULTS", "filter_subject": f"res.{province}.{c}",
                          "external": {"api": f"$JS.{city_domain(c)}.API", "deliver": source_deliver("up", c)}}
                         for c in cities]},
        ]
    c = plan.name
    return [
        {"name": "FA_CASCADE", "subjects": [f"casc.{province}.{c}", f"casc.{province}.{c}.>"], **bounds,
         "sources": [{"name": "FA_CASCADE", "filter_subject": f"casc.{province}",
                      "external": {"api": f"$JS.{HUB_DOMAIN}.API", "deliver": source_deliver("down", c)}}]},
        {"name": "FA_RESULTS", "subjects": [f"res.{province}.{c}", f"res.{province}.{c}.>"], **bounds},
    ]
