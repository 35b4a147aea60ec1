"""绩效报告 (issue 11): one report per unit from what was published — the breakdown by group, rank and
grade in the class, strengths and weak indicators, the trend, appeals and open rectification items,
and the provenance of every value (bundle, approval); the batch of PDFs stored and audited; the PDF
read back by rendering its pages (pypdfium2) and its text; the pages and the JSON API through the app
with signed-in sessions, and a unit's account refused another unit's report (403)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import zlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from litestar.testing import AsyncTestClient

from aggregator.errors import AppraisalError
from aggregator.framework import Framework, Indicator, Unit
from gateway.app import create_app
from nodes import feedback_render
from nodes.accounts import SYSTEM
from nodes.feedback import build
from nodes.launcher import Federation
from nodes.runtime import NodeServices as Node
from nodes.runtime import gateway_services
from nodes.tables import appeals, rectifications
from sync import publication as pubs
from tests.support.closing import DAY, OFFICE, TOWNS, finalise, publicise, report
from tests.support.nodes import make_county
from tests.support.pages import assert_no_inline_script
from tests.test_accounts import no_redirects, sign_in

if not all(p.is_file() for _, p in [(w, feedback_render.FONT_DIR / rel) for w, rel in feedback_render.FONTS]):
    pytest.fail("the CJK font is not installed: run ./dev setup (scripts/fetch_assets.py)", pytrace=False)


@pytest.fixture
async def county(tmp_path: Path) -> AsyncIterator[tuple[Node, Federation]]:
    """510104017 reported A1=300 of its target 500 (lagging: red), 510104018 A1=900; both rated on B3."""
    node, fed = await make_county(tmp_path)
    for town, a1 in zip(TOWNS, (300, 900), strict=True):
        await report(node, fed, town, {"A1": Decimal(a1), "B3": Decimal(80)})
        await node.entry.enter_assessment("2026", "2026-Y", town, {"ratings": {"B3": ["80", "90", "85"]}}, "pj")
    yield node, fed
    await node.context.store.close()


async def add_appeal_and_item(node: Node, publication: str) -> None:
    """An appeal decided and an open, overdue rectification item for 510104017, as their services
    write them (the rows of tables appeals and rectifications)."""
    now = node.context.clock()
    async with node.context.store.tx() as tx:
        await tx.conn.execute(appeals.insert().values(
            cycle="2026", period="2026-Y", unit=TOWNS[0], publication=publication, target="value", indicator="A1",
            reason="统计口径有误", status="rejected", filed_by="t17", filed_at=now - 3 * DAY, decide_by=now + DAY,
            reviewer="li", decision="口径符合统计制度", decided_by="li", decided_at=now - DAY,
            before='{"value": "500"}', after='{"value": "500"}'))
        await tx.conn.execute(rectifications.insert().values(
            cycle="2026", unit=TOWNS[0], source="weak", ref="A1", title="地区生产总值完成率偏低", measure="招商引资",
            owner="t17", deadline=now - DAY, status="open", created_by="wang", created_at=now - 2 * DAY))
        await tx.conn.execute(rectifications.insert().values(
            cycle="2026", unit=TOWNS[0], source="office", ref="", title="已完成的事项", owner="t17", deadline=now,
            status="done", created_by="wang", created_at=now - 2 * DAY))


def embedded_fonts(data: bytes) -> set[str]:
    """The /BaseFont names of a PDF, object streams inflated (WeasyPrint compresses them)."""
    names: set[str] = set()
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            body = zlib.decompress(m.group(1))
        except zlib.error:
            continue
        names.update(n.decode("latin-1").split("+")[-1] for n in re.findall(rb"/BaseFont\s*/([^\s/>\[]+)", body))
    return names


def pdf_text(data: bytes) -> tuple[str, int]:
    """All pages' text, and the count of non-white pixels of page 1 rendered at 72 dpi."""
    doc = pdfium.PdfDocument(data)
    try:
        text = "".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
        image = doc[0].render(scale=1).to_pil().convert("L")
        inked = sum(image.histogram()[:200])
    finally:
        doc.close()
    return text, inked


async def test_report_from_the_publication_pdf_batch_stored_and_audited(county: tuple[Node, Federation]) -> None:
    node, _ = county
    with pytest.raises(AppraisalError) as none_yet:
        async with node.context.store.read() as r:
            await node.feedback.report(r, "2026", None, TOWNS[0])
    assert none_yet.value.code == "feedback.no_publication"
    await publicise(node)
    final = await finalise(node)
    await add_appeal_and_item(node, final.digest)
    doc = pubs.read(final.envelope)
    low, high = doc.unit(TOWNS[0]), doc.unit(TOWNS[1])
    assert low is not None and high is not None

    async with node.context.store.read() as r:
        rep = await node.feedback.report(r, "2026", "2026-Y", TOWNS[0])
        bundle = await r.bundles.get(next(v.bundle_id for v in low.values if v.indicator == "A1"))
    assert bundle is not None
    # every number is the publication's
    assert (rep.publication, rep.version, rep.state) == (final.digest, 2, "final")
    assert (rep.score, rep.rank, rep.grade, rep.of) == (low.score, low.rank, low.grade, 2) and rep.rank == 2
    assert rep.class_average == (low.score + high.score) / 2
    groups = {g.code: g for g in rep.groups}
    assert set(groups) == {"A", "B"} and groups["A"].name == "经济发展"
    assert sum((g.points for g in rep.groups), Decimal(0)) == rep.base
    parts = {p["indicator"]: p for p in low.explain()["parts"]}  # type: ignore[union-attr]
    assert str(groups["A"].points.normalize()) == str(Decimal(str(parts["A1"]["score"])).normalize())
    # A1 (300 of a target of 500) is weak: below the class average and lagging; B3 the strength
    weak = {w.line.code: w for w in rep.weak}
    assert "A1" in weak and "below_average" in weak["A1"].reasons and weak["A1"].warning == "red"
    assert any(r.startswith("lagging") for r in weak["A1"].reasons)
    assert rep.strengths[0].code == "B3"
    # provenance: the cited bundle, who sent it and when
    a1 = next(p for p in rep.provenance if p.indicator == "A1")
    assert a1.source == "reported" and a1.bundle is not None
    assert (a1.bundle.node, a1.bundle.seq, a1.bundle.received_at) == (TOWNS[0], bundle.seq, bundle.received_at)
    # the decided appeal, and only the open rectification item (overdue)
    assert [(a.status, a.decision) for a in rep.appeals] == [("rejected", "口径符合统计制度")]
    assert [(i.title, i.overdue) for i in rep.rectifications] == [("地区生产总值完成率偏低", True)]
    assert [(t.cycle, t.score) for t in rep.trend] == [("2026", low.score)]

    # the batch: both units, progress reported, stored with sha256 and the publication, audited
    seen: list[tuple[int, int, str]] = []
    made = await node.feedback.generate(OFFICE, "2026", progress=lambda d, t, u: seen.append((d, t, u)), workers=1)
    assert sorted(g.unit for g in made) == sorted(TOWNS)
    assert seen[0] == (0, 2, "") and seen[-1][:2] == (2, 2)
    async with node.context.store.read() as r:
        stored = await r.feedback.list("2026", "2026-Y")
        found = await r.feedback.pdf("2026", "2026-Y", TOWNS[0])
        audit = [e for e in await r.audit.entries() if e.action == "feedback.generate"]
    assert {(s.unit, s.publication) for s in stored} == {(t, final.digest) for t in TOWNS}
    assert found is not None and found[0].sha256 == next(g.sha256 for g in made if g.unit == TOWNS[0])
    assert len(audit) == 1 and audit[0].actor == OFFICE.actor and final.digest in audit[0].detail

    # the PDF read back: its text carries the unit, score, grade, a group and a bundle id prefix; page 1 is inked
    data = found[1]
    assert data.startswith(b"%PDF")
    fonts = embedded_fonts(data)
    assert fonts and all(f.startswith("FA-CJK") for f in fonts), fonts  # the offline Noto Sans SC only, no fallback
    text, inked = pdf_text(data)
    flat = "".join(text.split())
    assert low.name in flat and TOWNS[0] in flat
    assert feedback_render._num(low.score) in flat and low.grade in flat
    assert "经济发展" in flat and "薄弱指标" in flat and "口径符合统计制度" in flat
    assert a1.bundle_id[:16] in flat and final.digest[:16] in flat
    assert inked > 2000
    # on demand, the same report when nothing is stored for this publication: stored first, rendered after a revision
    assert (await node.feedback.pdf("2026", None, TOWNS[0]))[1] == "stored"
    async with node.context.store.tx() as tx:
        await node.publication.revise(tx, OFFICE, cycle="2026", period="2026-Y", unit_class=final.unit_class,
                                      reason="复核更正")
    again, how = await node.feedback.pdf("2026", None, TOWNS[0])
    assert how == "rendered" and again.startswith(b"%PDF")


async def test_batch_in_worker_processes_gives_the_same_reports(county: tuple[Node, Federation]) -> None:
    node, _ = county
    await publicise(node)
    async with node.context.store.read() as r:
        reps = [await node.feedback.report(r, "2026", None, t) for t in TOWNS]
    reps = reps * feedback_render.POOL_MIN  # enough for two workers
    done: list[int] = []
    many = feedback_render.render_many(reps, workers=2, progress=lambda n, _: done.append(n))
    assert sorted(done) == list(range(1, len(reps) + 1)) and len(many) == len(reps)
    for rep, data in zip(reps, many, strict=True):
        text, _ = pdf_text(data)
        assert rep.name in "".join(text.split())
        assert "公示中" in "".join(text.split())  # not final yet: said so on the report


def test_trend_and_weakness_rules_on_the_published_figures() -> None:
    """The pure builder: earlier cycles' publications make the trend, in cycle order; an unassessed
    unit is named, and a unit not published is refused."""
    fw = Framework("5101", "成都市", "2026", "县市区", 1, "成都市 2026 年度县市区考评", 0, 0,
                   (Unit("510104", "锦江区", "县市区"), Unit("510105", "青羊区", "县市区")),
                   (Indicator("A", "经济发展", Decimal(60)),
                    Indicator("A1", "地区生产总值", Decimal(60), "A", leaf=True, target=Decimal(100)),
                    Indicator("B", "治理", Decimal(40)),
                    Indicator("B1", "营商环境", Decimal(40), "B", leaf=True, target=Decimal(100))))
    figs = pubs.figures(fw, {u.code: tuple(pubs.Value(i.code, Decimal(v), "entered") for i in fw.leaves())
                             for u, v in zip(fw.units, ("80", "120"), strict=False)}, {}, int(time.time()), "2026-Y")
    ref = pubs.FrameworkRef(fw.issuer, fw.cycle, fw.unit_class, fw.version, "f" * 64)
    pub = pubs.Published(fw.issuer, "2026", "2026-Y", ref, "final", 1, "", "", 1, 1, 0, 0, True, figs, "d" * 64)
    old = dataclasses.replace(pub, cycle="2025", period="2025-Y", digest="e" * 64)
    older = dataclasses.replace(pub, cycle="2024", period="2024-Y", digest="c" * 64)
    unit = fw.units[0].code
    rep = build(pub, fw, unit, history=[old, older], now=2)
    assert [p.cycle for p in rep.trend] == ["2024", "2025", "2026"]
    assert all(p.score == rep.score for p in rep.trend)
    with pytest.raises(AppraisalError) as missing:
        build(pub, fw, "999999999")
    assert missing.value.code == "feedback.unit_not_published"
    html = feedback_render.html(rep, lang="en")
    assert "Weak indicators" in html and "<script" not in html


@pytest.fixture
async def site(county: tuple[Node, Federation]) -> AsyncIterator[tuple[Node, AsyncTestClient[Any]]]:
    node, _ = county
    await node.accounts.add("wang", "王", ["office"], SYSTEM, password="wang-password-1")
    await node.accounts.add("t17", "十七", ["unit"], SYSTEM, password="t17-password-1", units=[TOWNS[0]])
    await publicise(node)
    await finalise(node)
    async with no_redirects(AsyncTestClient(app=create_app(gateway_services(node)))) as client:
        yield node, client


async def test_pages_pdf_and_api_with_scope(site: tuple[Node, AsyncTestClient[Any]]) -> None:
    _, client = site
    assert (await client.get("/feedback?cycle=2026")).status_code == 303  # sign in first
    csrf = await sign_in(client, "wang", "wang-password-1")
    page = await client.get("/feedback?cycle=2026")
    assert page.status_code == 200 and 'data-testid="generate-all"' in page.text
    assert all(f'data-unit="{t}"' in page.text for t in TOWNS)
    r = await client.post("/feedback/generate", data={"_csrf": csrf, "cycle": "2026", "period": "2026-Y"})
    assert r.status_code == 200 and 'data-testid="generated"' in r.text and "2 " in r.text
    r = await client.post("/feedback/generate", data={"cycle": "2026"})  # no CSRF token
    assert r.status_code == 403
    await client.post("/logout", data={"_csrf": csrf})

    await sign_in(client, "t17", "t17-password-1")
    listing = await client.get("/feedback?cycle=2026")
    assert f'data-unit="{TOWNS[0]}"' in listing.text and f'data-unit="{TOWNS[1]}"' not in listing.text
    assert "generate-all" not in listing.text
    own = await client.get(f"/feedback/2026/{TOWNS[0]}")
    assert own.status_code == 200 and 'data-testid="feedback-report"' in own.text and "经济发展" in own.text
    assert_no_inline_script(own.text)
    printable = await client.get(f"/feedback/2026/{TOWNS[0]}?print=1")
    assert printable.status_code == 200 and printable.text.startswith("<!doctype html>")
    assert '/feedback/report.css' in printable.text and " style=" not in printable.text
    css = await client.get("/feedback/report.css")
    assert css.status_code == 200 and "@page" in css.text
    pdf = await client.get(f"/feedback/2026/{TOWNS[0]}.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["x-report-source"] == "stored" and pdf.content.startswith(b"%PDF")
    api = await client.get(f"/api/v1/feedback/2026/{TOWNS[0]}")
    assert api.status_code == 200
    body = api.json()
    assert body["unit"] == TOWNS[0] and body["rank"] == 2 and {g["code"] for g in body["groups"]} == {"A", "B"}
    assert all(p["bundle_id"] and p["bundle_node"] == TOWNS[0] for p in body["provenance"])
    # another unit's report: refused, named
    for path in (f"/feedback/2026/{TOWNS[1]}", f"/feedback/2026/{TOWNS[1]}.pdf", f"/api/v1/feedback/2026/{TOWNS[1]}"):
        r = await client.get(path, headers={"accept": "application/problem+json"})
        assert r.status_code == 403 and r.json()["code"] == "auth.scope", path
    r = await client.post("/feedback/generate", data={"_csrf": "x", "cycle": "2026"})
    assert r.status_code == 403
    bad = await client.get("/api/v1/feedback/2026/x%20y")
    assert bad.status_code == 400
    none = await client.get(f"/api/v1/feedback/2025/{TOWNS[0]}")
    assert none.status_code == 404 and none.json()["code"] == "feedback.no_publication"


async def test_cli_generates_every_report_with_a_progress_bar(tmp_path: Path) -> None:
    """`appraise reports generate --config node.yaml --cycle 2026 --out DIR` on the node's own store."""
    import yaml
    from typer.testing import CliRunner

    from nodes.cli import app

    db = tmp_path / "county.db"
    node, fed = await make_county(tmp_path)
    for town, a1 in zip(TOWNS, (300, 900), strict=True):
        await report(node, fed, town, {"A1": Decimal(a1), "B3": Decimal(80)})
    await publicise(node)
    await node.context.store.close()
    path = fed.node_dir("510104") / "node.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["store"] = f"sqlite+aiosqlite:///{db}"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "pdf"

    def run() -> Any:
        return CliRunner().invoke(app, ["reports", "generate", "--config", str(path), "--cycle", "2026",
                                        "--out", str(out), "--workers", "1"])

    result = await asyncio.to_thread(run)
    assert result.exit_code == 0, result.output
    assert "已生成 2 份绩效报告" in result.output and "2/2" in result.output  # the bar's last state
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"2026-2026-Y-{t}.pdf" for t in TOWNS]
    text, _ = pdf_text((out / files[0]).read_bytes())
    assert TOWNS[0] in text
    nothing = await asyncio.to_thread(lambda: CliRunner().invoke(
        app, ["reports", "generate", "--config", str(path), "--cycle", "2025"]))
    assert nothing.exit_code == 1 and "feedback.nothing_published" in nothing.output
