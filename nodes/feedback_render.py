"""绩效报告 rendering: one Jinja template (nodes/templates/feedback.html.j2, autoescaped) for the page and
the PDF, and the PDF by WeasyPrint with a CJK font from a local file.

- HTML: :func:`html` (``standalone``: a whole printable document linking ``stylesheets``; else the
  ``<article>`` the gateway puts inside its layout). The gateway serves :data:`CSS` itself.
- PDF: :func:`pdf`, the standalone document with :data:`CSS` and ``@font-face`` rules naming the
  Noto Sans SC TTF files that ``./dev setup`` fetched (scripts/fetch_assets.py, pinned in
  gateway/assets.lock.json) by ``file://`` URL: never a network URL. A missing font is an error
  naming the fix, not a PDF in a fallback font. One font configuration per process is kept, so a
  batch loads the fonts once.
- Batches: :func:`render_many` renders in worker processes (``spawn``: no forked asyncio state).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from aggregator.errors import ConfigError
from aggregator.numbers import to_text
from nodes.feedback import SOURCE_EN, SOURCE_ZH, Report

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
CSS = (TEMPLATES / "feedback.css").read_text(encoding="utf-8")
FONT_DIR = Path(os.environ.get("FEDAPPRAISAL_CJK_FONT_DIR")
                or HERE.parent / "gateway" / "static" / "vendor" / "noto-sans-sc-ttf")
FONTS = (("400", "400Regular/NotoSansSC_400Regular.ttf"), ("700", "700Bold/NotoSansSC_700Bold.ttf"))
CST = 8 * 3600
POOL_MIN = 6  # reports per worker below which the pool's start (WeasyPrint and the fonts, ~1.5 s) does not pay


@pass_context
def _tr(context: Context, zh: str, en: str, **values: object) -> str:
    text = en if context.get("lang") == "en" else zh
    return text.format(**values) if values else text


@pass_context
def _source_name(context: Context, source: str) -> str:
    return (SOURCE_EN if context.get("lang") == "en" else SOURCE_ZH).get(source, source)


def _num(d: Decimal | int | None) -> str:
    if d is None:
        return "—"
    if isinstance(d, int):
        return str(d)
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        d = d.quantize(Decimal("0.01"))
    return to_text(d)


def _pct(d: Decimal | None) -> str:
    if d is None:
        return "—"
    return f"{(d * 100).quantize(Decimal('0.1'))}%"


def _bar(d: Decimal | None, width: int) -> str:
    if d is None:
        return "0"
    return str(max(0, min(width, int((d * width).to_integral_value()))))


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d %H:%M") if ts else "—"


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d") if ts else "—"


_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True), enable_async=False)
_ENV.globals.update(tr=_tr, source_name=_source_name)
_ENV.filters.update(num=_num, pct=_pct, bar=_bar, when=_when, day=_day)


def html(report: Report, *, lang: str = "zh-CN", standalone: bool = False, stylesheets: Sequence[str] = ()) -> Markup:
    """The report as HTML (escaped by the template, hence Markup)."""
    text = _ENV.get_template("feedback.html.j2").render(r=report, lang="en" if lang == "en" else "zh-CN",
                                                          standalone=standalone, stylesheets=list(stylesheets))
    return Markup(text)  # noqa: S704 - autoescaped template output


def font_files(font_dir: Path = FONT_DIR) -> list[tuple[str, Path]]:
    found = [(weight, font_dir / rel) for weight, rel in FONTS]
    missing = [str(p) for _, p in found if not p.is_file()]
    if missing:
        raise ConfigError(f"报告所需的中文字体文件不存在：{', '.join(missing)}；请运行 ./dev setup（scripts/fetch_assets.py） "
                          "(the CJK font for PDF reports is not installed; run ./dev setup)", code="feedback.font_missing")
    return found


def font_css(font_dir: Path = FONT_DIR) -> str:
    return "\n".join(f"@font-face {{ font-family: 'FA CJK'; font-weight: {w}; font-style: normal; "
                     f"src: url('{p.resolve().as_uri()}') format('truetype'); }}" for w, p in font_files(font_dir))


class _Pdf:
    """WeasyPrint with the fonts loaded once (per process)."""

    def __init__(self) -> None:
        from weasyprint import CSS as WeasyCSS  # noqa: N811 - heavy: imported where a PDF is made
        from weasyprint.text.fonts import FontConfiguration

        self.fonts = FontConfiguration()
        self.css = WeasyCSS(string=font_css() + "\n" + CSS, font_config=self.fonts)
        self.lock = threading.Lock()

    def render(self, report: Report, lang: str) -> bytes:
        from weasyprint import HTML

        doc = str(html(report, lang=lang, standalone=True))
        with self.lock:
            out: bytes = HTML(string=doc, base_url=str(TEMPLATES)).write_pdf(stylesheets=[self.css],
                                                                             font_config=self.fonts)
        return out


_HELD: dict[str, _Pdf] = {}  # this process's renderer, made on first use
_PDF_LOCK = threading.Lock()
# Free WeasyPrint's font configuration while its libraries are still loaded (not at interpreter teardown).
atexit.register(_HELD.clear)


def _renderer() -> _Pdf:
    with _PDF_LOCK:
        if "pdf" not in _HELD:
            _HELD["pdf"] = _Pdf()
        return _HELD["pdf"]


def pdf(report: Report, lang: str = "zh-CN") -> bytes:
    return _renderer().render(report, lang)


def _warm() -> None:
    _renderer()


def _one(report: Report, lang: str) -> bytes:
    return pdf(report, lang)


def render_many(reports: Sequence[Report], *, workers: int = 0, lang: str = "zh-CN",
                progress: Callable[[int, Report], Any] | None = None) -> list[bytes]:
    """Every report's PDF, in order; ``workers`` processes (0: one per CPU, at most 4; 1: in this
    process). ``progress(done, report)`` after each one."""
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(reports) < POOL_MIN * workers:
        out = []
        for n, r in enumerate(reports, 1):
            out.append(pdf(r, lang))
            if progress is not None:
                progress(n, r)
        return out
    font_files()  # fail here, not in every worker
    results: list[bytes | None] = [None] * len(reports)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_warm) as pool:
        futures = {pool.submit(_one, r, lang): i for i, r in enumerate(reports)}
        for done, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            results[i] = fut.result()
            if progress is not None:
                progress(done, reports[i])
    return [r for r in results if r is not None]
