"""The benchmarks still run against the code as it is (they are programs, not timed tests: a tiny
run here only proves they work and end with their JSON line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ingest_bench_runs_and_ends_with_json(pg_admin_dsn: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "ingest.py"), "--bundles", "40", "--pg", pg_admin_dsn],
                          capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["bundles"] == 40 and figures["sqlite_values_per_s"] > 0 and figures["postgres_values_per_s"] > 0


@pytest.mark.slow
def test_public_bench_runs_and_ends_with_json() -> None:
    import shutil

    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "public.py"), "--seconds", "1", "--connections", "4",
                           "--units", "21"], capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["units"] == 21 and figures["unit_rps"] > 0 and figures["proof_bytes"] > 0
