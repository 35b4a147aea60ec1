"""The browser tests' harness (tests/browser/conftest.py has the fixtures): where chromium is, the
gateway under test in a thread of its own, and the guard that records what a page must not do."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
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


class Gateway:
    """成都市's gateway (uvicorn) and 锦江区's gRPC service, in an event loop of their own thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-under-test", daemon=True)

    def __enter__(self) -> Gateway:
        self._thread.start()
        if not self._ready.wait(120):
            raise AssertionError("the gateway under test did not start within 120 s")
        if self._error is not None:
            raise AssertionError(f"the gateway under test did not start: {self._error!r}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise AssertionError(f"the gateway under test failed: {self._error!r}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported in the test's thread, never as an unhandled thread exception
            self._error = e
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from tests.support.drill import CYCLE, PERIOD, make_rig

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
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
                self._ready.set()
                await self._stop.wait()
        finally:
            await rig.close()


@dataclass
class Guard:
    """What a page did that fails its test: requests elsewhere, console errors, uncaught exceptions."""

    origin: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        return ([f"request to another origin (no CDN allowed), aborted: {u}" for u in self.foreign]
                + [f"console error: {e}" for e in self.errors])

    def clear(self) -> None:
        self.foreign.clear()
        self.errors.clear()




def guarded_context(browser: Any, origin: str, **options: Any) -> tuple[Any, Guard]:
    """A browser context at 1366×768 (zh-CN unless ``options`` say otherwise) whose every request to
    another origin than ``origin`` is aborted and recorded, and whose pages' console errors and uncaught
    exceptions are recorded (``Guard``)."""
    context = browser.new_context(**{"viewport": VIEWPORT, "locale": "zh-CN", "base_url": origin, **options})
    guard = Guard(origin)

    def route(r: Any) -> None:
        url = r.request.url
        if url == guard.origin or url.startswith(guard.origin + "/"):
            guard.requested.append(url[len(guard.origin):])
            r.continue_()
        else:
            guard.foreign.append(url)
            r.abort("blockedbyclient")

    def watch(page: Any) -> None:
        page.on("console", lambda m: guard.errors.append(f"{m.text} ({m.location.get('url', '')})")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: guard.errors.append(f"uncaught: {e}"))

    context.route("**/*", route)
    context.on("page", watch)
    return context, guard
