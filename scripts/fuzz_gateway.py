"""Fuzz a real node's HTTP gateway with Schemathesis, driven by the gateway's own OpenAPI schema.

Starts a small real federation (7 node processes, SQLite stores, embedded nats-server) the way the
demo does, publishes the sample framework and reports values so the province holds data, then runs
``st run`` against the province's ``/schema/openapi.json`` with its admin token and every
Schemathesis check. Exits non-zero on any failure and prints one block per failing operation.

Schemathesis lives in a venv of its own (``.venv-fuzz``, or $FEDAPPRAISAL_FUZZ_VENV), installed
from PyPI on first use: it talks HTTP to the node and is never imported by it, and it would
otherwise add requests, werkzeug, jsonschema-rs, graphql-core … and a pytest plugin to the
project's environment.

    python scripts/fuzz_gateway.py                 # set up the fuzz venv if needed, start, fuzz, stop
    python scripts/fuzz_gateway.py --setup-only    # only create/refresh the fuzz venv (CI's install step)
    python scripts/fuzz_gateway.py --max-examples 50 --seed 7 --report-dir /tmp/fuzz
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

SCHEMATHESIS = "schemathesis==4.32.5"
# Province → 2 cities → 1 county each → 1 township each: every level, both cities the sample
# framework's targets name, and little CPU on a 2-core machine.
NODES = ("51", "5101", "510104", "510104017", "5107", "510703", "510703001")


def fuzz_venv() -> Path:
    return Path(os.environ.get("FEDAPPRAISAL_FUZZ_VENV") or ROOT / ".venv-fuzz")


class SetupError(RuntimeError):
    pass


def ensure_fuzz_venv(venv: Path | None = None, *, quiet: bool = False) -> Path:
    """The ``st`` executable of a venv holding exactly :data:`SCHEMATHESIS`; created or refreshed as needed."""
    venv = venv or fuzz_venv()
    st = venv / "bin" / "st"
    stamp = venv / ".fedappraisal-fuzz-installed"
    if st.exists() and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == SCHEMATHESIS:
        return st

    def run(*cmd: str | Path) -> None:
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SetupError(f"fuzz venv setup failed: {' '.join(map(str, cmd))} exited {r.returncode}\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")

    if not quiet:
        print(f"setting up {venv} with {SCHEMATHESIS} …", flush=True)
    if not (venv / "bin" / "python").exists():
        # The base interpreter, not this venv's: the fuzz venv shares nothing with the project's.
        base = getattr(sys, "_base_executable", sys.executable)
        run(base, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SCHEMATHESIS)
    if not st.exists():
        raise SetupError(f"{SCHEMATHESIS} installed but {st} is missing")
    stamp.write_text(SCHEMATHESIS + "\n", encoding="utf-8")
    return st


def small_topology() -> list[Any]:
    from nodes.launcher import NodeSpec, load_topology

    specs = [NodeSpec(s.code, s.name, s.level, s.parent) for s in load_topology() if s.code in NODES]
    by = {s.code: s for s in specs}
    for s in specs:
        if s.parent is not None:
            by[s.parent].children.append(s.code)
    return specs


def admin_token(node_dir: Path) -> str:
    """The admin token as the node itself reads it: ``admin_token_file`` of its node.yaml."""
    cfg = yaml.safe_load((node_dir / "node.yaml").read_text(encoding="utf-8"))
    return (node_dir / str(cfg["admin_token_file"])).read_text(encoding="utf-8").strip()


def st_command(st: Path, schema_url: str, token: str, args: argparse.Namespace, out: Path) -> list[str]:
    # No crash cache: each run is independent of the last one (and of any schemathesis.toml around).
    config = out / "schemathesis.toml"
    # 422 is the gateway's answer to a request that fits the schema but that this node cannot take
    # (a unit or indicator it does not have, a period of another cycle, a stale decision): documented
    # per operation. 400 is kept for requests that do not fit the schema, so this check still proves
    # that every constraint the server enforces on a request's form is in the schema.
    config.write_text("[cache]\nenabled = false\n\n[checks.positive_data_acceptance]\n"
                      'expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429]\n', encoding="utf-8")
    cmd = [
        str(st), "--config-file", str(config), "run", schema_url,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all",
        "--phases", args.phases,
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--workers", str(args.workers),
        "--request-timeout", "10",
        "--generation-database", "none",
        "--continue-on-failure",  # every failing case, not just the first of each operation
        "--report", "json,junit,ndjson",
        "--report-json-path", str(out / "report.json"),
        "--report-junit-path", str(out / "junit.xml"),
        "--report-ndjson-path", str(out / "events.ndjson"),
        "--no-color",
    ]
    if args.max_failures:
        cmd += ["--max-failures", str(args.max_failures)]
    return cmd


def _body(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    if "$base64" in content:
        return base64.b64decode(content["$base64"]).decode("utf-8", "replace")
    return str(content.get("string", ""))


def _request(req: dict[str, Any]) -> str:
    url = urlsplit(str(req.get("uri", "")))
    line = f"{req.get('method', '')} {unquote(url.path)}{'?' + unquote(url.query) if url.query else ''}"
    body = req.get("body") or {}
    if body:
        text = base64.b64decode(body["$base64"]).decode("utf-8", "replace") if "$base64" in body else str(body.get("string", ""))
        line += f"  body: {text[:300]}"
    return line


@dataclass
class Finding:
    """One operation × check × failure code × response status, with how often it was seen and examples."""

    operation: str
    check: str
    code: str
    title: str
    status: int | None
    message: str = ""
    count: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (how generated, request, response)


def findings(ndjson: Path) -> list[Finding]:
    """Every failed check of every test case in Schemathesis's NDJSON event stream, grouped."""
    found: dict[tuple[str, str, str, int | None], Finding] = {}
    with ndjson.open(encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            scenario = event.get("ScenarioFinished")
            if not scenario:
                continue
            rec = scenario.get("recorder") or {}
            for case_id, checks in (rec.get("checks") or {}).items():
                interaction = (rec.get("interactions") or {}).get(case_id) or {}
                response = interaction.get("response") or {}
                case = ((rec.get("cases") or {}).get(case_id) or {}).get("value") or {}
                meta = case.get("meta") or {}
                phase = meta.get("phase") or {}
                how = "/".join(x for x in (phase.get("name", ""), (meta.get("generation") or {}).get("mode", ""),
                                           (phase.get("data") or {}).get("description", "")) if x)
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    status = response.get("status_code")
                    key = (rec.get("label", "?"), check.get("name", "?"), failure.get("code", ""), status)
                    f = found.get(key)
                    if f is None:
                        f = found[key] = Finding(key[0], key[1], key[2], failure.get("title", ""), status,
                                                 failure.get("message", ""))
                    f.count += 1
                    example = (how, _request(interaction.get("request") or {}), _body(response)[:300])
                    if len(f.examples) < 3 and example[1:] not in {e[1:] for e in f.examples}:
                        f.examples.append(example)
    return sorted(found.values(), key=lambda f: (f.operation.split(" ", 1)[-1], f.operation, f.code, f.status or 0))


def summary_lines(found: list[Finding]) -> list[str]:
    lines: list[str] = []
    last = ""
    for f in found:
        if f.operation != last:
            lines.append(f"{f.operation}:")
            last = f.operation
        lines.append(f"  - {f.code} {f.title} [{f.check}] -> HTTP {f.status} ({f.count} test cases)")
        for m in f.message.splitlines():
            lines.append(f"      {m}")
        for how, req, resp in f.examples:
            lines.append(f"      e.g. ({how}) {req}")
            lines.append(f"           -> {f.status} {resp}")
    return lines


@dataclass
class Run:
    st_exit: int | None = None
    exited_nodes: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    harness_error: str = ""


async def fuzz(st: Path, args: argparse.Namespace, workdir: Path, out: Path) -> Run:
    """Start the federation, run Schemathesis against the province, stop everything."""
    from rich.console import Console

    from nodes.demo import Demo
    from nodes.launcher import DATA

    run = Run()
    # SIGTERM (a CI timeout, a test harness) stops everything as Ctrl-C does: the nodes run in
    # sessions of their own and would otherwise outlive this process.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    t0 = time.monotonic()
    demo = Demo(workdir, Console(quiet=True), specs=small_topology())
    proc: asyncio.subprocess.Process | None = None
    try:
        try:
            await demo.start()
            await demo.accounts()
            await demo.cascade(DATA / "sample-framework.yaml")
            await demo.report()
        except Exception as exc:
            run.harness_error = f"the federation did not come up with data: {exc}"
            return run
        prov = demo.fed.province
        token = admin_token(demo.fed.node_dir(prov.code))
        schema_url = f"{prov.url}/schema/openapi.json"
        print(f"federation ready in {time.monotonic() - t0:.1f}s; fuzzing {prov.name} ({prov.code}) {schema_url}",
              flush=True)
        cmd = st_command(st, schema_url, token, args, out)
        print("$ " + " ".join("Authorization: Bearer ***" if c.startswith("Authorization:") else c for c in cmd),
              flush=True)
        t1 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the project's code stays out of st
        proc = await asyncio.create_subprocess_exec(*cmd, cwd=str(out), env=dict(env, NO_COLOR="1"))
        run.st_exit = await proc.wait()
        print(f"schemathesis exited {run.st_exit} after {time.monotonic() - t1:.1f}s", flush=True)
        run.exited_nodes = demo.fed.exited()
        return run
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await proc.wait()
        if args.report_dir:
            for spec in demo.fed.specs:
                log = demo.fed.node_dir(spec.code) / "node.log"
                if log.exists():
                    (out / f"node-{spec.code}.log").write_bytes(log.read_bytes())
        await demo.close()


def judge(run: Run, out: Path) -> int:
    """Read Schemathesis's reports into ``run``; print the summary; the exit code (see main)."""
    ndjson, report = out / "events.ndjson", out / "report.json"
    if not run.harness_error:
        if not report.exists() or not ndjson.exists():
            run.harness_error = f"schemathesis (exit {run.st_exit}) wrote no report in {out}"
        else:
            run.report = json.loads(report.read_text(encoding="utf-8"))
            run.findings = findings(ndjson)
            ops = run.report.get("operations", {})
            if run.report.get("errors"):
                run.harness_error = "schemathesis reported errors: " + json.dumps(run.report["errors"], ensure_ascii=False)[:2000]
            elif not ops.get("total") or ops.get("tested") != ops.get("total"):
                run.harness_error = f"not every operation was tested: {ops}"
            elif not run.report.get("complete"):
                run.harness_error = f"schemathesis stopped early: {run.report.get('stop_reason')}"
            elif run.st_exit not in (0, 1) or (run.st_exit == 1) != bool(run.findings):
                run.harness_error = f"schemathesis exited {run.st_exit} with {len(run.findings)} failing checks recorded"
    print("\n==== fuzz summary: failures per operation ====")
    print("\n".join(summary_lines(run.findings)) if run.findings else "no failures")
    for node, status in sorted(run.exited_nodes.items()):
        print(f"node {node} exited with {status} during the run")
    r = run.report
    if r:
        ops, cases = r.get("operations", {}), r.get("test_cases", {})
        kinds = ", ".join(f"{f['code']} {f['title']}: {f['count']}" for f in r.get("failures", []))
        print(f"schemathesis {r.get('schemathesis_version')}: {ops.get('tested')}/{ops.get('total')} operations tested, "
              f"{cases.get('generated')} test cases, {cases.get('unique_failures')} unique failures"
              f"{f' ({kinds})' if kinds else ''}, seed {r.get('seed')}")
    if run.harness_error:
        print(f"HARNESS ERROR: {run.harness_error}")
        code = 3
    else:
        code = 1 if run.findings or run.exited_nodes else 0
    failing = sorted({f.operation for f in run.findings})
    print(f"{len(run.findings)} distinct failure(s) in {len(failing)} operation(s)")
    (out / "summary.json").write_text(json.dumps({
        "exit": code, "harness_error": run.harness_error, "schemathesis_exit": run.st_exit,
        "exited_nodes": run.exited_nodes, "operations": r.get("operations"), "test_cases": r.get("test_cases"),
        "findings": [asdict(f) for f in run.findings],
    }, ensure_ascii=False, indent=1), encoding="utf-8")
    return code


def main(argv: list[str] | None = None) -> int:
    """0: nothing found; 1: failures found; 2: the fuzz venv could not be set up; 3: the harness itself failed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setup-only", action="store_true", help="only create/refresh the fuzz venv")
    p.add_argument("--max-examples", type=int, default=int(os.environ.get("FEDAPPRAISAL_FUZZ_EXAMPLES", "50")),
                   help="generated test cases per operation in the fuzzing phase; the coverage phase adds its "
                        "own deterministic boundary cases (default 50, or $FEDAPPRAISAL_FUZZ_EXAMPLES)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("FEDAPPRAISAL_FUZZ_SEED", "20260")),
                   help="Schemathesis/Hypothesis seed; fixed by default so CI runs are reproducible")
    p.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-failures", type=int, default=0, help="stop after this many failures (0: never)")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="keep Schemathesis's reports, summary.json and the node logs here instead of a temp dir")
    args = p.parse_args(argv)

    try:
        st = ensure_fuzz_venv()
    except SetupError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.setup_only:
        print(f"fuzz venv ready: {st}")
        return 0

    # The nodes import the same code as this script, whatever checkout the venv was installed from.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fedappraisal-fuzz-") as tmp:
        out = (args.report_dir or Path(tmp) / "report").resolve()
        out.mkdir(parents=True, exist_ok=True)
        for name in ("report.json", "events.ndjson", "junit.xml", "summary.json"):
            (out / name).unlink(missing_ok=True)
        print("starting a 7-node federation, publishing the sample framework, reporting values …", flush=True)
        try:
            run = asyncio.run(fuzz(st, args, Path(tmp) / "fed", out))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted; every process stopped", file=sys.stderr)
            return 3
        code = judge(run, out)
        print(f"exit {code}; total {time.monotonic() - t0:.1f}s")
        if args.report_dir:
            print(f"reports, summary.json and node logs: {out}")
        return code


if __name__ == "__main__":
    sys.exit(main())
