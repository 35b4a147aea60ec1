"""Benchmark: the read path of a node's gateway under load, beside a one-route Litestar baseline.

    .venv/bin/python bench/gateway.py [--seconds 10] [--connections 64]

Starts the demo federation (15 nodes, SQLite, embedded nats-server; the same steps as `./dev demo`),
and in the same run a one-route Litestar app ("hello") served the same way (uvicorn, one process).
wrk (Debian package ``wrk``) drives each endpoint of the province's gateway at ``--connections``
connections for ``--seconds`` seconds: hello (the baseline), ``/api/v1/rankings``, ``/dashboard``,
``/api/v1/drilldown`` (depth 3, which fans out over gRPC to every level) and ``/api/v1/values``, all with
the office's bearer token (computed results are not public: issue 11). It prints per endpoint req/s, p50
and p99 latency and the ratio to the baseline; for the drill-down also the fraction of partial answers (a
sample of answers fetched before and after the load, and every non-200 answer during it). The last line
is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from rich.console import Console

from nodes.demo import CYCLE, PERIOD, Demo
from nodes.launcher import DATA

HELLO_APP = textwrap.dedent("""
    from litestar import Litestar, get

    @get("/", sync_to_thread=False)
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app = Litestar([hello])
""")

# wrk's Lua hook: count answers by status, so a partial or refused answer is never taken for speed.
STATUS_LUA = textwrap.dedent("""
    local threads = {}
    function setup(thread) table.insert(threads, thread) end
    function init(args) statuses = {} end
    function response(status, headers, body)
      statuses[status] = (statuses[status] or 0) + 1
    end
    function done(summary, latency, requests)
      local counts = {}
      for _, t in ipairs(threads) do
        for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
      end
      local parts = {}
      for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
      io.write(string.format('STATUS {%s}\\n', table.concat(parts, ',')))
      io.write(string.format('LAT %d %d %d\\n', latency:percentile(50), latency:percentile(99), summary.requests))
    end
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, seconds: int, connections: int, lua: Path, token: str = "") -> dict[str, Any]:
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []  # computed results need results.interim
    done = subprocess.run(["wrk", f"-t{min(2, os.cpu_count() or 1)}", f"-c{connections}", f"-d{seconds}s",
                           "--latency", *auth, "-s", str(lua), url], capture_output=True, text=True, check=True,
                          timeout=seconds + 60)
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50_us, p99_us, requests = (int(x) for x in re.search(r"LAT (\d+) (\d+) (\d+)", out).groups())  # type: ignore[union-attr]
    statuses = {int(k): v for k, v in json.loads(re.search(r"STATUS (\{.*\})", out).group(1)).items()}  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": p50_us / 1000, "p99_ms": p99_us / 1000, "requests": requests, "statuses": statuses}


async def demo_up(workdir: Path) -> Demo:
    d = Demo(workdir, Console(file=io.StringIO(), soft_wrap=True))  # the demo's own progress is not the point here
    await d.start()
    await d.cascade(DATA / "sample-framework.yaml")
    await d.report()
    await d.check()
    if not d.summary.ok:
        seen = []
        for s in d.fed.specs:  # say what was refused, so that a failed run is worth something
            r = await d.http.get(s.url + "/api/v1/audit", params={"limit": 1000},
                                 headers={"Authorization": f"Bearer {d.fed.tokens[s.code]}"})
            seen += [f"{s.code} {e['action']}: {json.dumps(e['detail'], ensure_ascii=False)[:300]}"
                     for e in r.json().get("entries", []) if e["action"].startswith("reject")]
        await d.close()
        raise RuntimeError(f"the demo did not come up cleanly: {d.summary.problems}\n" + "\n".join(seen))
    return d


def partial_fraction(url: str, token: str, samples: int = 20) -> float:
    with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {token}"}) as http:
        partial = 0
        for _ in range(samples):
            r = http.get(url)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code != 200 or not body.get("complete", False) or body.get("partial"):
                partial += 1
        return partial / samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("需要 wrk (wrk is needed): apt-get install wrk", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"seconds": args.seconds, "connections": args.connections}
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "status.lua"
        lua.write_text(STATUS_LUA, encoding="utf-8")
        (Path(tmp) / "hello_app.py").write_text(HELLO_APP, encoding="utf-8")
        port = free_port()
        hello = subprocess.Popen([sys.executable, "-m", "uvicorn", "hello_app:app", "--host", "127.0.0.1", "--port",
                                  str(port), "--log-level", "warning", "--no-access-log"], cwd=tmp)
        loop = asyncio.new_event_loop()
        d: Demo | None = None
        try:
            d = loop.run_until_complete(demo_up(Path(tmp) / "demo"))
            prov = d.fed.province.url
            token = d.fed.tokens[d.fed.province.code]
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            q = f"cycle={CYCLE}&period={PERIOD}"
            drill = f"{prov}/api/v1/drilldown?{q}&indicator=A1&depth=3"
            targets = {"hello": f"http://127.0.0.1:{port}/", "rankings": f"{prov}/api/v1/rankings?{q}",
                       "dashboard": f"{prov}/dashboard", "drilldown": drill, "values": f"{prov}/api/v1/values?cycle={CYCLE}"}
            before = partial_fraction(drill, token)
            results = {name: wrk(url, args.seconds, args.connections, lua, "" if name == "hello" else token)
                       for name, url in targets.items()}
            after = partial_fraction(drill, token)
        finally:
            if d is not None:
                loop.run_until_complete(d.close())
            loop.close()
            hello.terminate()
            hello.wait(timeout=10)
    base = results["hello"]["rps"]
    print(f"{'endpoint':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'÷ hello':>8}  answers")
    for name, r in results.items():
        print(f"{name:<10} {r['rps']:>9,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['rps'] / base:>8.2f}  "
              f"{r['statuses']}")
        out[f"{name}_rps"] = r["rps"]
        out[f"{name}_p50_ms"] = r["p50_ms"]
        out[f"{name}_p99_ms"] = r["p99_ms"]
    d_stat = results["drilldown"]["statuses"]
    non_ok = sum(v for k, v in d_stat.items() if k != 200) / max(1, sum(d_stat.values()))
    out["drilldown_partial_fraction"] = max(non_ok, before, after)
    print(f"drill-down partial answers: {out['drilldown_partial_fraction']:.3f} "
          f"(sampled before {before:.2f}, after {after:.2f}; non-200 during load {non_ok:.3f})")
    print("targets: rankings and drill-down ≥ 1,500 req/s, p99 ≤ 50 ms, partial fraction 0")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
