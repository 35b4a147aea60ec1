"""Benchmark: appraise the whole 四川 hierarchy, then one changed value; compare with SQL GROUP BY.

    .venv/bin/python bench/scoring.py [--divisions PATH] [--pg postgresql://…] [--seed N]

3,316 units (province, 21 cities, 183 counties, 3,111 townships) × 120 leaf indicators × 12
monthly periods of generated values at the townships. Full recompute = roll-ups up to the
province + every unit's leaf points, totals, ranks and grades within its sibling group, for
every period. Single update = one township value changed, only its path recomputed; the result
is then checked against a full recompute from scratch, and a sample group against the Decimal
engine. The SQL baseline is the same three-level roll-up as GROUP BY queries in PostgreSQL over
the same integers. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.fast import MICRO, SCALE, FastHierarchy, Leaves
from aggregator.framework import Framework, Indicator, Unit
from aggregator.scoring import score_units

N_LEAVES, N_MEAN, PERIODS = 120, 20, 12


def load_sichuan(path: Path) -> tuple[list[str], list[int], list[str]]:
    nodes = json.loads(path.read_text(encoding="utf-8"))
    sc = [n for n in nodes if n["code"].startswith("51")]
    order = {"province": 0, "city": 1, "county": 2, "township": 3}
    sc.sort(key=lambda n: (order[n["level"]], n["code"]))
    index = {n["code"]: i for i, n in enumerate(sc)}
    parents = [index[n["parent"]] if n["parent"] else -1 for n in sc]
    return [n["code"] for n in sc], parents, [n["level"] for n in sc]


def build(codes: list[str], parents: list[int], levels: list[str], seed: int) -> FastHierarchy:
    rng = np.random.default_rng(seed)
    weights = np.array([800_000] * 80 + [900_000] * 40, dtype=np.int64)  # 80 × 0.8 + 40 × 0.9 = 100
    higher = np.array([True] * (N_LEAVES - N_MEAN) + [False] * N_MEAN)
    mean_rule = ~higher
    leaves = Leaves(weights, higher, mean_rule)
    n = len(codes)
    towns = [i for i in range(n) if levels[i] == "township"]
    targets = np.zeros((n, N_LEAVES), dtype=np.int64)
    t_sum = rng.integers(1_000, 100_000, size=(len(towns), N_LEAVES - N_MEAN)) * 100  # two decimals
    t_mean = rng.integers(20, 60, size=(len(towns), N_MEAN)) * SCALE
    targets[towns] = np.concatenate([t_sum, t_mean], axis=1)
    # A parent's own target is what its units' targets compose to (sum, or mean rounded half up).
    kids: list[list[int]] = [[] for _ in range(n)]
    for i, p in enumerate(parents):
        if p >= 0:
            kids[p].append(i)
    for level in ("county", "city"):
        for i in (j for j in range(n) if levels[j] == level):
            block = targets[kids[i]]
            mean = (2 * block.sum(axis=0) + len(block)) // (2 * len(block))
            targets[i] = np.where(mean_rule, mean, block.sum(axis=0))
    factor = rng.uniform(0.7, 1.3, size=(len(towns), N_LEAVES, PERIODS))
    values = np.round(targets[towns][:, :, None] * factor / 100).astype(np.int64) * 100
    return FastHierarchy(codes, parents, leaves, targets, values)


def decimal_check(h: FastHierarchy, parent: int, period: int) -> bool:
    """One sibling group scored by the Decimal engine: the same totals, ranks and grades."""
    kids = h.children[parent]
    inds = [Indicator(code="G", name="G", weight=Decimal(100))]
    for j in range(N_LEAVES):
        inds.append(Indicator(
            code=f"L{j:03d}", name=f"L{j:03d}", weight=Decimal(int(h.leaves.weights_micro[j])) / MICRO,
            parent_code="G", leaf=True, direction="higher" if h.leaves.higher[j] else "lower",
            unit_targets={h.codes[k]: Decimal(int(h.targets[k, j])) / SCALE for k in kids}))
    fw = Framework("x", "x", "2026", "c", 1, "t", 0, 1, tuple(Unit(h.codes[k], h.codes[k]) for k in kids), tuple(inds))
    values = {h.codes[k]: {f"L{j:03d}": Decimal(int(h.values[k, j, period])) / SCALE for j in range(N_LEAVES)}
              for k in kids}
    got = {s.unit: s for s in score_units(fw, values, datetime(2026, 12, 31, tzinfo=UTC))}
    return all(got[h.codes[k]].score == Decimal(int(h.totals[k, period])) / 100
               and got[h.codes[k]].rank == h.ranks[k, period] and got[h.codes[k]].grade == h.grades[k][period]
               for k in kids)


async def sql_baseline(h: FastHierarchy, dsn: str) -> tuple[float, float, bool]:
    import asyncpg

    admin = await asyncpg.connect(dsn)
    name = f"fa_bench_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = dsn.split("?", maxsplit=1)[0].rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{base}/{name}")
    try:
        await conn.execute("CREATE TABLE tv (county int, city int, leaf int2, period int2, value bigint)")
        towns = h.levels[-1]
        county = h.parent[towns]
        city = h.parent[county]
        t0 = time.perf_counter()
        li, pi = np.meshgrid(np.arange(N_LEAVES), np.arange(PERIODS), indexing="ij")
        for chunk in np.array_split(np.arange(len(towns)), 128):
            records = [(int(county[i]), int(city[i]), int(leaf), int(per), int(v))
                       for i in chunk for leaf, per, v in zip(li.ravel(), pi.ravel(), h.values[towns[i]].ravel(),
                                                              strict=True)]
            await conn.copy_records_to_table("tv", records=records)
        await conn.execute("ANALYZE tv")
        load_s = time.perf_counter() - t0
        rule = f"CASE WHEN leaf < {N_LEAVES - N_MEAN} THEN sum(value) ELSE round(avg(value))::bigint END"
        t0 = time.perf_counter()
        await conn.execute(f"CREATE TEMP TABLE c AS SELECT county, city, leaf, period, {rule} AS value "
                           "FROM tv GROUP BY county, city, leaf, period")
        await conn.execute(f"CREATE TEMP TABLE ci AS SELECT city, leaf, period, {rule} AS value "
                           "FROM c GROUP BY city, leaf, period")
        await conn.execute(f"CREATE TEMP TABLE p AS SELECT leaf, period, {rule} AS value FROM ci GROUP BY leaf, period")
        sql_s = time.perf_counter() - t0
        rows = await conn.fetch("SELECT leaf, period, value FROM p")
        same = all(int(h.values[0, r["leaf"], r["period"]]) == r["value"] for r in rows) and len(rows) == N_LEAVES * PERIODS
        return sql_s, load_s, same
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--divisions", type=Path, default=ROOT.parent / "shared" / "data" / "china-divisions.json")
    ap.add_argument("--pg", default=os.environ.get("FEDAPPRAISAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    codes, parents, levels = load_sichuan(args.divisions)
    h = build(codes, parents, levels, args.seed)
    n_values = len(h.levels[-1]) * N_LEAVES * PERIODS
    print(f"units {len(codes)} (1/{len(h.levels[1])}/{len(h.levels[2])}/{len(h.levels[3])}), "
          f"{N_LEAVES} leaves × {PERIODS} periods, {n_values:,} township values")

    full, rollups = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        h.roll_up()
        t1 = time.perf_counter()
        h.score_all()
        t2 = time.perf_counter()
        rollups.append(t1 - t0)
        full.append(t2 - t0)
    full_s, rollup_s = statistics.median(full), statistics.median(rollups)
    print(f"full recompute (roll-ups, points, totals, ranks, grades): {full_s:.3f} s  (roll-ups alone {rollup_s:.3f} s)")

    town = int(h.levels[-1][1234])
    before = int(h.values[town, 7, 5])
    t0 = time.perf_counter()
    touched = h.update(town, 7, 5, before * 3)
    single_s = time.perf_counter() - t0
    print(f"single value changed at {codes[town]}: {single_s * 1000:.2f} ms, {len(touched)} units re-scored on its path")

    fresh = FastHierarchy(codes, parents, h.leaves, h.targets, h.values[h.levels[-1]].copy())
    fresh.full_recompute()
    consistent = (np.array_equal(fresh.values, h.values) and np.array_equal(fresh.totals, h.totals)
                  and np.array_equal(fresh.ranks, h.ranks) and fresh.grades == h.grades)
    county = int(h.parent[town])
    exact = decimal_check(h, county, 5) and decimal_check(h, int(h.parent[county]), 5)
    print(f"incremental result equals a full recompute: {consistent}; equals the Decimal engine: {exact}")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the engine's, before the SQL baseline
    try:
        sql_s, load_s, same = asyncio.run(sql_baseline(h, args.pg))
        print(f"PostgreSQL GROUP BY roll-up (3 levels, same integers): {sql_s:.3f} s (COPY load {load_s:.1f} s, "
              f"province values equal: {same})")
        print(f"ratio SQL roll-up / our roll-up: {sql_s / rollup_s:.1f}×; SQL roll-up / our full recompute: "
              f"{sql_s / full_s:.2f}×")
    except (OSError, ImportError) as exc:
        sql_s, same = float("nan"), False
        print(f"PostgreSQL baseline skipped: {exc}")
    print(f"peak RSS of the engine (two full hierarchies in memory): {peak:.0f} MB")
    print(json.dumps({
        "units": len(codes), "indicators": N_LEAVES, "periods": PERIODS, "values": n_values,
        "full_recompute_s": round(full_s, 4), "rollup_s": round(rollup_s, 4), "single_update_s": round(single_s, 5),
        "peak_rss_mb": round(peak, 1), "sql_baseline_s": round(sql_s, 4),
        "sql_over_rollup": round(sql_s / rollup_s, 2), "consistent": consistent, "decimal_engine_equal": exact,
        "sql_equal": same,
    }))
    return 0 if consistent and exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
