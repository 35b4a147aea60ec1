"""Benchmark: 绩效报告 for the 183 counties of 四川 in one batch, one PDF per unit.

    .venv/bin/python bench/reports.py [--units 183] [--groups 6] [--leaves 30] [--workers 2]

One node (its real services on SQLite) derives, from the province's signed cascade, a framework of
``--leaves`` value indicators in ``--groups`` groups (一级指标) for ``--units`` unit nodes; every unit
signs and sends its bundle of values (a spread, so ranks, grades, weak indicators and warnings differ), the node takes them as it
does from NATS, publicises the results (公示, signed, with its proof), and then:

1. **batch**: ``FeedbackService.generate`` — every unit's report model read from the publication,
   rendered to PDF by WeasyPrint in ``--workers`` processes, stored and audited: total seconds and
   ms per report. Target: the 183 counties within 60 s on 2 cores.
2. side by side: the same batch in one process (``--workers 1``), the report models alone (the
   store reads and nodes/feedback.py), and the HTML alone (the template: the ceiling of any PDF path).

The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes import feedback_render
from nodes.accounts import Principal
from nodes.config import load_config
from nodes.launcher import Federation, NodeSpec
from nodes.runtime import build_services
from nodes.store import Store
from sync.identity import Me
from sync.results_sender import send_bundle
from tests.support.nodes import city_cascade
from tests.support.receivers import Memory

OFFICE = Principal(login="wang", name="王", roles=frozenset({"office"}), via="password")
TARGET_S = 60.0


def framework_yaml(groups: int, leaves: int, args_units: int) -> str:
    """The province's framework; 成都市 and then the county node derive theirs (targets split per unit)."""
    per = leaves // groups
    gw = [round(100 / groups, 4)] * groups
    gw[-1] = round(100 - sum(gw[:-1]), 4)
    lines = ['issuer: "51"', "issuer_name: 四川省", 'cycle: "2026"', "class: 市州", "indicators:"]
    names = ["经济发展", "民生保障", "生态环境", "社会治理", "改革创新", "党的建设", "营商环境", "乡村振兴"]
    n = 0
    for g in range(groups):
        lines += [f"  - code: {chr(65 + g)}", f"    name: {names[g % len(names)]}", f"    weight: {gw[g]}", "    children:"]
        lw = [round(gw[g] / per, 6)] * per
        lw[-1] = round(gw[g] - sum(lw[:-1]), 6)
        for i in range(per):
            n += 1
            lower = ", direction: lower" if n % 7 == 0 else ""
            lines.append(f"      - {{code: {chr(65 + g)}{i + 1}, name: 指标{n}, weight: {lw[i]}, unit: 亿元, "
                         f"target: {200 * args_units}{lower}}}")
    return "\n".join(lines) + "\n"


def cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes: what the batch cost, whatever else
    the machine was running (the wall-clock figures are only as good as the machine was idle)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def me_of(fed: Federation, code: str) -> Me:
    cfg = load_config(fed.node_dir(code) / "node.yaml")
    return Me(code=cfg.code, name=cfg.name, level=cfg.level, path=cfg.node_path, key=cfg.key, chain=cfg.chain,
              root=cfg.root, parent=cfg.parent.code if cfg.parent else None, children={})


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=183)
    ap.add_argument("--groups", type=int, default=6)
    ap.add_argument("--leaves", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the batch in one process (the baseline)")
    args = ap.parse_args()
    feedback_render.font_files()  # the CJK font must be installed (./dev setup)
    work = Path(tempfile.mkdtemp(prefix="bench-reports-"))
    t0 = time.perf_counter()
    # A node's children have the next level's codes, and a province has at most 99 cities: the 183
    # units are the children of one county-level node (9-digit codes), named as 四川's counties would be.
    specs = [NodeSpec("51", "四川省", "province", None), NodeSpec("5101", "成都市", "city", "51"),
             NodeSpec("510104", "四川省（模拟）", "county", "5101")]
    specs[0].children.append("5101")
    specs[1].children.append("510104")
    for i in range(args.units):
        specs.append(NodeSpec(f"510104{i + 1:03d}", f"第{i + 1}县", "township", "510104"))
        specs[2].children.append(specs[-1].code)
    fed = Federation(work / "fed", specs)
    fed.prepare()
    cfg = load_config(fed.node_dir("510104") / "node.yaml")
    store = await Store.open(f"sqlite+aiosqlite:///{work / 'province.db'}")
    node = build_services(cfg, store)
    message, _ = city_cascade(fed, work, framework_yaml(args.groups, args.leaves, args.units))
    await node.cascade.take(None, message)  # the county derives its own framework for its 183 units
    async with store.read() as r:
        fw_row = (await r.frameworks.list(role="issued"))[-1]
    leaves = [f"{chr(65 + g)}{i + 1}" for g in range(args.groups) for i in range(args.leaves // args.groups)]
    now = int(time.time())
    for n, s in enumerate(specs[3:]):
        values = {k: Decimal(60 + (n * 13 + j * 7) % 55) for j, k in enumerate(leaves)}
        mem = Memory()
        await send_bundle(mem, me_of(fed, s.code), cycle="2026", period="2026-Y", framework_digest=fw_row.digest,
                          values=values, child_scores=(), now=now)
        accepted, reason = await node.results.submit(mem.queued[-1], s.code)
        assert accepted, reason
    async with store.tx() as tx:
        pub = await node.publication.publicise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=fw_row.unit_class,
                                               opens_at=now - 60, closes_at=now + 7 * 86400, public=False)
    setup_s = time.perf_counter() - t0

    # one report on demand (the page's path: the publication read and decoded for it), then HTML alone
    sample = specs[3:][:20]
    t0 = time.perf_counter()
    async with store.read() as r:
        reports = [await node.feedback.report(r, "2026", "2026-Y", s.code) for s in sample]
    model_s = (time.perf_counter() - t0) / len(sample) * args.units
    t0 = time.perf_counter()
    html_bytes = sum(len(str(feedback_render.html(rep, standalone=True))) for rep in reports) / len(sample) * args.units
    html_s = (time.perf_counter() - t0) / len(sample) * args.units

    # the batch, as the office's button and `appraise reports generate` run it
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), cpu_seconds()
    made = await node.feedback.generate(OFFICE, "2026", "2026-Y", workers=args.workers)
    batch_s, batch_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    assert len(made) == args.units
    assert all(g.publication == pub.digest for g in made)
    single_s = single_cpu = float("nan")
    if args.baseline:
        t0, c0 = time.perf_counter(), cpu_seconds()
        single = await node.feedback.generate(OFFICE, "2026", "2026-Y", workers=1)
        single_s, single_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert len(single) == args.units
    load = max(load, os.getloadavg()[0])
    pdf_kib = sum(g.size for g in made) / len(made) / 1024
    await store.close()

    machine = f"{platform.machine()} · {os.cpu_count()} CPU · {platform.python_version()}"
    per = batch_s / args.units * 1000
    print(f"machine: {machine}; {args.units} units × {len(leaves)} leaves in {args.groups} groups; setup {setup_s:.1f} s")
    print(f"{'what':<44}{'seconds':>10}{'ms/report':>12}")
    print(f"{'batch, ' + str(args.workers) + ' processes (target ≤ ' + str(TARGET_S) + ' s)':<44}{batch_s:>10.2f}{per:>12.1f}")
    print(f"{'batch, 1 process (baseline)':<44}{single_s:>10.2f}{single_s / args.units * 1000:>12.1f}"
          f"   speed-up ×{single_s / batch_s:.2f}")
    print(f"{'models, one report on demand (×units)':<44}{model_s:>10.2f}{model_s / args.units * 1000:>12.1f}")
    print(f"{'HTML only (the ceiling, ×units)':<44}{html_s:>10.2f}{html_s / args.units * 1000:>12.1f}"
          f"   PDF/HTML ×{batch_s / max(html_s, 1e-9):.0f}")
    print(f"CPU: batch {batch_cpu:.1f} s ({batch_cpu / args.units * 1000:.0f} ms/report), one process {single_cpu:.1f} s; "
          f"load average during the run {load:.1f} on {os.cpu_count()} CPUs")
    print(f"PDF size {pdf_kib:.0f} KiB per report; HTML {html_bytes / args.units / 1024:.0f} KiB")
    print(json.dumps({"units": args.units, "leaves": len(leaves), "workers": args.workers,
                      "batch_s": round(batch_s, 2), "per_report_ms": round(per, 1),
                      "single_process_s": round(single_s, 2) if args.baseline else None,
                      "speedup": round(single_s / batch_s, 2) if args.baseline else None,
                      "model_ms": round(model_s / args.units * 1000, 2), "html_ms": round(html_s / args.units * 1000, 2),
                      "pdf_kib": round(pdf_kib, 1), "batch_cpu_s": round(batch_cpu, 1),
                      "cpu_ms_per_report": round(batch_cpu / args.units * 1000),
                      "single_cpu_s": round(single_cpu, 1) if args.baseline else None,
                      "load_average": round(load, 1), "target_s": TARGET_S, "within_target": batch_s <= TARGET_S,
                      "machine": machine}))


if __name__ == "__main__":
    asyncio.run(main())
