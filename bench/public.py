"""Benchmark: the public results site under load, beside a one-route Litestar baseline.

    .venv/bin/python bench/public.py [--seconds 10] [--connections 64] [--units 183]

Builds one node with a realistic published result: 四川省's node (the demo keys) issues a framework
(the demo's sample indicators) for ``--units`` synthetic counties (183: the county-level divisions of
四川), holds a value of every leaf indicator for each, publicises the results (公示, public) and
finalises them, so the site shows a signed final publication of 183 units with its proof. Its
gateway is served by uvicorn in this process (as a node serves it: one process, one event loop), and a
one-route Litestar app ("hello") by uvicorn in another process, as in bench/gateway.py. wrk (Debian
package ``wrk``) drives each at ``--connections`` connections for ``--seconds`` seconds: hello,
``/public`` (the index), the class ranking page, a unit's page, ``/public/search``, the proof, the CSV,
the SDMX-CSV and the JSON downloads and ``/api/v1/public/publications``. It prints per target req/s,
p50 and p99 latency, the ratio to the baseline and the answers by status; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import uvicorn
import yaml

from aggregator.framework import Unit
from bench.gateway import HELLO_APP, STATUS_LUA, free_port, wrk
from gateway.app import create_app
from nodes.accounts import Principal
from nodes.config import load_config
from nodes.framework_file import load_framework
from nodes.launcher import DATA, Federation, load_topology
from nodes.runtime import NodeServices, build_services, gateway_services
from nodes.store import Store
from sync import keys
from sync import publication as pubs
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, digest, sign

CYCLE, PERIOD, CLASS = "2026", "2026-Y", "县（市、区）"
OFFICE = Principal(login="bench", name="bench", roles=frozenset({"office"}), via="password")
DAY = 86400


def counties(n: int) -> tuple[Unit, ...]:
    """``n`` synthetic county codes under 四川's 21 cities (5101xx … 5134xx), in code order."""
    cities = [f"51{c:02d}" for c in (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 32, 33, 34)]
    out = []
    for i in range(n):
        city, k = cities[i % len(cities)], i // len(cities) + 1
        out.append(Unit(f"{city}{k:02d}", f"示例县{i + 1:03d}"))
    return tuple(sorted(out, key=lambda u: u.code))


def framework_file(out: Path) -> Path:
    """The demo's sample indicators, without the per-city targets, for a class of counties."""
    doc = yaml.safe_load((DATA / "sample-framework.yaml").read_text(encoding="utf-8"))

    def trim(indicators: list[dict[str, Any]]) -> None:
        for ind in indicators:
            ind.pop("targets", None)
            trim(ind.get("children", []))

    trim(doc["indicators"])
    doc["class"] = CLASS
    out.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


async def published_node(workdir: Path, n: int) -> tuple[NodeServices, pubs.Published]:
    fed = Federation(workdir / "fed", load_topology())
    fed.prepare()
    cfg = load_config(fed.node_dir("51") / "node.yaml")
    node = build_services(cfg, await Store.open(f"sqlite+aiosqlite:///{workdir / 'province.db'}"))
    now = int(time.time())
    fw = load_framework(framework_file(workdir / "framework.yaml"), units=counties(n), now=now)
    payload = encode_framework(fw)
    envelope = sign(PAYLOAD_FRAMEWORK, payload, keys.load_private(fed.node_dir("51") / "key.pem"))
    fw_digest = digest(payload)
    rng = random.Random(51)
    async with node.context.store.tx() as tx:
        await tx.frameworks.put(digest=fw_digest, issuer=fw.issuer, cycle=fw.cycle, unit_class=fw.unit_class,
                                version=fw.version, role="issued", envelope=envelope, cascade=b"", now=now,
                                authored=True)
        for u in fw.units:
            values = {}
            for leaf in fw.leaves():
                if leaf.method not in ("completion_ratio", "target_ratio") and leaf.target is None:
                    continue
                base = leaf.target if leaf.target is not None else Decimal(100)
                values[leaf.code] = str((base * Decimal(rng.randint(60, 120)) / 100).quantize(Decimal("0.01")))
            await tx.results.put(node=u.code, cycle=CYCLE, period=PERIOD, framework_digest=fw_digest, values=values,
                                 source="entered", bundle_id="", now=now)
    async with node.context.store.tx() as tx:
        await node.publication.publicise(tx, OFFICE, cycle=CYCLE, period=PERIOD, unit_class=CLASS,
                                         opens_at=now - 60, closes_at=now + 7 * DAY, public=True)
    later = now + 8 * DAY
    node.context.clock = lambda: later  # type: ignore[method-assign]
    async with node.context.store.tx() as tx:
        final = await node.publication.finalise(tx, OFFICE, cycle=CYCLE, period=PERIOD, unit_class=CLASS)
    doc = pubs.read(final.envelope)
    pubs.verify_proof(final.proof, cfg.root)  # what is served is a proof that holds
    return node, doc


async def run(args: argparse.Namespace, tmp: Path, lua: Path, hello_port: int) -> dict[str, Any]:
    t0 = time.monotonic()
    node, doc = await published_node(tmp, args.units)
    setup = time.monotonic() - t0
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway_services(node)), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    unit = sorted(doc.units, key=lambda f: f.rank)[len(doc.units) // 2].unit
    d = doc.digest
    targets = {"hello": f"http://127.0.0.1:{hello_port}/", "index": f"{base}/public",
               "class": f"{base}/public/{CYCLE}/{quote(CLASS, safe='')}?period={PERIOD}",
               "unit": f"{base}/public/units/{unit}", "search": f"{base}/public/search?q={quote('示例县01')}",
               "proof": f"{base}/public/proofs/{d}.pb", "csv": f"{base}/public/data/{d}.csv",
               "sdmx": f"{base}/public/data/{d}.sdmx.csv", "json": f"{base}/public/data/{d}.json",
               "api_list": f"{base}/api/v1/public/publications"}
    sizes = {}
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for name, url in targets.items():
                r = await http.get(url)
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: {url} answered {r.status_code}: {r.text[:300]}")
                sizes[name] = len(r.content)
        results = {}
        for name, url in targets.items():
            results[name] = await asyncio.to_thread(wrk, url, args.seconds, args.connections, lua)
    finally:
        server.should_exit = True
        await task
        await node.context.store.close()
    return {"setup_s": setup, "units": len(doc.units), "sizes": sizes, "results": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--units", type=int, default=183)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("需要 wrk (wrk is needed): apt-get install wrk", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"seconds": args.seconds, "connections": args.connections, "units": args.units}
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "status.lua"
        lua.write_text(STATUS_LUA, encoding="utf-8")
        (Path(tmp) / "hello_app.py").write_text(HELLO_APP, encoding="utf-8")
        hello_port = free_port()
        hello = subprocess.Popen([sys.executable, "-m", "uvicorn", "hello_app:app", "--host", "127.0.0.1", "--port",
                                  str(hello_port), "--log-level", "warning", "--no-access-log"], cwd=tmp)
        try:
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{hello_port}/", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            got = asyncio.run(run(args, Path(tmp), lua, hello_port))
        finally:
            hello.terminate()
            hello.wait(timeout=10)
    results = got["results"]
    base = results["hello"]["rps"]
    print(f"one final publication of {got['units']} units (set up in {got['setup_s']:.1f} s); "
          f"proof {got['sizes']['proof']:,} B, CSV {got['sizes']['csv']:,} B, JSON {got['sizes']['json']:,} B")
    print(f"{'target':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'÷ hello':>8}  answers")
    for name, r in results.items():
        print(f"{name:<10} {r['rps']:>9,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['rps'] / base:>8.2f}  "
              f"{r['statuses']}")
        out[f"{name}_rps"] = r["rps"]
        out[f"{name}_p50_ms"] = r["p50_ms"]
        out[f"{name}_p99_ms"] = r["p99_ms"]
        out[f"{name}_ratio"] = r["rps"] / base
    out["setup_s"] = got["setup_s"]
    out.update({f"{k}_bytes": v for k, v in got["sizes"].items()})
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
