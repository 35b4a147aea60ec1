"""The issue-10 journeys in Chromium (1366×768, zh-CN) across a real federation: 四川省 → 成都市 →
锦江区 → its two townships, each a node process on SQLite with a real nats-server, the sample framework
cascaded and the townships' values reported (conftest.py ``federation``). At 锦江区 (510104):

1. the office signs in (by keyboard only), adds a provider scoped to one township and sees its
   one-time password once, generates the task book and assigns 地区生产总值 (A1) to 统计局;
2. the new provider signs in with the one-time password and is made to change it;
3. it types a bad number (the as-you-type message beside the cell), submits anyway (422, the problem
   beside the cell, nothing saved), then a good value with a comment and a PDF as evidence;
4. the unscoped 统计局 provider fills the Excel template with one bad cell (named sheet!cell, nothing
   taken), then a good one (taken);
5. the reviewer sees values, the evidence and the history, returns one entry with a reason and
   approves the other;
6. the township's own account sees the return and its reason on its home page, as does the provider;
7. the province's rankings change: 成都市's score, polled on the province's dashboard, is not what it
   was before the approval (the county's provided value went up through the city);
8. outside the scope or the role: 403 pages naming what is missing, and the same over HTTP as
   problem+json.

Every step is a screenshot under artefacts/screenshots/; no request leaves the two gateways and the
console stays free of errors (conftest.py). ``test_the_close_of_the_year`` (issue 11) goes on in the same
federation: 公示, an appeal filed, assigned, decided and seen, the public site, feedback reports and
rectification items."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.browser.harness import VIEWPORT, Federation, Guard

Shoot = Callable[[Any, str], Path]
Contexts = Callable[..., tuple[Any, Guard]]

COUNTY, PROVINCE = "510104", "51"
T1, T2 = "510104017", "510104018"  # 锦官驿街道, 东湖街道
CYCLE, PERIOD = "2026", "2026-Y"
ENTRY = f"/entry?cycle={CYCLE}&period={PERIOD}"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
NEW_PASSWORD = "Jinjiang-tjj2-2026"


def sign_in(page: Any, login: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill(login)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def csrf(page: Any) -> str:
    return str(page.locator("input[name=_csrf]").first.input_value())


def cell_of(page: Any, unit: str, key: str) -> Any:
    """The grid's cell for (unit, key): its value field, comment, hints and message."""
    return page.locator("td.cell").filter(has=page.locator(f"input[name='v:{unit}/{key}']"))


def grid_cells(page: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """The signed-in provider's cells, from the store through the API (with the page's session)."""
    r = page.request.get(f"/api/v1/entries?cycle={CYCLE}&period={PERIOD}")
    assert r.status == 200, r.text()
    return {(c["unit"], c["key"]): c for g in r.json() for c in g["cells"]}


def no_wider_than_the_window(page: Any) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], f"{page.url}: the page scrolls sideways ({width}px)"


def chengdu_score(page: Any) -> str:
    row = page.get_by_role("table", name=re.compile("排名表")).get_by_role("row").filter(has_text="成都市（5101）")
    return str(row.locator("td.num").inner_text()).strip()


def test_county_journeys(federation: Federation, federation_contexts: Contexts, shoot: Shoot) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()

    def lap(step: str) -> None:
        nonlocal t0
        timings[step] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()

    def context(code: str = COUNTY) -> Any:
        return federation_contexts(code, PROVINCE)[0].new_page()

    # 7 (before): the province's dashboard (computed results: its auditor signs in to watch them).
    province = context(PROVINCE)
    sign_in(province, "shenji", federation.password("shenji"))
    province.goto("/dashboard")
    expect(province.get_by_role("heading", level=1)).to_contain_text("四川省")
    before = chengdu_score(province)
    shoot(province, "province-before")

    # 1. The office: sign in by keyboard only, then a provider account and the task book.
    office = context()
    office.goto("/login")
    expect(office.get_by_label("用户名")).to_be_focused()  # autofocus: typing starts at once
    office.keyboard.type("office")
    office.keyboard.press("Tab")
    expect(office.get_by_label("密码")).to_be_focused()
    office.keyboard.type(federation.password("office"))
    office.keyboard.press("Enter")
    expect(office).to_have_url(re.compile(r"/home$"))
    expect(office.get_by_test_id("who")).to_contain_text("绩效办")
    shoot(office, "office-home")

    office.get_by_role("navigation", name="主导航").get_by_role("link", name="用户管理").click()
    expect(office.get_by_role("heading", level=1)).to_have_text("用户管理")
    office.get_by_label("用户名（小写字母开头）").fill("tjj2")
    office.get_by_label("姓名").fill("统计局 刘洋")
    office.get_by_label(re.compile("^单位/部门")).fill("统计局")
    office.get_by_role("group", name="角色").get_by_label("数据提供单位").check()
    office.get_by_label("负责的单位（不选为全部）").select_option(T1)
    office.get_by_label(re.compile("^负责的指标")).fill("A1")
    shoot(office, "users-form")
    with office.expect_response(lambda r: r.request.method == "POST") as created:
        office.get_by_role("button", name="创建并生成一次性密码").click()
    assert created.value.status == 201
    secret = office.get_by_test_id("secret").locator("code").inner_text().strip()
    assert len(secret) >= 10
    row = office.locator("tr[data-login=tjj2]")
    expect(row).to_contain_text("数据提供单位")
    expect(row).to_contain_text("锦官驿街道")
    expect(row).to_contain_text("待改密码")
    no_wider_than_the_window(office)
    shoot(office, "users-created")

    office.get_by_role("navigation", name="主导航").get_by_role("link", name="任务书").click()
    office.get_by_role("button", name=re.compile("按指标体系生成任务书")).click()
    expect(office.get_by_role("status")).to_contain_text("已按指标体系生成")
    a1 = office.get_by_role("region", name=re.compile(r"地区生产总值（A1"))
    expect(a1.get_by_role("row")).to_have_count(2)  # the header and one setting for both townships
    a1.get_by_text("修改此指标的任务").click()
    a1.get_by_label(re.compile("^数据提供单位")).fill("统计局")
    a1.get_by_label("报送频次").select_option("Y")
    a1.get_by_label("下限").fill("0")
    a1.get_by_label(re.compile("^适用单位")).select_option([T1, T2])
    shoot(office, "tasks-edit")
    with office.expect_response(lambda r: r.request.method == "POST") as saved:
        a1.get_by_role("button", name="保存").click()
    assert saved.value.status == 303, (saved.value.url, saved.value.status, saved.value.text()[:3000])
    expect(office).to_have_url(re.compile(r"/tasks\?cycle=2026$"))
    setting = office.get_by_role("region", name=re.compile(r"地区生产总值（A1")).get_by_role("row").nth(1)
    for text in ("统计局", "0 – —", "锦官驿街道", "东湖街道"):
        expect(setting).to_contain_text(text)
    no_wider_than_the_window(office)
    shoot(office, "tasks-assigned")
    lap("1 office")

    # 2. The new provider: the one-time password, then a password of its own.
    tjj2 = context()
    sign_in(tjj2, "tjj2", secret)
    expect(tjj2).to_have_url(re.compile(r"/account/password$"))
    expect(tjj2.get_by_role("status")).to_contain_text("请先设置自己的密码")
    tjj2.get_by_label("当前密码").fill(secret)
    tjj2.get_by_label("新密码（至少 10 位）").fill(NEW_PASSWORD)
    tjj2.get_by_label("再输一遍新密码").fill(NEW_PASSWORD)
    shoot(tjj2, "password-change")
    tjj2.get_by_role("button", name="保存").click()
    expect(tjj2).to_have_url(re.compile(r"/home$"))
    expect(tjj2.get_by_role("link", name="请先修改一次性密码")).to_have_count(0)
    shoot(tjj2, "provider-home")
    lap("2 password")

    # 3. Entry: a bad number (as typed, then submitted: 422, nothing saved), then a good one and evidence.
    tjj2.goto(ENTRY)
    cell = cell_of(tjj2, T1, "A1")
    expect(tjj2.locator("td.cell")).to_have_count(1)  # one township × one indicator: the account's scope
    value = cell.get_by_label("锦官驿街道 地区生产总值")
    value.press_sequentially("12,5万")
    expect(cell.locator(".cell-message")).to_contain_text("不是有效数字")  # htmx, as typed
    shoot(tjj2, "entry-as-you-type")
    with tjj2.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/entry")) as posted:
        tjj2.get_by_role("button", name="提交审核", exact=True).click()
    assert posted.value.status == 422
    cell = cell_of(tjj2, T1, "A1")
    expect(cell).to_have_class(re.compile("has-problem"))
    expect(cell.get_by_role("alert")).to_contain_text("不是有效数字")
    expect(cell.get_by_label("锦官驿街道 地区生产总值")).to_have_value("12,5万")  # what was typed is kept
    expect(tjj2.locator(".problem[role=alert]")).to_contain_text("1 处错误，未保存任何数据")
    assert grid_cells(tjj2)[(T1, "A1")]["status"] == ""  # nothing saved
    shoot(tjj2, "entry-refused")

    good = "11800"
    cell.get_by_label("锦官驿街道 地区生产总值").fill(good)
    cell.get_by_label("备注").fill("按2026年统计年报口径")
    expect(cell.locator(".cell-message")).to_be_empty()
    with tjj2.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/entry")) as posted:
        tjj2.get_by_role("button", name="提交审核", exact=True).click()
    assert posted.value.status == 200
    expect(tjj2.get_by_test_id("saved")).to_contain_text("已提交 1 项")
    tjj2.get_by_label("文件（≤10 MB）").set_input_files(
        files=[{"name": "统计年报.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    tjj2.get_by_role("button", name="上传附件").click()
    expect(tjj2.get_by_role("status")).to_contain_text("附件已上传")
    expect(cell_of(tjj2, T1, "A1")).to_contain_text("统计年报.pdf")
    held = grid_cells(tjj2)[(T1, "A1")]
    assert (held["value"], held["status"], held["attachments"]) == (good, "submitted", ["统计年报.pdf"])
    shoot(tjj2, "entry-submitted")
    lap("3 entry")

    # 4. Excel: the unscoped provider (both townships); one bad cell in the second row, then fixed.
    tjj = context()
    sign_in(tjj, "tjj", federation.password("tjj"))
    tjj.goto(ENTRY)
    expect(tjj.locator("table.grid tbody tr")).to_have_count(2)
    no_wider_than_the_window(tjj)
    shoot(tjj, "excel-entry")
    with tjj.expect_download() as download:
        tjj.get_by_role("link", name=re.compile("下载 2026-Y 填报模板")).click()
    template = Path(download.value.path()).read_bytes()

    def filled(text: str) -> tuple[bytes, str]:
        wb = load_workbook(io.BytesIO(template))
        ws = wb["填报"]
        col = next(j for j, c in enumerate(ws[3], start=1) if c.value == "A1")  # the hidden key row names the keys
        row = next(i for i, r in enumerate(ws.iter_rows(min_row=4), start=4) if r[0].value == T2)
        target = ws.cell(row, col)
        target.value = text
        out = io.BytesIO()
        wb.save(out)
        return out.getvalue(), f"填报!{target.coordinate}"

    def upload(data: bytes) -> int:
        tjj.get_by_label("上传填好的模板（.xlsx）").set_input_files(
            files=[{"name": "统计局.xlsx", "mimeType": "application/octet-stream", "buffer": data}])
        with tjj.expect_response(lambda r: r.request.method == "POST") as answer:
            tjj.get_by_role("button", name="上传并提交审核").click()
        return int(answer.value.status)

    bad, where = filled("一千")
    assert upload(bad) == 422
    expect(tjj.get_by_test_id("upload-problems")).to_contain_text(where)
    assert grid_cells(tjj)[(T2, "A1")]["status"] == ""  # nothing taken
    shoot(tjj, "excel-refused")
    reported = federation.demo.entered[T2]["A1"]
    fixed = str(int(reported) - 1500)  # not what the township reported: the roll-up must change
    good_file, _ = filled(fixed)
    assert upload(good_file) == 200
    expect(tjj.get_by_test_id("uploaded")).to_contain_text("统计局.xlsx")
    assert (grid_cells(tjj)[(T2, "A1")]["status"], grid_cells(tjj)[(T2, "A1")]["value"]) == ("submitted", fixed)
    shoot(tjj, "excel-taken")
    lap("4 excel")

    # 5. The reviewer: values, evidence, history; one returned with a reason, the other approved.
    review = context()
    sign_in(review, "shenhe", federation.password("shenhe"))
    review.goto("/review")
    rows = review.locator("table.review tbody tr")
    expect(rows).to_have_count(2)
    mine, excel = rows.filter(has_text="锦官驿街道"), rows.filter(has_text="东湖街道")
    expect(mine).to_contain_text(good)
    expect(mine).to_contain_text("按2026年统计年报口径")
    expect(excel).to_contain_text(fixed)
    evidence = mine.get_by_role("link", name=re.compile("统计年报.pdf"))
    got = review.request.get(str(evidence.get_attribute("href")))
    assert got.status == 200 and got.body() == PDF
    mine.locator("details summary").click()
    expect(mine.locator("details li")).not_to_have_count(0)
    no_wider_than_the_window(review)
    shoot(review, "review-queue")
    mine.get_by_role("checkbox").check()
    review.get_by_label("退回理由（退回时必填）").fill("请附盖章的统计年报页")
    review.get_by_role("button", name="退回所选").click()
    expect(review.get_by_test_id("decided")).to_contain_text("已退回 1 项")
    review.locator("table.review tbody tr").filter(has_text="东湖街道").get_by_role("checkbox").check()
    review.get_by_role("button", name="审核通过所选").click()
    expect(review.get_by_test_id("decided")).to_contain_text("已审核通过 1 项")
    shoot(review, "review-decided")
    lap("5 review")

    # 6. The township (its own account at the county) and the provider see the return and why.
    unit = context()
    sign_in(unit, "danwei", federation.password("danwei"))
    expect(unit).to_have_url(re.compile(r"/home$"))
    returned = unit.get_by_test_id("returned")
    expect(returned).to_contain_text(f"{T1}/A1")
    expect(returned).to_contain_text("请附盖章的统计年报页")
    shoot(unit, "unit-home-returned")
    tjj2.goto("/home")
    expect(tjj2.get_by_test_id("returned")).to_contain_text("请附盖章的统计年报页")
    shoot(tjj2, "provider-home-returned")
    lap("6 returns")

    # 7 (after): the approved value went up county → city → province; the dashboard shows it.
    deadline = time.monotonic() + 45
    after = before
    while after == before and time.monotonic() < deadline:
        province.wait_for_timeout(1000)
        province.reload()
        after = chengdu_score(province)
    assert after != before, f"成都市's score still {before} at the province"
    expect(province.locator("canvas[data-chart='rankings']")).to_have_attribute("data-drawn", "done")
    shoot(province, "province-after")
    lap("7 province")

    # 8. Outside the scope or the role: 403 pages that say why, and the same over HTTP.
    tjj2.goto(ENTRY)
    field = tjj2.locator(f"input[name='v:{T1}/A1']")
    field.evaluate(f"(el) => {{ el.name = 'v:{T2}/A1'; }}")  # a crafted post for the other township
    with tjj2.expect_response(lambda r: r.request.method == "POST") as refused:
        tjj2.get_by_role("button", name="保存草稿", exact=True).click()
    assert refused.value.status == 403
    expect(tjj2.get_by_role("alert")).to_contain_text(f"权限范围不含单位 {T2}")
    expect(tjj2.locator("[data-code='auth.scope']")).to_have_count(1)
    shoot(tjj2, "scope-403")
    r = tjj2.request.post("/api/v1/entries/batch", headers={"X-CSRF-Token": csrf(tjj2)}, data={
        "cycle": CYCLE, "period": PERIOD, "submit": False, "cells": [{"unit": T2, "key": "A1", "value": "1"}]})
    assert r.status == 403 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "auth.scope" and T2 in r.json()["detail"]
    r = tjj2.request.post("/entry", headers={"Accept": "application/problem+json"},
                          form={"_csrf": csrf(tjj2), "cycle": CYCLE, "period": PERIOD, "action": "save",
                                f"v:{T2}/A1": "1"})
    assert r.status == 403 and r.json()["code"] == "auth.scope"
    tjj2.goto("/users")
    expect(tjj2.get_by_role("alert")).to_contain_text("需要角色：绩效办")
    shoot(tjj2, "provider-users-403")

    audit = context()
    sign_in(audit, "shenji", federation.password("shenji"))
    for path, roles in (("/entry", "绩效办、数据提供单位、被考评单位"), ("/review", "绩效办、审核人"), ("/users", "绩效办")):
        answer = audit.goto(path)
        assert answer is not None and answer.status == 403, path
        expect(audit.get_by_role("heading", level=1)).to_have_text(re.compile("无权访问"))
        expect(audit.get_by_role("alert")).to_contain_text(f"需要角色：{roles}")
        shoot(audit, f"auditor{path.replace('/', '-')}-403")
        r = audit.request.get(path, headers={"Accept": "application/problem+json"})
        assert r.status == 403 and r.headers["content-type"].startswith("application/problem+json"), path
        assert r.json()["code"] == "auth.forbidden" and roles in r.json()["detail"]
    audit.get_by_role("navigation", name="主导航").get_by_role("link", name="审计日志").click()  # the auditor's own page
    expect(audit.get_by_test_id("audit-intact")).to_be_visible()
    expect(audit.locator("table.audit")).to_contain_text("intake.approve")  # the reviewer's decision, by login
    expect(audit.locator("table.audit")).to_contain_text("shenhe")
    shoot(audit, "audit-log")
    for path in ("/api/v1/users", f"/api/v1/entries?cycle={CYCLE}&period={PERIOD}"):
        r = audit.request.get(path)
        assert r.status == 403 and r.headers["content-type"].startswith("application/problem+json"), path
    r = tjj2.request.get("/users", headers={"Accept": "application/problem+json"})
    assert r.status == 403 and r.json()["code"] == "auth.forbidden"
    lap("8 refusals")
    print(f"\nfederation: {federation.timings}\njourneys: {timings}")


def test_the_close_of_the_year(federation: Federation, federation_contexts: Contexts, shoot: Shoot) -> None:
    """Issue 11 at 锦江区, each step as its person does it in Chromium: the office opens 公示 (also to the
    public) from /publication; the township's liaison appeals a value on /appeals; the office assigns the
    one eligible reviewer; the reviewer rejects it with a reason; the liaison sees the decision and the
    reason on its home page; a citizen, signed in nowhere, finds the township's results marked 公示中 on
    the public site; the office writes every unit's feedback report and opens one; the office makes
    rectification items from the weak indicators."""
    def context(code: str = COUNTY) -> Any:
        return federation_contexts(code)[0].new_page()

    office = context()
    sign_in(office, "office", federation.password("office"))
    office.goto(f"/publication?cycle={CYCLE}")
    section = office.locator("section.card").filter(has=office.get_by_role("button", name="开始公示")).first
    section.get_by_label("向社会公示").check()
    section.get_by_role("button", name="开始公示").click()
    expect(office.get_by_role("status")).to_contain_text("已签名发布")
    expect(office.locator("main")).to_contain_text("公示中")
    shoot(office, "publication-opened")

    unit = context()
    sign_in(unit, "danwei", federation.password("danwei"))
    unit.goto("/appeals")
    form = unit.locator(f"form.appeal-file[data-unit='{T1}']")
    form.get_by_label("申诉对象").select_option("value")
    form.get_by_label("指标（申诉数值时）").select_option(index=1)
    form.get_by_label(re.compile("申诉理由")).fill("该项数值未计入第四季度竣工项目，请复核。")
    form.get_by_role("button", name="提交申诉").click()
    row = unit.locator("tr[data-appeal]").first
    expect(row).to_have_attribute("data-status", "filed")
    shoot(unit, "appeal-filed")

    office.goto("/appeals")
    row = office.locator("tr[data-appeal]").first
    row.get_by_label("复核人").select_option("shenhe")
    row.get_by_role("button", name="指定").click()
    expect(office.locator("tr[data-appeal]").first).to_have_attribute("data-status", "assigned")

    reviewer = context()
    sign_in(reviewer, "shenhe", federation.password("shenhe"))
    reviewer.goto("/appeals")
    row = reviewer.locator("tr[data-appeal]").first
    row.get_by_label("申诉不成立").check()
    row.get_by_label("决定理由（必填）").fill("经核对统计台账，第四季度项目已计入，原值无误。")
    row.get_by_role("button", name="作出决定").click()
    expect(reviewer.locator("tr[data-appeal]").first).to_have_attribute("data-status", "rejected")
    shoot(reviewer, "appeal-decided")

    unit.goto("/home")
    expect(unit.locator("main")).to_contain_text("经核对统计台账，第四季度项目已计入")
    shoot(unit, "appeal-on-home")

    citizen = context()
    citizen.goto("/")
    expect(citizen).to_have_url(re.compile(r"/public$"))
    expect(citizen.locator("main")).to_contain_text("公示中")
    citizen.get_by_role("link", name=re.compile("锦官驿街道")).first.click()
    expect(citizen.get_by_role("table").first).to_be_visible()
    shoot(citizen, "public-publicity")

    office.goto(f"/feedback?cycle={CYCLE}")
    office.get_by_test_id("generate-all").click()
    expect(office.get_by_test_id("generated")).to_contain_text("已生成")
    office.goto(f"/feedback/{CYCLE}/{T1}")
    expect(office.locator("main")).to_contain_text("锦官驿街道")
    shoot(office, "feedback-report-page")
    pdf = office.request.get(f"/feedback/{CYCLE}/{T1}.pdf")
    assert pdf.status == 200 and pdf.body().startswith(b"%PDF")

    office.goto(f"/rectification?cycle={CYCLE}")
    office.locator("#w-deadline").fill("2027-03-31")
    office.get_by_role("button", name=re.compile("薄弱指标一键生成")).click()
    expect(office.get_by_test_id("done")).to_contain_text("已从薄弱指标生成")
    shoot(office, "rectification-items")
