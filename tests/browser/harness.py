"""The browser tests' harness (tests/browser/conftest.py has the fixtures): where chromium is, the
gateway under test in a thread of its own, and the guard that records what a page must not do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
INSTALL = "apt-get install -y chromium fonts-noto-cjk"
VIEWPORT = {"width": 1366, "height": 768}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str | None:
    env = os.environ.get("FEDAPPRAISAL_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if chromium_path() is None:
        return f"no chromium at FEDAPPRAISAL_CHROMIUM or /usr/bin/chromium (install: sudo {INSTALL})"
    return None


# -- the gateway under test ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in this event loop; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class InThread:
    """Something served by an event loop of its own thread while the test drives a browser in its own
    (Playwright's sync API holds the test thread's loop): ``_serve`` sets ``_ready`` once it is up and
    returns when ``_stop`` is set; a failure is raised in the test's thread."""

    what = "the gateway under test"
    start_seconds = 120

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=self.what, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        if not self._ready.wait(self.start_seconds):
            raise AssertionError(f"{self.what} did not start within {self.start_seconds} s")
        if self._error is not None:
            raise AssertionError(f"{self.what} did not start: {self._error!r}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise AssertionError(f"{self.what} failed: {self._error!r}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._start())
        except BaseException as e:  # reported in the test's thread, never as an unhandled thread exception
            self._error = e
        finally:
            self._ready.set()

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self._serve()

    async def _serve(self) -> None:
        raise NotImplementedError


class Gateway(InThread):
    """成都市's gateway (uvicorn) and 锦江区's gRPC service, in an event loop of their own thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self.token = ""  # the city's bearer token: its dashboard shows computed results (results.interim)
        super().__init__()

    async def _serve(self) -> None:
        from tests.support.drill import CYCLE, PERIOD, make_rig

        assert self._stop is not None
        rig = await make_rig(self.workdir)
        try:
            await rig.publish(1)
            await rig.report({"510104017": "1200", "510104018": "800"})
            # 青羊区 runs no node here: its figure stands in the city's store as if it had reported.
            city = rig.city
            async with city.context.store.tx() as tx:
                digest = max(await tx.frameworks.list(role="issued"), key=lambda f: f.version).digest
                await tx.results.put(node="510105", cycle=CYCLE, period=PERIOD, framework_digest=digest,
                                     values={"A1": "500", "B3": "85"}, source="reported", bundle_id="qingyang",
                                     now=1)
                await city.scoring.recompute(tx, CYCLE, PERIOD, digest, cause="browser test")
            await rig.serve_county()
            async with rig.gateway() as client:
                self.url = str(client.base_url).rstrip("/")
                self.token = city.context.cfg.admin_token
                self._ready.set()
                await self._stop.wait()
        finally:
            await rig.close()


# -- a small real federation -------------------------------------------------------------------------

# 四川省 → 成都市 → 锦江区 → its two townships: every level the journeys cross, five node processes.
JOURNEY_NODES = ("51", "5101", "510104", "510104017", "510104018")


def subset_topology(codes: tuple[str, ...]) -> list[Any]:
    """The demo topology cut down to ``codes`` (parents listed before children, as load_topology gives)."""
    from nodes.launcher import NodeSpec, load_topology

    specs = [NodeSpec(s.code, s.name, s.level, s.parent) for s in load_topology() if s.code in codes]
    by = {s.code: s for s in specs}
    for s in specs:
        if s.parent is not None:
            by[s.parent].children.append(s.code)
    return specs


def sample_framework_for(units: set[str], out: Path) -> Path:
    """The demo's sample framework with its per-unit targets cut to ``units`` (the province's cities
    here): a target for a unit the province does not appraise is refused as a mistake."""
    import yaml

    from nodes.launcher import DATA

    doc = yaml.safe_load((DATA / "sample-framework.yaml").read_text(encoding="utf-8"))

    def trim(indicators: list[dict[str, Any]]) -> None:
        for ind in indicators:
            if "targets" in ind:
                ind["targets"] = {u: t for u, t in ind["targets"].items() if u in units}
            trim(ind.get("children", []))

    trim(doc["indicators"])
    out.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


class Federation(InThread):
    """``nodes.demo.Demo`` on a subset of the demo topology: real node processes on SQLite, a real
    nats-server, the sample framework cascaded, the demo's accounts at every node and the townships'
    values entered, approved and rolled up to the province. Its asyncio loop runs in a thread of its
    own (Playwright's sync API holds the test thread's); ``call(coro_fn)`` runs a coroutine there."""

    def __init__(self, workdir: Path, codes: tuple[str, ...] = JOURNEY_NODES) -> None:
        self.workdir = workdir
        self.codes = codes
        self.demo: Any = None
        self.timings: dict[str, float] = {}
        self._pythonpath = os.environ.get("PYTHONPATH")
        super().__init__()

    def url(self, code: str) -> str:
        return str(self.demo.fed.by_code[code].url)

    def password(self, login: str) -> str:
        return str(self.demo.passwords[login])

    def call(self, fn: Any, timeout: float = 60) -> Any:
        """``fn()`` (a coroutine function) awaited on the federation's loop; its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    what = "the federation under test"
    start_seconds = 240

    def __enter__(self) -> Federation:
        # The node processes import this checkout (not whatever the venv was installed from), from
        # their own working directories: an absolute PYTHONPATH.
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [self._pythonpath])])
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            if self._pythonpath is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = self._pythonpath

    async def _serve(self) -> None:
        import time

        from rich.console import Console

        from nodes.demo import Demo

        assert self._stop is not None
        specs = subset_topology(self.codes)
        cities = {s.code for s in specs if s.level == "city"}
        framework = sample_framework_for(cities, self.workdir / "sample-framework.yaml")
        self.demo = Demo(self.workdir / "fed", Console(quiet=True), specs=specs)
        try:
            for step, run in (("start", self.demo.start), ("accounts", self.demo.accounts),
                              ("cascade", lambda: self.demo.cascade(framework)),
                              ("report", self.demo.report)):
                t0 = time.monotonic()
                await run()
                self.timings[step] = time.monotonic() - t0
            self._ready.set()
            await self._stop.wait()
        finally:
            await self.demo.close()


@dataclass
class Guard:
    """What a page did that fails its test: requests elsewhere, console errors, uncaught exceptions."""

    origin: str
    also: tuple[str, ...] = ()
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    # Pages answered with an error status (a 403 page, a form shown again with 422): Chromium logs each
    # as a console error, which says nothing about the page; the tests check those statuses themselves.
    refused_pages: set[tuple[str, int]] = field(default_factory=set)

    def failures(self) -> list[str]:
        return ([f"request to another origin (no CDN allowed), aborted: {u}" for u in self.foreign]
                + [f"console error: {e}" for e in self.errors if not self._refused_page(e)])

    def _refused_page(self, error: str) -> bool:
        return any(error.startswith(f"Failed to load resource: the server responded with a status of {status} ")
                   and error.endswith(f"({url})") for url, status in self.refused_pages)

    def clear(self) -> None:
        self.foreign.clear()
        self.errors.clear()
        self.refused_pages.clear()


def guarded_context(browser: Any, origin: str, **options: Any) -> tuple[Any, Guard]:
    """A browser context at 1366×768 (zh-CN unless ``options`` say otherwise) whose every request to
    another origin than ``origin`` is aborted and recorded, and whose pages' console errors and uncaught
    exceptions are recorded (``Guard``). ``also=(origin, …)`` allows a few more origins (the gateways of
    a federation: a county's and the province's), still refusing everything else; ``base_url`` is
    ``origin``. What was requested is recorded as a path for ``origin`` and as a full URL otherwise."""
    also = tuple(options.pop("also", ()))
    context = browser.new_context(**{"viewport": VIEWPORT, "locale": "zh-CN", "base_url": origin, **options})
    guard = Guard(origin, also)

    def route(r: Any) -> None:
        url = r.request.url
        if url == guard.origin or url.startswith(guard.origin + "/"):
            guard.requested.append(url[len(guard.origin):])
            r.continue_()
        elif any(url == o or url.startswith(o + "/") for o in guard.also):
            guard.requested.append(url)
            r.continue_()
        else:
            guard.foreign.append(url)
            r.abort("blockedbyclient")

    def watch(page: Any) -> None:
        page.on("console", lambda m: guard.errors.append(f"{m.text} ({m.location.get('url', '')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: guard.errors.append(f"uncaught: {e}"))
        page.on("response", lambda r: guard.refused_pages.add((r.url, r.status))
                if r.status >= 400 and r.request.resource_type == "document" and r.frame == page.main_frame
                else None)

    context.route("**/*", route)
    context.on("page", watch)
    return context, guard
