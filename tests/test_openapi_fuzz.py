"""Schemathesis against a real province gateway finds nothing (scripts/fuzz_gateway.py).

The script starts a 7-node federation with data, fuzzes the province's /schema/openapi.json with
the admin token and every Schemathesis check, and stops everything. Schemathesis runs from a venv
of its own (.venv-fuzz, installed from PyPI on first use; `.ci/run` installs it up front).

Anything the fuzzer finds fails the test, and so does a fuzz venv that cannot be installed, a
federation that does not come up, or a Schemathesis run that did not test every operation, each
with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fuzz_gateway.py"
TIMEOUT = 900  # the run takes about a minute on 2 cores


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)  # the script stops its nodes on SIGTERM
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"{SCRIPT.name} did not finish in {TIMEOUT}s:\n{out[-20000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def test_schemathesis_finds_nothing_against_the_province_gateway(tmp_path: Path) -> None:
    r = run_script("--report-dir", str(tmp_path))
    if r.returncode == 2:
        pytest.fail(f"the fuzz venv could not be set up:\n{r.stdout[-20000:]}")
    summary_file = tmp_path / "summary.json"
    if r.returncode not in (0, 1) or not summary_file.exists():
        pytest.fail(f"{SCRIPT.name} could not fuzz the gateway (exit {r.returncode}):\n{r.stdout[-20000:]}")
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    ops = summary["operations"]
    if summary["harness_error"] or not ops["total"] or ops["tested"] != ops["total"]:
        pytest.fail(f"the fuzz run is not complete: {summary['harness_error'] or ops}\n{r.stdout[-20000:]}")
    report = r.stdout[r.stdout.find("==== fuzz summary"):]
    assert not summary["exited_nodes"], report
    assert not summary["findings"], report
    assert r.returncode == 0, report
