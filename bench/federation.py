"""Benchmark: a whole province's federation on node hosts, over a real nats-server, on this machine.

    .venv/bin/python bench/federation.py [--nodes 15 146 1000 3316] [--baseline 15] [--nats hierarchy] [--dir DIR]

For each size it builds that many nodes of 四川's real hierarchy (the division data shipped in
nodes/data/divisions, nodes/divisions.py ``topology``; 15 is the demo topology), issues every key,
certificate and TLS certificate, starts one nats-server (every node a user in an account of its own)
and the nodes: the province alone in its own process, and one node host per city carrying the city,
its counties and their townships (nodes/host.py). Then it measures:

* start-up: every process started → every node serving (its host answering /health);
* cascade: the province publishes the demo's framework → every township holds its verified
  framework (each level verified, decomposed and signed for the level below);
* roll-up: every township enters its values through its office's API (signed, sent up; ``entry_s``,
  16 requests in flight) → the province holds the roll-up (``rollup_s`` from the last entry's answer,
  ``entry_rollup_s`` from the first request), equal to the townships' values composed by each indicator's rule
  (the check the demo makes), every level recomputing what it received from its children;
* peak RSS of all processes together (sampled every 0.5 s) and per node;
* the CPU seconds each phase cost the node processes and the nats-servers (``cascade_cpu_s``,
  ``entry_cpu_s``, ``rollup_cpu_s``): what a phase needs, whatever else the machine was running.

``--nats hierarchy`` puts the province's hub and one leaf nats-server per city (each city its own
JetStream domain, nodes/natsconf.py ``plan_hierarchy``) in place of the one server, so that no single
server's JetStream API carries every node's consumers. The baseline (one process per node) always
runs on one server.

Beside it, ``--baseline N`` runs the same N-node federation with one process per node (what every
deployment did before node hosts) and prints the per-node memory and the times side by side with the
hosted run of the same size. The last line is JSON: ``{"runs": [...], "nodes", "cascade_s", "rollup_s",
"rss_mb", "ok"}`` (the top-level figures are those of the largest hosted run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import psutil

from aggregator.framework import compose
from aggregator.numbers import round_value
from nodes.demo import CYCLE, PERIOD, framework_for, sample_value
from nodes.launcher import DATA, Federation, NodeSpec, hosts_by_city, load_topology, loopback_client, specs_of

FRAMEWORK = DATA / "sample-framework.yaml"
CONCURRENCY = 16  # the benchmark's own requests in flight: it measures the federation, not itself


def specs_for(nodes: int) -> list[NodeSpec]:
    """``nodes`` of 四川's hierarchy: the demo's 15, or the real tree cut to about that many nodes."""
    if nodes == 15:
        return load_topology()
    from nodes.divisions import cut

    return specs_of(cut(full_tree("51"), nodes))


def full_tree(province: str) -> list[dict[str, Any]]:
    from nodes.divisions import topology

    return topology(province)


class RssSampler(threading.Thread):
    """Peak total RSS of the federation's processes (nats-server excluded), sampled every 0.5 s."""

    def __init__(self, fed: Federation) -> None:
        super().__init__(daemon=True)
        self.fed = fed
        self.peak_mb = 0.0
        self.per_process_mb: dict[str, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            total = 0.0
            for name, p in list(self.fed.procs.items()):
                try:
                    mb = psutil.Process(p.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                total += mb
                self.per_process_mb[name] = max(mb, self.per_process_mb.get(name, 0.0))
            self.peak_mb = max(self.peak_mb, total)

    def stop(self) -> None:
        self._done.set()
        self.join()


def cpu_seconds(fed: Federation) -> dict[str, float]:
    """CPU time (user + system) used so far by the federation's processes and by its nats-servers:
    what a phase cost, whatever else the machine was doing while it ran."""
    nats = getattr(fed.nats, "procs", None) or [getattr(fed.nats, "proc", None)]
    out = {"nodes": 0.0, "nats": 0.0}
    for kind, procs in (("nodes", list(fed.procs.values())), ("nats", [p for p in nats if p is not None])):
        for p in procs:
            try:
                t = psutil.Process(p.pid).cpu_times()
            except psutil.Error:
                continue
            out[kind] += t.user + t.system + t.children_user + t.children_system
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 2) for k in before}


async def _gather_limited(coros: list[Any], limit: int = CONCURRENCY) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with gate:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def run_once(workdir: Path, nodes: int, hosted: bool, hierarchy: bool = False) -> dict[str, Any]:
    specs = specs_for(nodes)
    fed = Federation(workdir, specs, hosts=hosts_by_city(specs) if hosted else None, nats_hierarchy=hierarchy)
    fed.heartbeat_seconds = 30
    by = fed.by_code
    townships = [s for s in specs if s.level == "township"]
    label = f"{len(specs)} nodes, {'node hosts' if hosted else 'one process per node'}"
    print(f"\n== {label}: {len(fed.hosts)} hosts, {sum(1 for s in specs if not s.hosted)} lone processes", flush=True)
    t = time.monotonic()
    await asyncio.to_thread(fed.prepare)
    prepare_s = time.monotonic() - t
    await asyncio.to_thread(fed.start_nats)
    sampler = RssSampler(fed)
    sampler.start()
    http = loopback_client(timeout=120)
    auth = {code: {"Authorization": f"Bearer {token}"} for code, token in fed.tokens.items()}
    result: dict[str, Any] = {"nodes": len(specs), "hosted": hosted, "hosts": len(fed.hosts), "ok": False}
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(fed.start)
        probes = {h.name: f"http://127.0.0.1:{h.http_port}/health" for h in fed.hosts.values()}
        probes.update({s.code: s.url + "/health" for s in specs if not s.hosted})
        pending = set(probes)
        while pending:
            if fed.exited():
                name = next(iter(fed.exited()))
                raise RuntimeError(f"{name} exited:\n{fed.log_tail(name, 30)}")
            for name in list(pending):
                try:
                    if (await http.get(probes[name], timeout=2)).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if time.monotonic() - t0 > 1800:
                raise TimeoutError(f"not up: {sorted(pending)[:5]}")
            await asyncio.sleep(0.5)
        result["startup_s"] = round(time.monotonic() - t0, 2)
        print(f"start-up: {result['startup_s']} s (keys and configurations before it: {prepare_s:.1f} s)", flush=True)

        prov = fed.province
        done: set[str] = set()

        async def held() -> dict[str, int]:
            """Frameworks held per node: from each host's /nodes (no node gateway is built to answer),
            and for a node alone, its status."""
            out: dict[str, int] = {}
            for h in fed.hosts.values():
                doc = (await http.get(f"http://127.0.0.1:{h.http_port}/nodes")).json()
                out.update({n["code"]: n["frameworks"] for n in doc["nodes"]})
            alone = [s for s in specs if not s.hosted and s.code not in done]
            for s, st in zip(alone, await _gather_limited([http.get(s.url + "/api/v1/status", headers=auth[s.code])
                                                            for s in alone]), strict=True):
                out[s.code] = len(st.json()["frameworks"])
            return out

        await held()  # once before: each host's first answer opens every node's store connection
        # Cascade: publish at the province; every node's frameworks are read from its host's /nodes.
        r = await http.post(prov.url + "/api/v1/admin/frameworks", headers=auth[prov.code],
                            json={"yaml": framework_for(FRAMEWORK, set(by)), "filename": FRAMEWORK.name})
        if r.status_code != 201:
            raise RuntimeError(f"publish: HTTP {r.status_code} {r.text[:500]}")
        t0, cpu0 = time.monotonic(), cpu_seconds(fed)
        while len(done) < len(specs):
            for code, n in (await held()).items():
                s = by[code]
                if n >= (1 if s.parent else 0) + (1 if s.children else 0):
                    done.add(code)
            if time.monotonic() - t0 > 600:
                raise TimeoutError(f"cascade: {len(specs) - len(done)} nodes without their framework")
            if len(done) < len(specs):
                await asyncio.sleep(0.25)
        result["cascade_s"] = round(time.monotonic() - t0, 2)
        result["cascade_cpu_s"] = cpu_delta(cpu0, cpu_seconds(fed))
        print(f"cascade: {result['cascade_s']} s (every township holds its verified framework; CPU "
              f"{result['cascade_cpu_s']['nodes']} s in the nodes, {result['cascade_cpu_s']['nats']} s in NATS)",
              flush=True)

        # Roll-up: every township's office enters its values; the province must hold their composition.
        leaves: dict[str, dict[str, Any]] = {}
        for county in {s.parent for s in townships}:
            town = next(s for s in townships if s.parent == county)
            fws = (await http.get(by[town.code].url + "/api/v1/frameworks", params={"cycle": CYCLE},
                                  headers=auth[town.code])).json()
            fw = next(f for f in fws if f["role"] == "received")
            leaves[county or ""] = {i["code"]: i for i in fw["indicators"] if i["leaf"]}
        entered: dict[str, dict[str, Decimal]] = {}
        for s in townships:
            ls = leaves[s.parent or ""]
            entered[s.code] = {k: sample_value(s.code, k, Decimal(i["target"]), i["unit"]) for k, i in ls.items()}
        prov_fw = (await http.get(prov.url + "/api/v1/frameworks", headers=auth[prov.code])).json()[0]
        rules = {i["code"]: i["rollup"] for i in prov_fw["indicators"] if i["leaf"]}

        def expected(code: str) -> dict[str, Decimal]:
            if by[code].level == "township":
                return entered[code]
            kids = [expected(k) for k in by[code].children]
            return {ind: round_value(compose(rule, [k[ind] for k in kids])) for ind, rule in rules.items()}

        want = expected(prov.code)
        t0, cpu0 = time.monotonic(), cpu_seconds(fed)

        async def enter(s: NodeSpec) -> None:
            r = await http.post(s.url + "/api/v1/admin/values", headers=auth[s.code], json={
                "cycle": CYCLE, "period": PERIOD, "values": {k: str(v) for k, v in entered[s.code].items()}})
            if r.status_code != 201:
                raise RuntimeError(f"{s.code}: HTTP {r.status_code} {r.text[:300]}")

        await _gather_limited([enter(s) for s in townships])
        entered_s = time.monotonic() - t0
        cpu1 = cpu_seconds(fed)
        got: dict[str, Decimal] = {}
        while True:
            vals = (await http.get(prov.url + "/api/v1/values", params={"cycle": CYCLE},
                                   headers=auth[prov.code])).json()
            got = {v["indicator"]: Decimal(v["value"]) for v in vals
                   if v["source"] == "rolled_up" and v["period"] == PERIOD}
            if got == want:
                break
            if time.monotonic() - t0 > 900:
                raise TimeoutError(f"roll-up: province holds {got}, expected {want}")
            await asyncio.sleep(0.25)
        result["entry_s"] = round(entered_s, 2)
        result["entry_rollup_s"] = round(time.monotonic() - t0, 2)
        result["rollup_s"] = round(result["entry_rollup_s"] - entered_s, 2)
        result["entry_cpu_s"] = cpu_delta(cpu0, cpu1)
        result["rollup_cpu_s"] = cpu_delta(cpu1, cpu_seconds(fed))
        print(f"roll-up: {result['rollup_s']} s after the last township's values were signed "
              f"({len(townships)} townships entered theirs through their offices' API in {entered_s:.1f} s, "
              f"{result['entry_rollup_s']} s from the first entry; the province's {len(want)} values equal "
              "their composition)", flush=True)
        st = (await http.get(prov.url + "/api/v1/status", headers=auth[prov.code])).json()
        result["province_rejected"] = st["counts"]["rejected"]
        result["ok"] = st["counts"]["rejected"] == 0
    finally:
        await http.aclose()
        sampler.stop()
        result["rss_mb"] = round(sampler.peak_mb, 1)
        result["rss_per_node_mb"] = round(sampler.peak_mb / len(specs), 2)
        procs = sampler.per_process_mb
        hosts = [mb for name, mb in procs.items() if name.startswith("host:")]
        if hosts:
            result["largest_host_mb"] = round(max(hosts), 1)
        await asyncio.to_thread(fed.stop_all)
    print(f"peak RSS: {result['rss_mb']} MB in all, {result['rss_per_node_mb']} MB per node", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[15, 146, 1000, 3316])
    parser.add_argument("--baseline", type=int, nargs="*", default=[15],
                        help="sizes also run with one process per node (the baseline)")
    parser.add_argument("--nats", choices=["single", "hierarchy"], default="single",
                        help="one nats-server, or the province hub and one leaf server per city (JetStream domains)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="fa-bench-fed-"))
    print(f"machine: {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB; work dir {base}")
    runs: list[dict[str, Any]] = []
    try:
        for n in args.nodes:
            if n in args.baseline:
                runs.append(asyncio.run(run_once(base / f"alone-{n}", n, hosted=False)))
            runs.append(asyncio.run(run_once(base / f"hosted-{n}", n, hosted=True, hierarchy=args.nats == "hierarchy")))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print("\nnodes  mode        start-up  cascade  (CPU s)  entry  roll-up  (CPU s)  RSS MB  MB/node  ok")
    for r in runs:
        mode = "hosted" if r["hosted"] else "alone"
        cpu = {k: round(sum(r[k].values()), 1) if k in r else "-" for k in ("cascade_cpu_s", "rollup_cpu_s")}
        print(f"{r['nodes']:>5}  {mode:<10}  {r.get('startup_s', '-'):>8}  {r.get('cascade_s', '-'):>7}  "
              f"{cpu['cascade_cpu_s']:>7}  {r.get('entry_s', '-'):>5}  {r.get('rollup_s', '-'):>7}  "
              f"{cpu['rollup_cpu_s']:>7}  {r['rss_mb']:>6}  {r['rss_per_node_mb']:>7}  {r['ok']}")
    for n in args.baseline:
        alone = next((r for r in runs if r["nodes"] >= n and not r["hosted"]), None)
        hosted = next((r for r in runs if r["nodes"] == (alone or {}).get("nodes") and r["hosted"]), None)
        if alone and hosted and hosted["rss_per_node_mb"]:
            print(f"memory per node at {alone['nodes']} nodes: alone {alone['rss_per_node_mb']} MB, hosted "
                  f"{hosted['rss_per_node_mb']} MB (×{alone['rss_per_node_mb'] / hosted['rss_per_node_mb']:.1f})")
    top = max((r for r in runs if r["hosted"]), key=lambda r: r["nodes"])
    print(json.dumps({"runs": runs, "nodes": top["nodes"], "cascade_s": top.get("cascade_s"),
                      "rollup_s": top.get("rollup_s"), "rss_mb": top["rss_mb"], "ok": all(r["ok"] for r in runs)}))


if __name__ == "__main__":
    main()
