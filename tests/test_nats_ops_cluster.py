"""Issue 12: a real federation on a NATS hierarchy whose hub is a three-server JetStream cluster (streams
with three replicas, routes, leaf connections and clients all TLS, every user an nkey). The hub server
leading both hub streams is SIGKILLed as the province publishes a framework; every node still gets it.
The killed server comes back, and the leader of the hub's results is SIGKILLed as the townships
report; the province still takes every city's roll-up, verified, equal to the townships' values
composed by the framework's rules.

Seven nodes (two cities, a county and a township under each), so that both cities' leaf servers carry
the cascade down and the roll-up up through the hub; each city's on a node host.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nats.errors import Error as NatsError

from aggregator.framework import compose
from aggregator.numbers import round_value
from nodes.demo import framework_for
from nodes.launcher import DATA, Federation, NatsHierarchy, NodeSpec, hosts_by_city, load_topology
from sync.transport.nats import STREAM_CASCADE, STREAM_RESULTS
from tests.support.federation import CYCLE, PERIOD, Client, healthy, wait_until

pytestmark = pytest.mark.slow

NODES = ("51", "5101", "510104", "510104017", "5107", "510703", "510703001")
DEADLINE = 120.0  # seconds: generous, for a loaded machine; the figures printed say how long it took
PREFIX = "fedappraisal-"  # the hub members' server_name is "fedappraisal-hub-<i>"


def unix(rfc3339: str) -> float:
    """The server's timestamps have nanoseconds, which datetime does not take."""
    whole, _, frac = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}")


def small_topology() -> list[NodeSpec]:
    specs = [NodeSpec(s.code, s.name, s.level, s.parent) for s in load_topology() if s.code in NODES]
    by = {s.code: s for s in specs}
    for s in specs:
        if s.parent is not None:
            by[s.parent].children.append(s.code)
    return specs


class LoopbackTransport(httpx.BaseTransport):
    """nodes.launcher.LoopbackTransport for a blocking client: ``<code>.localhost`` (a hosted node) is
    dialled at 127.0.0.1, its Host header kept to name the node."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host.endswith(".localhost"):
            request = httpx.Request(request.method, request.url.copy_with(host="127.0.0.1"), headers=request.headers,
                                    stream=request.stream, extensions=request.extensions)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Federation, Client]]:
    # Each city's nodes on a node host of their own, as a city's 政务云 runs them: three Python processes
    # start much sooner than seven on a small machine; every node still has its own NATS user and connection.
    specs = small_topology()
    fed = Federation(tmp_path / "fed", specs, nats_secure=True, nats_hub_cluster=3, hosts=hosts_by_city(specs))
    fed.heartbeat_seconds = 2
    fed.prepare()
    client = Client(fed)
    client.http.close()
    client.http = httpx.Client(timeout=10, transport=LoopbackTransport())
    try:
        fed.start_nats()
        fed.start()
        for s in fed.specs:
            wait_until(f"{s.code} healthy", partial(healthy, fed, client, s.code), 90)
        yield fed, client
    finally:
        client.http.close()
        fed.stop_all()


def poll(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """``check()``'s first truthy answer; an exception counts as not yet (a server being elected)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except Exception as exc:  # retried until the deadline, then named in the failure
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r})")


class Hub:
    """The operator's view of the hub cluster (its nkey, over TLS), through whichever members are up."""

    def __init__(self, h: NatsHierarchy) -> None:
        self.h = h
        self.down: set[str] = set()

    def url(self) -> str:
        return ",".join(f"tls://127.0.0.1:{self.h.ports[n]}" for n in self.h.hubs if n not in self.down)

    async def _request(self, subject: str, body: dict[str, Any], url: str) -> dict[str, Any]:
        nc = await self.h.operator_connect(url, allow_reconnect=False, connect_timeout=3)
        try:
            reply = await nc.request(subject, json.dumps(body).encode(), timeout=3)
        finally:
            await nc.close()
        answer: dict[str, Any] = json.loads(reply.data)
        if "error" in answer:
            raise RuntimeError(f"{subject}: {answer['error']}")
        return answer

    def call(self, subject: str, body: dict[str, Any], url: str = "") -> dict[str, Any]:
        """One JetStream API request. While members elect leaders (a member just killed or started)
        the API may not answer in time: asked again, until a deadline."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return asyncio.run(self._request(subject, body, url or self.url()))
            except (NatsError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    @staticmethod
    def _api(what: str) -> str:
        """``what``: a stream ("FA_RESULTS") or a stream's durable consumer ("FA_RESULTS.res-51")."""
        return "CONSUMER" if "." in what else "STREAM"

    def leader(self, what: str) -> str:
        """The member leading ``what``, once every other member that is up is a current replica; else ""."""
        info = self.call(f"$JS.API.{self._api(what)}.INFO.{what}", {})
        c = info.get("cluster", {})
        leader = str(c.get("leader", "")).removeprefix(PREFIX)
        current = {str(r["name"]).removeprefix(PREFIX) for r in c.get("replicas", []) if r.get("current")}
        if leader not in set(self.h.hubs) - self.down or current != set(self.h.hubs) - self.down - {leader}:
            return ""
        return leader

    def lead(self, what: str, member: str) -> bool:
        """Whether ``member`` leads ``what``; if not, a real step-down asks the replicas to elect it."""
        if self.leader(what) == member:
            return True
        # not asked again here: a step-down that timed out may still have happened (poll asks leader() again)
        asyncio.run(self._request(f"$JS.API.{self._api(what)}.LEADER.STEPDOWN.{what}",
                                  {"placement": {"preferred": PREFIX + member}}, self.url()))
        return False

    def stored_at(self, stream: str, subject: str) -> float:
        """When the hub stored ``subject``'s last message in ``stream`` (Unix time)."""
        msg = self.call(f"$JS.API.STREAM.MSG.GET.{stream}", {"last_by_subj": subject})["message"]
        return unix(msg["time"])

    def leader_since(self, what: str) -> float:
        """When ``what``'s leader took over (Unix time)."""
        return unix(self.call(f"$JS.API.{self._api(what)}.INFO.{what}", {})["cluster"]["leader_since"])

    def holds(self, server: str, stream: str) -> dict[str, int]:
        """How many messages ``stream`` on ``server`` ("hub" or a city) holds, by subject."""
        url = self.url() if server == "hub" else self.h.operator_url(server)
        info = self.call(f"$JS.API.STREAM.INFO.{stream}", {"subjects_filter": ">"}, url)
        return dict(info["state"].get("subjects") or {})

    def count(self, server: str, stream: str, subject: str) -> int:
        return self.holds(server, stream).get(subject, 0)

    def drained(self, server: str, stream: str, durable: str) -> bool:
        """Whether node durable ``durable`` has been handed, and has acknowledged, all it filters."""
        url = self.url() if server == "hub" else self.h.operator_url(server)
        info = self.call(f"$JS.API.CONSUMER.INFO.{stream}.{durable}", {}, url)
        return bool(info["num_pending"] == 0 and info["num_ack_pending"] == 0 and info["delivered"]["stream_seq"] > 0)

    def kill(self, member: str) -> None:
        self.h.kill(member)  # SIGKILL: as a machine that dies
        self.down.add(member)

    def start(self, member: str) -> None:
        self.h.start_server(member)  # its JetStream store kept: it catches up from the others
        self.down.discard(member)


def nothing_pending_or_given_up(client: Client, code: str) -> bool:
    s = client.get(code, "/api/v1/sync")
    sending = [d for d in (s["results_to_parent"], s["cascade_to_children"]) if d]
    return bool(s["nats_connected"]) and not s.get("gave_up") and all(d["pending"] == 0 for d in sending)


def province(client: Client) -> dict[str, Decimal]:
    """The province's rolled-up values of the year."""
    return {v["indicator"]: Decimal(v["value"]) for v in client.get("51", "/api/v1/values", cycle=CYCLE)
            if v["source"] == "rolled_up" and v["period"] == PERIOD}


def test_the_hub_leader_killed_during_a_cascade_and_a_roll_up_loses_nothing(
        running: tuple[Federation, Client]) -> None:
    fed, client = running
    h = fed.nats
    assert isinstance(h, NatsHierarchy) and h.hubs == ["hub-1", "hub-2", "hub-3"]
    # Every node signs in with an nkey of its own, over TLS: no password anywhere in its node.yaml.
    for s in fed.specs:
        d = fed.node_dir(s.code)
        section = yaml.safe_load((d / "node.yaml").read_text(encoding="utf-8"))["nats"]
        assert set(section) == {"url", "seed_file", "ca"}, s.code
        assert all(u.startswith("tls://127.0.0.1:") and "@" not in u for u in section["url"].split(",")), section
        assert stat.S_IMODE((d / section["seed_file"]).stat().st_mode) == 0o600
    assert len(yaml.safe_load((fed.node_dir("51") / "node.yaml").read_text(encoding="utf-8"))["nats"]["url"]
               .split(",")) == 3  # the province on the hub: all three members
    hub = Hub(h)
    figures: dict[str, float] = {}

    # --- a cascade. One member leads both hub streams, so one kill takes out the leader of each.
    first = poll("FA_CASCADE's leader", lambda: hub.leader(STREAM_CASCADE))
    poll(f"FA_RESULTS led by {first}", lambda: hub.lead(STREAM_RESULTS, first))
    framework = framework_for(DATA / "sample-framework.yaml", set(fed.by_code))
    r = client.post("51", "/api/v1/admin/frameworks", {"yaml": framework, "filename": "sample-framework.yaml"})
    assert r.status_code == 201, r.text
    hub.kill(first)  # the province's outbox is publishing it now, or the cities' sources are fetching it
    killed, killed_at = time.monotonic(), time.time()
    assert poll("a new FA_CASCADE leader", lambda: hub.leader(STREAM_CASCADE)) != first
    figures["new FA_CASCADE leader after the kill"] = hub.leader_since(STREAM_CASCADE) - killed_at
    poll("every node holds its frameworks", lambda: all(client.holds(s.code) for s in fed.specs))
    figures["cascade complete after the kill"] = time.monotonic() - killed
    # For the record: whether the province's publish itself met the dead leader (stored after the kill)
    stored = poll("the framework in the hub's FA_CASCADE", lambda: hub.stored_at(STREAM_CASCADE, "casc.51"))
    figures["framework stored at the hub after the kill"] = stored - killed_at
    for s in fed.specs:  # exactly its parent's framework (and its own decomposition), none refused
        assert len(client.frameworks(s.code)) == (1 if s.parent else 0) + (1 if s.children else 0), s.code
        assert client.get(s.code, "/api/v1/status")["counts"]["rejected"] == 0, s.code
    poll("every outbox empty", lambda: all(nothing_pending_or_given_up(client, s.code) for s in fed.specs))
    # The stream path itself, whichever way each node took it first (a node behind its parent's heartbeat
    # also asks its parent over gRPC): the framework once in the hub and in each city's stream, and each
    # city's durable consumer handed it and acknowledged it.
    assert hub.holds("hub", STREAM_CASCADE) == {"casc.51": 1}
    for city in ("5101", "5107"):
        poll(f"the framework in {city}'s FA_CASCADE", partial(hub.count, city, STREAM_CASCADE, "casc.51"))
        # once, beside the city's own for its counties and the county's for its townships (never at the hub)
        county = fed.by_code[city].children[0]
        assert hub.holds(city, STREAM_CASCADE) == {"casc.51": 1, f"casc.51.{city}": 1, f"casc.51.{city}.{county}": 1}
        poll(f"casc-{city} drained", partial(hub.drained, city, STREAM_CASCADE, f"casc-{city}"))
    figures["framework in both cities' streams, durables drained, after the kill"] = time.monotonic() - killed

    # --- the killed member comes back and catches up; then a roll-up, and its leader is killed
    hub.start(first)
    poll("all three replicas of both streams current",
         lambda: hub.leader(STREAM_CASCADE) and hub.leader(STREAM_RESULTS))
    # One member leads the hub's results and the province's durable consumer of them: the kill takes both.
    second = hub.leader(STREAM_RESULTS)
    poll(f"the province's consumer led by {second}", lambda: hub.lead(f"{STREAM_RESULTS}.res-51", second))
    townships = [s for s in fed.specs if s.level == "township"]
    assert [s.parent for s in townships] == ["510104", "510703"]
    rules = {i["code"]: i["rollup"] for i in client.frameworks("51")[0]["indicators"] if i["leaf"]}
    entered: dict[str, dict[str, Decimal]] = {}
    killed = killed_at = 0.0
    for n, s in enumerate(townships):
        if n == 1:  # 成都市's roll-up under way, 绵阳市's not begun: 绵阳市's crosses the hub after the kill
            hub.kill(second)
            killed, killed_at = time.monotonic(), time.time()
        fw = client.frameworks(s.code)[0]
        values = {i["code"]: str(Decimal(i["target"]) * Decimal(100 + 7 * n) / 100)
                  for i in fw["indicators"] if i["leaf"]}
        r = client.post(s.code, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD, "values": values})
        assert r.status_code == 201, r.text
    for s in townships:  # what the townships hold as their reports (the node rounds what it is given)
        entered[s.code] = {v["indicator"]: Decimal(v["value"])
                           for v in client.get(s.code, "/api/v1/values", cycle=CYCLE)
                           if v["source"] == "entered" and v["period"] == PERIOD}

    def expected(code: str) -> dict[str, Decimal]:
        spec = fed.by_code[code]
        if spec.level == "township":
            return entered[code]
        kids = [expected(c) for c in spec.children]
        return {ind: round_value(compose(rule, [k[ind] for k in kids])) for ind, rule in rules.items()}

    want = expected("51")
    assert len(want) == len(rules) > 0
    poll("the province's roll-up equal to the townships' values composed", lambda: province(client) == want)
    figures["roll-up complete after the kill"] = time.monotonic() - killed
    assert poll("a new FA_RESULTS leader", lambda: hub.leader(STREAM_RESULTS)) != second
    figures["new FA_RESULTS leader after the kill"] = hub.leader_since(STREAM_RESULTS) - killed_at
    figures["new res-51 leader after the kill"] = hub.leader_since(f"{STREAM_RESULTS}.res-51") - killed_at
    # Each city's roll-up once in the hub's results (JetStream dropped the outbox's retries by message
    # id), all of it handed to the province's durable and acknowledged.
    poll("both roll-ups in the hub's FA_RESULTS", lambda: len(hub.holds("hub", STREAM_RESULTS)) == 2)
    assert hub.holds("hub", STREAM_RESULTS) == {"res.51.5101": 1, "res.51.5107": 1}
    poll("res-51 drained", lambda: hub.drained("hub", STREAM_RESULTS, "res-51"))
    figures["roll-ups in the hub's FA_RESULTS and res-51 drained after the kill"] = time.monotonic() - killed
    # Taken because it verified: each city's signed roll-up, with its approval of the county's bundle
    # and the county's of the township's; nothing refused anywhere.
    taken = client.get("51", "/api/v1/audit", action="accept.results", limit=1000)["entries"]
    latest = {e["detail"]["node"]: e["detail"] for e in reversed(taken)}
    print("the province took the roll-ups via " + ", ".join(f"{c} {d.get('via', '?')}" for c, d in sorted(latest.items())))
    for city in ("5101", "5107"):
        assert latest[city]["approved"] == 1 and latest[city]["approved_below"] == 1, latest
    for s in fed.specs:
        assert not client.get(s.code, "/api/v1/audit", action="reject.results")["entries"], s.code
        assert client.get(s.code, "/api/v1/audit", limit=1)["intact"], s.code
    poll("every outbox empty", lambda: all(nothing_pending_or_given_up(client, s.code) for s in fed.specs))
    print("hub member SIGKILL → " + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items()))
