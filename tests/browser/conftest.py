"""Browser tests: Debian's chromium driven by Playwright against a real gateway.

- The browser: ``/usr/bin/chromium`` (or FEDAPPRAISAL_CHROMIUM, or ``chromium`` on PATH) as Playwright's
  executable; Playwright's own browser download cannot work on the offices' intranet (nor here). Without
  it the browser tests are skipped, naming the reason, unless CI is set: then they fail with the command
  that installs it. One browser for all of them (``browser``: package scope, i.e. every browser test of
  the session; see the note there).
- The gateway under test: 成都市's real node services on SQLite, served by uvicorn on a free port in a
  thread of its own, with 锦江区 answering over real gRPC with mutual TLS (tests/support/drill.py): the
  province's signed framework, the county's signed bundle, the drill-down across the wire.
- ``page`` (and ``contexts(**options)`` for more): 1366×768, locale zh-CN. Every request to another
  origin than the gateway's is aborted and fails the test (no CDN: the offices have no internet), and
  so does every console error (a CSP violation, a missing file, an exception in a script).
- ``shoot(page, name)``: a full-page PNG at artefacts/screenshots/<test>/<nn>-<name>.png (gitignored).
- ``federation`` (module scope): a small real federation of node processes (harness.Federation: the
  demo on 四川省 → 成都市 → 锦江区 → two townships), for the journeys across it (test_journeys.py);
  ``federation_contexts(origin, *also)``: guarded contexts on its gateways, checked with the test.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    ARGS,
    ROOT,
    Federation,
    Gateway,
    Guard,
    chromium_path,
    guarded_context,
    in_ci,
    missing_browser,
)

SHOTS = ROOT / "artefacts" / "screenshots"
VENDOR_STAMP = ROOT / "gateway" / "static" / "vendor" / ".fetched.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing_browser()
    if reason is None or in_ci():
        return  # in CI the browser fixture fails, naming the install command
    skip = pytest.mark.skip(reason=f"浏览器测试已跳过 (browser tests skipped): {reason}")
    for item in items:
        if Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not VENDOR_STAMP.is_file():
        pytest.fail("gateway/static/vendor/ is empty: run ./dev setup (or python scripts/fetch_assets.py) first")
    with Gateway(tmp_path_factory.mktemp("browser-gateway")) as g:
        yield g


# -- the browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One chromium for every browser test. Package scope, not session: between its calls Playwright's
    sync API leaves its own event loop marked as running in this thread, so it must be stopped before
    the suite's asyncio tests run (all browser tests live in this package, so one launch serves them)."""
    reason = missing_browser()
    if reason is not None:
        if in_ci():
            pytest.fail(f"CI runs the browser tests, but: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


GUARDS = pytest.StashKey[list[Guard]]()


@contextmanager
def context_maker(browser: Any, request: pytest.FixtureRequest, url: str) -> Iterator[Callable[..., tuple[Any, Guard]]]:
    """``make(**options)``: a new guarded browser context on ``url`` (harness.guarded_context), checked
    with the test and closed after it. The one factory behind every contexts fixture."""
    guards = request.node.stash.setdefault(GUARDS, [])
    opened: list[Any] = []

    def make(**options: Any) -> tuple[Any, Guard]:
        context, guard = guarded_context(browser, url, **options)
        opened.append(context)
        guards.append(guard)
        return context, guard

    try:
        yield make
    finally:
        for context in opened:
            context.close()


@pytest.fixture
def contexts(browser: Any, gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[Any, Guard]]]:
    """``contexts(**options)``: a new guarded browser context on the gateway (harness.guarded_context),
    checked with the test and closed after it."""
    with context_maker(browser, request, gateway.url) as make:
        yield make


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    if not VENDOR_STAMP.is_file():
        pytest.fail("gateway/static/vendor/ is empty: run ./dev setup (or python scripts/fetch_assets.py) first")
    with Federation(tmp_path_factory.mktemp("browser-federation")) as f:
        yield f


@pytest.fixture
def federation_contexts(browser: Any, federation: Federation,
                        request: pytest.FixtureRequest) -> Iterator[Callable[..., tuple[Any, Guard]]]:
    """``federation_contexts(code, *also)``: a new guarded context whose base URL is node ``code``'s
    gateway, allowed to reach the gateways of the nodes ``also`` and nothing else."""
    with contextlib.ExitStack() as stack:
        def make(code: str, *also: str, **options: Any) -> tuple[Any, Guard]:
            on = stack.enter_context(context_maker(browser, request, federation.url(code)))
            return on(also=[federation.url(c) for c in also], **options)

        yield make


@pytest.fixture
def page_context(contexts: Callable[..., tuple[Any, Guard]]) -> tuple[Any, Guard]:
    return contexts()


@pytest.fixture
def guard(page_context: tuple[Any, Guard]) -> Guard:
    """What ``page`` did that fails the test (harness.Guard)."""
    return page_context[1]


@pytest.fixture
def page(page_context: tuple[Any, Guard]) -> Any:
    """A page at 1366×768, locale zh-CN, on the gateway under test (its base URL)."""
    return page_context[0].new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Every guard of the test is checked as part of the test itself, so a request elsewhere or a console
    error fails the test (not just its teardown)."""
    result = yield
    failures = [f for g in item.stash.get(GUARDS, []) for f in g.failures()]
    if failures:
        raise AssertionError("the page broke the offline/CSP rules:\n  " + "\n  ".join(failures))
    return result


def safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


@pytest.fixture
def shoot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``shoot(page, name)``: a full-page screenshot, numbered in the order taken, under the test's name."""
    folder = SHOTS / safe_name(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    count = 0

    def take(page: Any, name: str) -> Path:
        nonlocal count
        count += 1
        path = folder / f"{count:02d}-{safe_name(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        # A full-page capture resizes the viewport for a moment; Chromium then scrolls a focused text
        # field back into view at the next mouse press, so a click right after would land elsewhere
        # (mousedown on the button, mouseup on what scrolled under it). Focusing the field again,
        # without scrolling, settles it.
        page.evaluate("() => { const a = document.activeElement;"
                      " if (a && a !== document.body) { a.blur(); a.focus({preventScroll: true}); } }")
        return path

    return take
