"""Benchmark: the web application's pages under load, and an Excel upload of 3,000 cells.

    .venv/bin/python bench/pages.py [--units 60] [--leaves 50] [--requests 400] [--connections 16]

A province node (its real services on SQLite, served by uvicorn on a free port, as `appraise node run`
does) appraises ``--units`` cities with a framework of ``--leaves`` value indicators, all provided by
统计局: ``units × leaves`` cells (3,000 by default: a city's townships × indicators).

1. **Excel**: the provider's template is filled with openpyxl and uploaded through the service path the
   page uses (``intake_excel.read`` + ``IntakeService.save``, submit): time to validate and take. Side
   by side: openpyxl alone loading the same file (the ceiling of any reader), and the same 3,000 cells
   through the JSON path (no Excel). Target: ≤ 2 s.
2. **Pages**: signed in as the office, each page is fetched ``--requests`` times by ``--connections``
   concurrent clients (httpx, keep-alive); p50 and p99 per page, beside /health (the gateway's floor:
   the same server, routing and middleware, no page).

The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
import uvicorn
from openpyxl import load_workbook

from gateway.app import create_app
from nodes import intake_excel
from nodes.accounts import SYSTEM, Principal
from nodes.config import load_config
from nodes.intake import CellInput
from nodes.launcher import Federation, NodeSpec
from nodes.runtime import build_services, gateway_services
from nodes.store import Store

PAGES = ("/health", "/login", "/home", "/dashboard", "/tasks", "/users", "/entry?cycle=2026&period=2026-Y",
         "/review?cycle=2026")


def framework_yaml(leaves: int) -> str:
    weight = 100 / leaves
    lines = ['issuer: "51"', "issuer_name: 四川省", 'cycle: "2026"', "class: 市州", "version: 1", "valid_days: 400",
             "indicators:", "  - code: A", "    name: 全部指标", "    weight: 100", "    children:"]
    w = [round(weight, 6)] * leaves
    w[-1] = round(100 - sum(w[:-1]), 6)
    for i in range(leaves):
        lines.append(f"      - {{code: A{i + 1}, name: 指标{i + 1}, weight: {w[i]}, unit: 亿元, target: 100, "
                     "provider: 统计局, rollup: sum}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=60)
    ap.add_argument("--leaves", type=int, default=50)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    specs = [NodeSpec("51", "四川省", "province", None)]
    for i in range(args.units):
        specs.append(NodeSpec(f"51{i + 1:02d}", f"第{i + 1}市", "city", "51"))
        specs[0].children.append(specs[-1].code)
    fed = Federation(work / "fed", specs)
    fed.prepare()
    cfg = load_config(fed.node_dir("51") / "node.yaml")
    store = await Store.open(f"sqlite+aiosqlite:///{work / 'province.db'}")
    node = build_services(cfg, store)
    src = work / "framework.yaml"
    src.write_text(framework_yaml(args.leaves), encoding="utf-8")
    await node.cascade.publish_file(src)
    await node.intake.generate("2026", SYSTEM)
    tjj = Principal(login="tjj", name="统计局", roles=frozenset({"provider"}), org="统计局", via="password")
    grids = await node.intake.grids("2026", "2026-Y", tjj)
    cells = sum(len(g.cells) for g in grids)

    # --- Excel: fill the template, then validate and take it
    template = intake_excel.template(grids, node_name=cfg.name, provider="统计局", generated_at=int(time.time()))
    wb = load_workbook(io.BytesIO(template))
    ws = wb["填报"]
    for row in ws.iter_rows(min_row=4):
        for c in row[2:]:
            if c.value is None and not c.protection.locked:
                c.value = str(90 + (c.row * 7 + c.column) % 20)
    buf = io.BytesIO()
    wb.save(buf)
    filled = buf.getvalue()
    t0 = time.perf_counter()
    load_workbook(io.BytesIO(filled), read_only=True).close()
    openpyxl_s = time.perf_counter() - t0
    # the same cells through the JSON path first (checked, not taken): what the Excel path adds to it
    json_inputs = [CellInput(u, k, str(90 + i % 20)) for g in grids
                   for i, (u, k) in enumerate(sorted(g.cells))]
    t0 = time.perf_counter()
    await node.intake.save("2026", "2026-Y", json_inputs, tjj, submit=True, dry_run=True)
    json_check_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs = intake_excel.read(filled, grids, filename="bench.xlsx")
    read_s = time.perf_counter() - t0
    saved = await node.intake.save("2026", "2026-Y", inputs, tjj, submit=True, source="excel:bench.xlsx")
    excel_s = time.perf_counter() - t0
    assert saved.submitted == cells, (saved, cells)

    # --- pages under load
    await node.accounts.add("office", "绩效办", ["office"], SYSTEM, password="office-password-1")  # noqa: S106  (the bench's own account)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway_services(node)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    # The node's store belongs to this loop: the server runs in it too, as in a node process.
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            async with httpx.AsyncClient() as c:
                await c.get(base + "/health")
            break
        except httpx.HTTPError:
            await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=base) as login:
        page = await login.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', page.text)
        assert token
        r = await login.post("/login", data={"_csrf": token.group(1), "login": "office",
                                             "password": "office-password-1"})
        assert r.status_code == 303, r.text
        cookies = dict(login.cookies)
    results: dict[str, dict[str, float]] = {}
    for path in PAGES:
        times: list[float] = []
        clients = [httpx.AsyncClient(base_url=base, cookies=cookies, timeout=60) for _ in range(args.connections)]
        per = max(1, args.requests // args.connections)

        async def worker(c: httpx.AsyncClient, path: str = path, times: list[float] = times, per: int = per) -> None:
            for _ in range(per):
                t = time.perf_counter()
                r = await c.get(path)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])

        await clients[0].get(path)  # warm
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        wall = time.perf_counter() - t0
        for c in clients:
            await c.aclose()
        results[path] = {"p50_ms": statistics.median(times) * 1000, "p99_ms": pct(times, 0.99) * 1000,
                         "rps": len(times) / wall}
    server.should_exit = True
    await task
    await store.close()

    print(f"Excel upload of {cells} cells ({args.units} units × {args.leaves} indicators):")
    print(f"  validate and take (read + check + save, submit): {excel_s:.2f} s  (target ≤ 2 s)")
    print(f"    of which reading the file: {read_s:.2f} s; openpyxl alone loading it (ceiling): {openpyxl_s:.2f} s "
          f"(ratio {read_s / openpyxl_s:.1f}×)")
    print(f"  the same cells checked through the JSON path (no Excel): {json_check_s:.2f} s")
    print(f"Pages, {args.connections} connections, {args.requests} requests each (signed in as the office):")
    floor = results["/health"]["p50_ms"]
    for path, r in results.items():
        print(f"  {path:36} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  {r['rps']:7.0f} req/s  "
              f"(p50 {r['p50_ms'] / floor:5.1f}× /health)")
    print(json.dumps({"cells": cells, "excel_s": round(excel_s, 3), "excel_read_s": round(read_s, 3),
                      "openpyxl_load_s": round(openpyxl_s, 3), "json_check_s": round(json_check_s, 3),
                      "excel_ok": excel_s <= 2.0,
                      "pages": {p: {k: round(v, 1) for k, v in r.items()} for p, r in results.items()}},
                     ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
