"""`appraise demo`: a 15-node 四川 federation on this machine, end to end, with progress."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml
from rich.console import Console
from rich.table import Table

from aggregator.framework import LEVEL_ZH, compose
from aggregator.numbers import round_value
from nodes.launcher import DATA as DATA_DIR
from nodes.launcher import Federation, NodeSpec, load_topology, loopback_client
from sync.cascade_receiver import verify_framework_chain
from sync.envelope import EnvelopeError
from sync.keys import public_from_hex
from sync.trust import root_identity

CYCLE = "2026"
PERIOD = "2026-Y"
INTEGER_UNITS = {"人", "个", "起"}

# One account per role at every node (issue 10), the two providers the sample framework names, and an
# evaluated unit's account for the node's first child (or, at a township, the township itself). The
# passwords are random for each run, one per login, printed at the end and kept in logins.txt (0600).
DEMO_ACCOUNTS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("office", "绩效办 王芳", ("office",), ""),
    ("tjj", "统计局 张三", ("provider",), "统计局"),
    ("sthj", "生态环境局 赵敏", ("provider",), "生态环境局"),
    ("pingyi", "评估专家 孙丽", ("opinion",), ""),
    ("shenhe", "审核人 李四", ("reviewer",), ""),
    ("danwei", "被考评单位联络员 周强", ("unit",), ""),
    ("shenji", "审计 钱进", ("auditor",), ""),
)


@dataclass
class Summary:
    nodes: int = 0
    nodes_up_seconds: float = 0.0
    cascade_seconds: float = 0.0
    rollup_seconds: float = 0.0
    values: int = 0
    signatures_verified: int = 0
    max_node_rss_mb: float = 0.0
    mean_node_rss_mb: float = 0.0
    max_node_uss_mb: float = 0.0
    openapi_operations: int = 0
    openapi_schemas: int = 0
    rollups_recomputed: int = 0
    descendants_current: int = 0
    anchors_held: int = 0
    accounts: int = 0
    departments_ranked: int = 0
    publications: int = 0
    appeals: int = 0
    finals: int = 0
    comments_answered: int = 0
    rectification_items: int = 0
    use_lists: int = 0
    proofs_verified: int = 0
    rollups_in_proofs: int = 0
    feedback_reports: int = 0
    feedback_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> str:
        return json.dumps({
            "nodes": self.nodes, "nodes_up_seconds": round(self.nodes_up_seconds, 3),
            "cascade_seconds": round(self.cascade_seconds, 3), "rollup_seconds": round(self.rollup_seconds, 3),
            "values": self.values, "signatures_verified": self.signatures_verified,
            "max_node_rss_mb": round(self.max_node_rss_mb, 1), "mean_node_rss_mb": round(self.mean_node_rss_mb, 1),
            "max_node_uss_mb": round(self.max_node_uss_mb, 1),
            "openapi_operations": self.openapi_operations, "openapi_schemas": self.openapi_schemas,
            "rollups_recomputed": self.rollups_recomputed, "descendants_current": self.descendants_current,
            "anchors_held": self.anchors_held, "accounts": self.accounts,
            "departments_ranked": self.departments_ranked, "publications": self.publications, "appeals": self.appeals,
            "finals": self.finals, "comments_answered": self.comments_answered,
            "rectification_items": self.rectification_items, "use_lists": self.use_lists,
            "proofs_verified": self.proofs_verified, "rollups_in_proofs": self.rollups_in_proofs,
            "feedback_reports": self.feedback_reports, "feedback_seconds": round(self.feedback_seconds, 1),
            "problems": self.problems[:20],
            "ok": self.ok,
        }, ensure_ascii=False)


def sample_value(township: str, indicator: str, target: Decimal, unit: str) -> Decimal:
    """A reproducible value around the target (80 %–125 %), as a data provider would enter it."""
    h = int.from_bytes(hashlib.sha256(f"{township}/{indicator}".encode()).digest()[:4], "big")
    factor = Decimal(80 + h % 46) / 100
    quantum = Decimal(1) if unit in INTEGER_UNITS else Decimal("0.01")
    return (target * factor).quantize(quantum, rounding=ROUND_HALF_UP)


def framework_for(path: Path, units: set[str]) -> str:
    """The sample framework for a topology of one's choosing: per-unit targets only for units it has
    (the file names 成都市 and 绵阳市; a city of another topology takes the common target)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))

    def prune(indicators: list[dict[str, Any]]) -> None:
        for ind in indicators:
            if "targets" in ind:
                kept = {u: t for u, t in ind["targets"].items() if u in units}
                if kept:
                    ind["targets"] = kept
                else:
                    del ind["targets"]
            prune(ind.get("children", []))

    prune(doc["indicators"])
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


WINDOW = 12  # seconds: the demo's publicity window (公示期); an office's lasts days


class Demo:
    def __init__(self, workdir: Path, console: Console, specs: list[NodeSpec] | None = None,
                 store_url_for: Any = None, hosts: dict[str, list[str]] | None = None, *,
                 nats_secure: bool = True) -> None:
        """``nats_secure``: NATS as a province runs it (issue 12), nkeys and TLS on every connection."""
        self.console = console
        self.fed = Federation(workdir, specs or load_topology(), store_url_for, hosts=hosts, nats_secure=nats_secure)
        self.http = loopback_client(timeout=10)
        self.summary = Summary(nodes=len(self.fed.specs))
        self.entered: dict[str, dict[str, Decimal]] = {}
        self.passwords = {login: secrets.token_urlsafe(9) for login, *_ in DEMO_ACCOUNTS}

    def name(self, code: str) -> str:
        s = self.fed.by_code[code]
        return f"{s.name}（{code}）"

    async def get(self, code: str, path: str, **params: Any) -> Any:
        # The office's token: the check reads /api/v1/audit, which needs it; the public reads ignore it.
        r = await self.http.get(self.fed.by_code[code].url + path, params=params,
                                headers={"Authorization": f"Bearer {self.fed.tokens[code]}"})
        r.raise_for_status()
        return r.json()

    async def post(self, code: str, path: str, body: dict[str, Any]) -> Any:
        r = await self.http.post(self.fed.by_code[code].url + path, json=body,
                                 headers={"Authorization": f"Bearer {self.fed.tokens[code]}"})
        if r.status_code >= 400:
            raise RuntimeError(f"{self.name(code)} {path}: HTTP {r.status_code} {r.text}")
        return r.json()

    async def _up(self, pending: set[str]) -> set[str]:
        """Which of ``pending`` serve: a host answering /health serves every node it carries."""
        up: set[str] = set()
        for h in self.fed.hosts.values():
            if pending & set(h.codes):
                with contextlib.suppress(httpx.HTTPError):
                    if (await self.http.get(f"http://127.0.0.1:{h.http_port}/health")).status_code == 200:
                        up |= pending & set(h.codes)
        for code in pending - up:
            if not self.fed.by_code[code].hosted:
                with contextlib.suppress(httpx.HTTPError):
                    await self.get(code, "/health")
                    up.add(code)
        return up

    async def held(self, codes: set[str]) -> dict[str, int]:
        """Frameworks held by each of ``codes``: a host says for all its nodes at once (/nodes)."""
        out: dict[str, int] = {}
        for h in self.fed.hosts.values():
            if codes & set(h.codes):
                doc = (await self.http.get(f"http://127.0.0.1:{h.http_port}/nodes")).json()
                out.update({n["code"]: n["frameworks"] for n in doc["nodes"] if n["code"] in codes})
        for code in codes - set(out):
            with contextlib.suppress(httpx.HTTPError):
                out[code] = len((await self.get(code, "/api/v1/status"))["frameworks"])
        return out

    # ---------------------------------------------------------------- steps
    async def start(self) -> None:
        c = self.console
        c.print(f"[bold]数据目录[/] (data directory): {self.fed.workdir}")
        await asyncio.to_thread(self.fed.prepare)
        c.print(f"已为 {len(self.fed.specs)} 个节点生成密钥与证书 (keys and certificates issued)")
        await asyncio.to_thread(self.fed.start_nats)
        # Never the operator's URL or seed: it is unrestricted (it stays in the server's files).
        how = "，nkey 登录、全程 TLS" if self.fed.nats_secure else ""
        c.print(f"NATS JetStream 已启动，每个节点只能用自己的账号{how} (nats-server up; each node has its own account"
                f"{', nkeys and TLS' if how else ''})")
        t0 = time.monotonic()
        self.fed.start()
        pending = {s.code for s in self.fed.specs}
        with c.status("节点启动中 (starting nodes)…") as status:
            while pending:
                exited = self.fed.exited()
                if exited:
                    code = next(iter(exited))
                    who = code if code.startswith("host:") else self.name(code)
                    raise RuntimeError(f"节点 {who} 启动失败 (node failed to start):\n"
                                       f"{self.fed.log_tail(code)}")
                for code in await self._up(pending):
                    pending.discard(code)
                    s = self.fed.by_code[code]
                    if len(self.fed.specs) <= 30:
                        c.print(f"  [green]✓[/] {LEVEL_ZH[s.level]:>2} {self.name(code)} 已上线 (up) {s.url}")
                status.update(f"节点启动中：{len(self.fed.specs) - len(pending)}/{len(self.fed.specs)}")
                if time.monotonic() - t0 > max(90, len(self.fed.specs) / 5):
                    raise TimeoutError(f"节点未能全部上线 (nodes did not come up): {', '.join(sorted(pending)[:10])}")
                await asyncio.sleep(0.1)
        hosts = f"，其中 {sum(1 for s in self.fed.specs if s.hosted)} 个由 {len(self.fed.hosts)} 个节点主机承载" \
            if self.fed.hosts else ""
        c.print(f"{len(self.fed.specs)} 个节点已上线{hosts} (nodes up{', on node hosts' if hosts else ''}): "
                f"{time.monotonic() - t0:.1f} 秒")
        self.summary.nodes_up_seconds = time.monotonic() - t0

    def expected_frameworks(self, s: NodeSpec) -> int:
        return (1 if s.parent else 0) + (1 if s.children else 0)

    async def cascade(self, framework_file: Path, text: str | None = None) -> None:
        """``text``: the framework to publish, if not the file as it is (framework_for a topology)."""
        c = self.console
        prov = self.fed.province
        c.print(f"\n[bold]{prov.name}发布指标体系[/] (province publishes the framework): {framework_file.name}")
        if text is None:
            text = await asyncio.to_thread(framework_file.read_text, encoding="utf-8")
        await self.held({s.code for s in self.fed.specs})  # a host's first answer opens its nodes' stores
        t0 = time.monotonic()
        await self.post(prov.code, "/api/v1/admin/frameworks", {"yaml": text, "filename": framework_file.name})
        done: set[str] = set()
        levels_done: set[str] = set()
        limit = max(60, len(self.fed.specs) / 10)
        while len(done) < len(self.fed.specs):
            for code, n in (await self.held({s.code for s in self.fed.specs} - done)).items():
                if n >= self.expected_frameworks(self.fed.by_code[code]):
                    done.add(code)
            for level in ("city", "county", "township"):
                members = [s.code for s in self.fed.specs if s.level == level]
                if members and level not in levels_done and all(m in done for m in members):
                    levels_done.add(level)
                    c.print(f"  [green]✓[/] 下发至{LEVEL_ZH[level]}级：{len(members)} 个节点已验证、存储"
                            f"{'、分解并签发' if level != 'township' else ''} ({time.monotonic() - t0:.2f}s)")
            if time.monotonic() - t0 > limit:
                missing = [self.name(s.code) for s in self.fed.specs if s.code not in done]
                raise TimeoutError("指标体系未下发至 (framework did not reach): " + ", ".join(missing[:20]))
            await asyncio.sleep(0.05 if len(self.fed.specs) <= 30 else 0.5)
        self.summary.cascade_seconds = time.monotonic() - t0
        c.print(f"指标体系逐级下发完成 (cascade complete): {self.summary.cascade_seconds:.2f} 秒")

    async def accounts(self) -> None:
        """Every node gets one account per role, through its own API (the office's token)."""
        c = self.console
        for spec in self.fed.specs:
            first = spec.children[0] if spec.children else spec.code
            for login, name, roles, org in DEMO_ACCOUNTS:
                await self.post(spec.code, "/api/v1/admin/users", {
                    "login": login, "name": name, "roles": list(roles), "org": org,
                    "units": [first] if "unit" in roles else [], "password": self.passwords[login]})
        path = self.fed.workdir / "logins.txt"
        lines = [f"{login}\t{self.passwords[login]}\t{name}\t{'、'.join(roles)}{('（' + org + '）') if org else ''}"
                 for login, name, roles, org in DEMO_ACCOUNTS]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self.summary.accounts = len(DEMO_ACCOUNTS) * len(self.fed.specs)
        c.print(f"已为每个节点创建 {len(DEMO_ACCOUNTS)} 个角色账号，共 {self.summary.accounts} 个 "
                f"(accounts per role at every node; passwords in {path})")

    async def session(self, code: str, login: str) -> tuple[httpx.AsyncClient, str]:
        """Signed in as a person, through the sign-in form as a browser does; returns the client and the
        session's CSRF token."""
        client = loopback_client(base_url=self.fed.by_code[code].url, timeout=10)
        page = await client.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', page.text)
        if token is None:
            raise RuntimeError(f"{self.name(code)}: 登录页无 CSRF 令牌 (no CSRF token on the sign-in page)")
        r = await client.post("/login", data={"_csrf": token.group(1), "login": login,
                                              "password": self.passwords[login], "next": "/home"})
        home = await client.get(r.headers.get("location", "/home"))
        csrf = re.search(r'name="_csrf" value="([^"]+)"', home.text)
        if r.status_code != 303 or csrf is None:
            raise RuntimeError(f"{self.name(code)}: {login} 无法登录 (cannot sign in): HTTP {r.status_code}")
        return client, csrf.group(1)

    async def report(self) -> None:
        c = self.console
        c.print("\n[bold]乡镇报送数据[/] (townships: providers enter, a reviewer approves, the node signs)")
        townships = [s for s in self.fed.specs if s.level == "township"]
        t0 = time.monotonic()

        async def one(s: NodeSpec) -> None:
            fws = await self.get(s.code, "/api/v1/frameworks", cycle=CYCLE)
            fw = next(f for f in fws if f["role"] == "received")
            leaves = {i["code"]: i for i in fw["indicators"] if i["leaf"]}
            await self.post(s.code, "/api/v1/tasks/generate", {"cycle": CYCLE})
            vals: dict[str, Decimal] = {}
            for login in ("tjj", "sthj"):  # each provider enters its own indicators
                client, csrf = await self.session(s.code, login)
                try:
                    grids = (await client.get("/api/v1/entries", params={"cycle": CYCLE, "period": PERIOD})).json()
                    cells = [{"unit": cell["unit"], "key": cell["key"],
                              "value": str(sample_value(s.code, cell["key"], Decimal(leaves[cell["key"]]["target"]),
                                                        leaves[cell["key"]]["unit"]))}
                             for g in grids for cell in g["cells"]]
                    r = await client.post("/api/v1/entries/batch", headers={"x-csrf-token": csrf},
                                          json={"cycle": CYCLE, "period": PERIOD, "submit": True, "cells": cells})
                    if r.status_code != 201:
                        raise RuntimeError(f"{self.name(s.code)} {login}: HTTP {r.status_code} {r.text}")
                    vals.update({cell["key"]: Decimal(cell["value"]) for cell in cells})
                finally:
                    await client.aclose()
            client, csrf = await self.session(s.code, "shenhe")
            try:
                r = await client.post("/api/v1/entries/review", headers={"x-csrf-token": csrf}, json={
                    "cycle": CYCLE, "period": PERIOD, "decision": "approve",
                    "cells": [{"unit": s.code, "key": k} for k in sorted(vals)]})
                if r.status_code != 201:
                    raise RuntimeError(f"{self.name(s.code)} shenhe: HTTP {r.status_code} {r.text}")
            finally:
                await client.aclose()
            self.entered[s.code] = vals

        await asyncio.gather(*(one(s) for s in townships))
        self.summary.values = sum(len(v) for v in self.entered.values())
        c.print(f"  {len(townships)} 个乡镇：统计局、生态环境局填报 {self.summary.values} 个数值，审核人审核通过后签名上报 "
                "(values entered by providers, approved by a reviewer, signed, sent up)")
        prov = self.fed.province
        leaves = len(next(iter(self.entered.values())))
        reported: set[str] = set()
        while True:
            for s in self.fed.specs:
                if s.level in ("township",) or s.code in reported:
                    continue
                vals = await self.get(s.code, "/api/v1/values", cycle=CYCLE)
                if sum(1 for v in vals if v["source"] == "rolled_up" and v["period"] == PERIOD) >= leaves:
                    reported.add(s.code)
                    c.print(f"  [green]✓[/] {LEVEL_ZH[s.level]:>2} {self.name(s.code)} 汇总完成 (rolled up) "
                            f"({time.monotonic() - t0:.2f}s)")
            if prov.code in reported:
                break
            if time.monotonic() - t0 > 60:
                raise TimeoutError("汇总未到达省级 (roll-up did not reach the province)")
            await asyncio.sleep(0.02)
        self.summary.rollup_seconds = time.monotonic() - t0
        c.print(f"结果逐级汇总至省 (roll-up complete): {self.summary.rollup_seconds:.2f} 秒")

    async def report_by_office(self) -> None:
        """Every township's office enters its values through its node's API (bearer token): signed,
        sent up, rolled up at every level. The large topologies use it: a provider's sign-in per
        township (the 15-node demo's ``report``) would spend minutes on password hashing alone."""
        c = self.console
        townships = [s for s in self.fed.specs if s.level == "township"]
        c.print(f"\n[bold]乡镇报送数据[/] ({len(townships)} townships: each office enters, the node signs and sends up)")
        leaves: dict[str, dict[str, Any]] = {}
        for county in sorted({s.parent or "" for s in townships}):
            town = next(s for s in townships if s.parent == county)
            fw = next(f for f in await self.get(town.code, "/api/v1/frameworks", cycle=CYCLE) if f["role"] == "received")
            leaves[county] = {i["code"]: i for i in fw["indicators"] if i["leaf"]}
        for s in townships:
            self.entered[s.code] = {k: sample_value(s.code, k, Decimal(i["target"]), i["unit"])
                                    for k, i in leaves[s.parent or ""].items()}
        prov = self.fed.province
        prov_fw = (await self.get(prov.code, "/api/v1/frameworks"))[0]
        want = self.expected_rollup(prov.code, {i["code"]: i["rollup"] for i in prov_fw["indicators"] if i["leaf"]})
        t0 = time.monotonic()
        gate = asyncio.Semaphore(16)

        async def enter(s: NodeSpec) -> None:
            async with gate:
                await self.post(s.code, "/api/v1/admin/values", {
                    "cycle": CYCLE, "period": PERIOD, "values": {k: str(v) for k, v in self.entered[s.code].items()}})

        await asyncio.gather(*(enter(s) for s in townships))
        self.summary.values = sum(len(v) for v in self.entered.values())
        c.print(f"  {len(townships)} 个乡镇填报 {self.summary.values} 个数值 (values entered): {time.monotonic() - t0:.1f} 秒")
        while True:
            got = {v["indicator"]: Decimal(v["value"]) for v in await self.get(prov.code, "/api/v1/values", cycle=CYCLE)
                   if v["source"] == "rolled_up" and v["period"] == PERIOD}
            if got == want:
                break
            if time.monotonic() - t0 > max(60, len(self.fed.specs) / 5):
                raise TimeoutError("汇总未到达省级 (roll-up did not reach the province)")
            await asyncio.sleep(0.5)
        self.summary.rollup_seconds = time.monotonic() - t0
        c.print(f"结果逐级汇总至省，与乡镇数据按规则合成一致 (roll-up complete, equal to the townships' values "
                f"composed): {self.summary.rollup_seconds:.2f} 秒")

    async def departments(self) -> None:
        """A county appraises its departments too (分类考评): it publishes their framework, 统计局 enters
        their values, the reviewer approves, and they are ranked in their own class."""
        c = self.console
        text = (DATA_DIR / "department-framework.yaml").read_text(encoding="utf-8")
        for s in (s for s in self.fed.specs if s.departments):
            await self.post(s.code, "/api/v1/admin/frameworks", {"yaml": text, "filename": "department-framework.yaml"})
            await self.post(s.code, "/api/v1/tasks/generate", {"cycle": CYCLE})
            depts = {d["code"] for d in s.departments}
            client, csrf = await self.session(s.code, "tjj")
            try:
                grids = (await client.get("/api/v1/entries", params={"cycle": CYCLE, "period": PERIOD})).json()
                cells = [{"unit": cell["unit"], "key": cell["key"],
                          "value": str(min(Decimal(100), sample_value(cell["unit"], cell["key"], Decimal(95), "%")))}
                         for g in grids for cell in g["cells"] if cell["unit"] in depts]
                r = await client.post("/api/v1/entries/batch", headers={"x-csrf-token": csrf},
                                      json={"cycle": CYCLE, "period": PERIOD, "submit": True, "cells": cells})
                if r.status_code != 201:
                    raise RuntimeError(f"{self.name(s.code)} 部门数据: HTTP {r.status_code} {r.text}")
            finally:
                await client.aclose()
            client, csrf = await self.session(s.code, "shenhe")
            try:
                r = await client.post("/api/v1/entries/review", headers={"x-csrf-token": csrf}, json={
                    "cycle": CYCLE, "period": PERIOD, "decision": "approve",
                    "cells": [{"unit": x["unit"], "key": x["key"]} for x in cells]})
                if r.status_code != 201:
                    raise RuntimeError(f"{self.name(s.code)} 部门审核: HTTP {r.status_code} {r.text}")
            finally:
                await client.aclose()
            ranked = [x for x in await self.get(s.code, "/api/v1/rankings", cycle=CYCLE, period=PERIOD)
                      if x["unit"] in depts]
            if len(ranked) != len(depts):
                self.summary.problems.append(f"{s.code}: 部门排名缺失 (departments not ranked): {len(ranked)}/{len(depts)}")
            self.summary.departments_ranked += len(ranked)
            order = "、".join(f"{x['rank']}. {x['name']} {x['score']}" for x in sorted(ranked, key=lambda x: x["rank"]))
            c.print(f"  [green]✓[/] {self.name(s.code)} 县直部门分类考评 (departments ranked in their own class): {order}")

    # ---------------------------------------------------------------- the close of the year
    async def close_year(self) -> None:
        """The second half of the year on the sample data (issue 11): every node with units opens 公示 for
        a short window (WINDOW seconds here; days in an office), a township's liaison appeals one of its
        values at its county, an eligible reviewer upholds it, the county's 统计局 re-enters the value and
        the reviewer approves it, the office publishes again with the reason; a citizen leaves a comment
        that the unit answers; after the window every node finalises (counties first, so the corrected
        value rides up), rectification items are made from weak indicators, the results-use lists are
        signed, and a citizen downloads the province's proof and checks it with the province key."""
        c, s = self.console, self.summary
        c.print("\n[bold]年终：公示、申诉复核、终审上报、整改、结果运用、结果查询[/] (the close of the year)")
        publishers = [x for x in self.fed.specs if x.children or x.departments]
        now = int(time.time())
        closes = now + WINDOW
        classes: dict[str, list[str]] = {}
        for x in publishers:
            fws = await self.get(x.code, "/api/v1/frameworks", cycle=CYCLE)
            classes[x.code] = sorted({f["class"] for f in fws if f["role"] in ("issued", "internal")})
            for k in classes[x.code]:
                await self.post(x.code, "/api/v1/publications/publicity", {
                    "cycle": CYCLE, "period": PERIOD, "class": k, "opens_at": now - 60, "closes_at": closes,
                    "public": True})
                s.publications += 1
        c.print(f"  {len(publishers)} 个节点签名公示 {s.publications} 份结果，公示期 {WINDOW} 秒（演示） "
                f"(publicity opened, visible to the units and the public)")

        county = next(x for x in self.fed.specs if x.level == "county" and x.departments)
        town = county.children[0]  # the demo's liaison (danwei) speaks for the first unit
        await self.post(county.code, "/api/v1/tasks/generate", {"cycle": CYCLE})
        tasks = await self.get(county.code, "/api/v1/tasks", cycle=CYCLE)
        key = next(t["indicator"] for t in tasks if t["unit"] == town and t["provider"] == "统计局")
        published = next(p for p in await self.get(county.code, "/api/v1/publications", cycle=CYCLE)
                         if any(u["unit"] == town for u in p["units"]))
        liaison, csrf = await self.session(county.code, "danwei")
        try:
            r = await liaison.post("/api/v1/appeals", headers={"x-csrf-token": csrf}, json={
                "cycle": CYCLE, "period": PERIOD, "unit": town, "target": "value", "indicator": key,
                "reason": "统计口径有误：年末数据已由区统计局核定更正，请复核 (the year-end figure was revised)"})
            if r.status_code != 201:
                raise RuntimeError(f"{self.name(county.code)} 申诉: HTTP {r.status_code} {r.text}")
            appeal = r.json()
        finally:
            await liaison.aclose()
        await self.post(county.code, f"/api/v1/appeals/{appeal['id']}/assign", {"reviewer": "shenhe"})
        reviewer, csrf = await self.session(county.code, "shenhe")
        try:
            r = await reviewer.post(f"/api/v1/appeals/{appeal['id']}/decide", headers={"x-csrf-token": csrf}, json={
                "decision": "upheld", "reason": "核对统计年报，原值有误，复核成立 (checked against the yearbook: upheld)"})
            if r.status_code not in (200, 201):
                raise RuntimeError(f"{self.name(county.code)} 复核: HTTP {r.status_code} {r.text}")
        finally:
            await reviewer.aclose()
        corrected = (Decimal(appeal["before"]["value"]) * Decimal("1.05")).quantize(Decimal("0.01"))
        provider, csrf = await self.session(county.code, "tjj")
        try:
            r = await provider.post("/api/v1/entries/batch", headers={"x-csrf-token": csrf}, json={
                "cycle": CYCLE, "period": PERIOD, "submit": True,
                "cells": [{"unit": town, "key": key, "value": str(corrected), "comment": f"申诉 #{appeal['id']} 更正"}]})
            if r.status_code != 201:
                raise RuntimeError(f"{self.name(county.code)} 更正: HTTP {r.status_code} {r.text}")
        finally:
            await provider.aclose()
        reviewer, csrf = await self.session(county.code, "shenhe")
        try:
            r = await reviewer.post("/api/v1/entries/review", headers={"x-csrf-token": csrf}, json={
                "cycle": CYCLE, "period": PERIOD, "decision": "approve", "cells": [{"unit": town, "key": key}]})
            if r.status_code != 201:
                raise RuntimeError(f"{self.name(county.code)} 更正审核: HTTP {r.status_code} {r.text}")
        finally:
            await reviewer.aclose()
        await self.post(county.code, "/api/v1/publications/publicity", {
            "cycle": CYCLE, "period": PERIOD, "class": published["class"], "opens_at": now - 60, "closes_at": closes,
            "public": True, "reason": f"申诉 #{appeal['id']} 复核成立，{key} 已更正 (appeal upheld, value corrected)"})
        after = next(a for a in await self.get(county.code, "/api/v1/appeals", cycle=CYCLE) if a["id"] == appeal["id"])
        if after["status"] != "upheld" or after["after"].get("value") != str(corrected):
            s.problems.append(f"{county.code}: 申诉更正未体现在新的公示中 (the correction is not in the new publicity): "
                              f"{after['status']} {after['after']}")
        s.appeals += 1
        c.print(f"  [green]✓[/] {self.name(town)} 对 {key} 提出申诉 → 审核人复核成立 → 统计局更正 {appeal['before']['value']}"
                f" → {corrected} → 审核通过 → 重新公示 (appeal upheld and corrected through entry and review); "
                f"名次 {appeal['before'].get('rank')} → {after['after'].get('rank')}")

        await self.public_comment(county, town)

        wait = closes - time.time() + 1
        if wait > 0:
            c.print(f"  等待公示期结束 (waiting {wait:.0f} s for the window to close)…")
            await asyncio.sleep(wait)
        for level in ("county", "city", "province"):
            for x in (x for x in publishers if x.level == level):
                for k in classes[x.code]:
                    await self.post(x.code, "/api/v1/publications/final", {"cycle": CYCLE, "period": PERIOD, "class": k})
                    s.finals += 1
            await asyncio.sleep(2)  # the corrected county bundle reaches the city before it finalises
        c.print(f"  [green]✓[/] {s.finals} 份结果终审、签名、冻结，并随状态报告上报 (final, signed, frozen, reported up)")

        deadline = int(time.time()) + 90 * 86400
        for x in publishers:
            made = await self.post(x.code, "/api/v1/rectifications", {"from": "weak", "cycle": CYCLE, "deadline": deadline})
            s.rectification_items += len(made)
            lists = await self.post(x.code, "/api/v1/use-lists", {"cycle": CYCLE})
            s.use_lists += len(lists) if isinstance(lists, list) else 1
        c.print(f"  [green]✓[/] 薄弱指标生成整改事项 {s.rectification_items} 项；结果运用名单 {s.use_lists} 份"
                "（签名，可导出 Excel/CSV） (rectification items from weak indicators; signed results-use lists)")
        await self.feedback(publishers)
        await self.check_public()

    async def feedback(self, publishers: list[NodeSpec]) -> None:
        """绩效报告: every node writes each of its units a feedback report (HTML and PDF) from its final results."""
        s, c = self.summary, self.console
        t0 = time.monotonic()
        for x in publishers:
            base = self.fed.by_code[x.code].url
            auth = {"Authorization": f"Bearer {self.fed.tokens[x.code]}"}
            r = await self.http.post(f"{base}/feedback/generate", data={"cycle": CYCLE}, headers=auth, timeout=300)
            if r.status_code != 200:
                raise RuntimeError(f"{self.name(x.code)} 绩效报告: HTTP {r.status_code} {r.text[:300]}")
            unit = x.children[0] if x.children else x.departments[0]["code"]
            pdf = await self.http.get(f"{base}/feedback/{CYCLE}/{unit}.pdf", headers=auth, timeout=60)
            if pdf.status_code != 200 or not pdf.content.startswith(b"%PDF"):
                s.problems.append(f"{x.code}: {unit} 的绩效报告 PDF 无法取得 (no PDF): HTTP {pdf.status_code}")
            s.feedback_reports += len(x.children) + len(x.departments)
        s.feedback_seconds = time.monotonic() - t0
        c.print(f"  [green]✓[/] 绩效报告 {s.feedback_reports} 份（网页与 PDF），{s.feedback_seconds:.1f} 秒 "
                "(a feedback report for every unit, HTML and PDF)")

    async def public_comment(self, county: NodeSpec, town: str) -> None:
        """公众评议: a citizen's comment on the public form (no account), answered by the unit."""
        base = self.fed.by_code[county.code].url
        async with loopback_client(base_url=base, timeout=10, headers={"Origin": base}) as citizen:
            form = await citizen.get(f"/public/comment/{town}")
            token = re.search(r'name="token" value="([^"]+)"', form.text)
            if token is None:
                raise RuntimeError(f"{self.name(county.code)}: 评议表单无令牌 (no form token)")
            r = await citizen.post(f"/public/comment/{town}", data={
                "token": token.group(1), "body": "建议公开本街道民生项目的进度，方便群众监督。", "contact": "", "website": ""})
            if r.status_code != 200:
                raise RuntimeError(f"{self.name(county.code)} 公众评议: HTTP {r.status_code}")
        liaison, csrf = await self.session(county.code, "danwei")
        try:
            comments = (await liaison.get("/api/v1/comments", params={"cycle": CYCLE})).json()
            for cm in comments:
                if cm["status"] == "new":
                    await liaison.post(f"/comments/{cm['id']}/answer", data={
                        "_csrf": csrf, "answer": "感谢建议，项目进度将每季度在街道公开栏和网站公开。"})
            answered = [cm for cm in (await liaison.get("/api/v1/comments", params={"cycle": CYCLE})).json()
                        if cm["status"] == "answered"]
        finally:
            await liaison.aclose()
        if not answered:
            self.summary.problems.append(f"{county.code}: 公众评议未得到答复 (the public comment was not answered)")
        self.summary.comments_answered += len(answered)
        self.console.print(f"  [green]✓[/] 公众评议 {len(answered)} 条已由 {self.name(town)} 逐条答复 (public comments answered)")

    async def check_public(self) -> None:
        """A citizen on the province's public site: the final ranking, and its proof checked offline with
        the province's key alone (sync/publication.py verify_with_key, as `appraise public verify`)."""
        from sync.publication import verify_with_key

        s, c = self.summary, self.console
        key = public_from_hex(self.fed.root_public, "root")
        for x in self.fed.specs:
            if not (x.children or x.departments):
                continue
            base = self.fed.by_code[x.code].url
            for p in await self.get(x.code, "/api/v1/publications", cycle=CYCLE):
                if p["state"] != "final":
                    continue
                proof = await self.http.get(f"{base}/publication/proof/{p['digest']}",
                                            headers={"Authorization": f"Bearer {self.fed.tokens[x.code]}"})
                try:
                    checked = verify_with_key(proof.content, key)
                except EnvelopeError as exc:
                    s.problems.append(f"{x.code}: 终审结果证明未通过核验 (the proof does not verify): {exc}")
                    continue
                s.proofs_verified += 1
                s.rollups_in_proofs += checked.rollups
        prov = self.fed.province
        page = await self.http.get(prov.url + "/public")
        if page.status_code != 200 or "终审" not in page.text:
            s.problems.append(f"省级公开结果页无终审结果 (no final results on the public site): HTTP {page.status_code}")
        c.print(f"  [green]✓[/] 公众在结果查询网站看到终审结果；{s.proofs_verified} 份证明文件仅凭省级公钥离线核验通过"
                f"（其中重算逐级汇总 {s.rollups_in_proofs} 次） (proofs verified offline with the province key alone)")
        c.print(f"  结果查询 (public results): {prov.url}/public · 核验 (verify): appraise public verify FILE "
                f"--root-key {self.fed.root_public}")

    # ---------------------------------------------------------------- check
    def expected_rollup(self, code: str, rules: dict[str, str]) -> dict[str, Decimal]:
        s = self.fed.by_code[code]
        if s.level == "township":
            return self.entered[code]
        kids = [self.expected_rollup(k, rules) for k in s.children]
        return {ind: round_value(compose(rule, [k[ind] for k in kids])) for ind, rule in rules.items()}

    async def check(self) -> None:
        c = self.console
        s = self.summary
        root = root_identity(self.fed.province.code, self.fed.province.name, public_from_hex(self.fed.root_public, "root"))
        now = int(time.time())
        gate = asyncio.Semaphore(16)

        async def one(spec: NodeSpec) -> None:
            async with gate:
                st = await self.get(spec.code, "/api/v1/status")
                if len(st["frameworks"]) < self.expected_frameworks(spec):
                    s.problems.append(f"{spec.code}: 缺少指标体系 (missing frameworks)")
                if st["counts"]["rejected"]:
                    s.problems.append(f"{spec.code}: 有 {st['counts']['rejected']} 条被拒绝的消息 (rejected messages)")
                audit = await self.get(spec.code, "/api/v1/audit", limit=1)
                if not audit["intact"]:
                    s.problems.append(f"{spec.code}: 审计日志不完整 (audit log broken): {audit['first_break']}")
                for fw in await self.get(spec.code, "/api/v1/frameworks", envelopes=True):
                    try:
                        _, digest, msg = verify_framework_chain(base64.b64decode(fw["cascade"]), root, now,
                                                                internal=fw["role"] == "internal")
                    except EnvelopeError as exc:
                        s.problems.append(f"{spec.code}: 指标体系 {fw['digest'][:12]} 验证失败: {exc}")
                        continue
                    if digest != fw["digest"]:
                        s.problems.append(f"{spec.code}: 指标体系摘要不符 (digest mismatch)")
                    s.signatures_verified += len(msg.frameworks) + len(msg.certificate_chain)

        await asyncio.gather(*(one(spec) for spec in self.fed.specs))
        prov_fw = (await self.get(self.fed.province.code, "/api/v1/frameworks"))[0]
        rules = {i["code"]: i["rollup"] for i in prov_fw["indicators"] if i["leaf"]}
        expected = self.expected_rollup(self.fed.province.code, rules)
        got = {v["indicator"]: Decimal(v["value"]) for v in
               await self.get(self.fed.province.code, "/api/v1/values", cycle=CYCLE)
               if v["source"] == "rolled_up" and v["period"] == PERIOD}
        for ind, value in expected.items():
            if got.get(ind) != value:
                s.problems.append(f"省级 {ind} 汇总值 {got.get(ind)} ≠ 乡镇数据按规则合成 {value} (province value mismatch)")
        await self.check_gateway()
        await self.check_trust()
        rss, uss = [], []
        for p in self.fed.procs.values():
            try:
                info = psutil.Process(p.pid).memory_full_info()
            except psutil.Error:
                continue
            rss.append(info.rss / 2**20)
            uss.append(info.uss / 2**20)  # what the process alone costs; RSS counts shared libraries too
        if rss:
            s.max_node_rss_mb, s.mean_node_rss_mb, s.max_node_uss_mb = max(rss), sum(rss) / len(rss), max(uss)
        verdict = "[green]通过[/] (passed)" if s.ok else "[red]未通过[/] (failed)"
        c.print(f"\n[bold]核验[/] (check): 省级汇总值与乡镇报送数据一致、全部签名验证 {s.signatures_verified} 次 … {verdict}")
        for problem in s.problems:
            c.print(f"  [red]✗[/] {problem}")

    async def check_trust(self) -> None:
        """What every ancestor knows of the nodes below it, from what they signed: every roll-up it took
        was recomputed from its sources, every descendant holds the framework in force, and every
        child's audit chain head is anchored at its parent (docs/design.md §3.4a, §4.3)."""
        s, c = self.summary, self.console
        prov = self.fed.province
        below = len(self.fed.specs) - 1

        async def states() -> dict[str, Any]:
            return {d["node"]: d for d in (await self.get(prov.code, "/api/v1/sync"))["descendants"]}

        deadline = time.monotonic() + 60  # reports go up within a heartbeat or two; a loaded machine is slower
        seen = await states()
        while (len(seen) < below or any(d["state"] != "current" for d in seen.values())) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            seen = await states()
        s.descendants_current = sum(d["state"] == "current" for d in seen.values())
        if s.descendants_current != below:
            late = sorted(f"{n}:{d['state']}" for n, d in seen.items() if d["state"] != "current")
            s.problems.append(f"省级所见下级状态未全部现行 (not every descendant current): {', '.join(late)[:300]}")
        for spec in self.fed.specs:
            if not spec.children:
                continue
            r = await self.http.get(spec.url + "/api/v1/audit", params={"action": "accept.results", "limit": 1000},
                                    headers={"Authorization": f"Bearer {self.fed.tokens[spec.code]}"})
            taken = r.json().get("entries", []) if r.status_code == 200 else []
            # each roll-up taken was recomputed; the province also recomputed the counties' inside each city's
            s.rollups_recomputed += sum(1 + (e["detail"].get("approved", 0) if spec.parent is None else 0)
                                        for e in taken if e["detail"].get("approved"))
            kids = {d["node"]: d for d in (await self.get(spec.code, "/api/v1/sync"))["descendants"]}
            s.anchors_held += sum(1 for child in spec.children if kids.get(child, {}).get("audit_seq", 0) > 0)
        if s.anchors_held != below:
            s.problems.append(f"上级锚定的审计链头 {s.anchors_held}/{below} (audit heads anchored at the parents)")
        c.print(f"上级核算 (recomputed by the level above): {s.rollups_recomputed} 个汇总结果包按签名来源重算一致；"
                f"省级所见 {s.descendants_current}/{below} 个下级持有现行指标体系；"
                f"{s.anchors_held} 个节点的审计链头由上级锚定 (audit heads anchored)")

    async def check_gateway(self) -> None:
        """What every gateway promises: schemas for every body, problem+json for every error with a
        stable code, and the security headers on every response."""
        s, c = self.summary, self.console
        prov = self.fed.province
        doc = await self.get(prov.code, "/schema/openapi.json")
        ops = [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]
        s.openapi_operations, s.openapi_schemas = len(ops), len(doc["components"]["schemas"])
        for method, path, op in ops:
            content = op.get("requestBody", {}).get("content", {})
            # a JSON body names its component schema; a document in another system's format (the import)
            # states its type per media type
            if method == "post" and (not content or any("$ref" not in json.dumps(m) and "type" not in m.get("schema", {})
                                                         for m in content.values())):
                s.problems.append(f"OpenAPI: {path} 的请求体没有模式 (request body without a schema)")
        town = next(x for x in self.fed.specs if x.level == "township")
        bad = await self.http.post(town.url + "/api/v1/admin/values",
                                   json={"cycle": CYCLE, "period": PERIOD, "values": {"ZZ9": "1"}},
                                   headers={"Authorization": f"Bearer {self.fed.tokens[town.code]}"})
        problem = bad.json() if bad.headers.get("content-type", "").startswith("application/problem+json") else {}
        if bad.status_code != 422 or problem.get("code") != "entry.unknown_indicator":
            s.problems.append(f"{town.code}: 未知指标应答 422 problem+json，实为 {bad.status_code} {bad.text[:200]}")
        page = await self.http.get(prov.url + "/")
        csp = page.headers.get("content-security-policy", "")
        if "script-src 'self'" not in csp or "unsafe-inline" in csp or page.headers.get("x-frame-options") != "DENY":
            s.problems.append(f"{prov.code}: 页面缺少安全响应头 (security headers missing): {dict(page.headers)}")
        c.print(f"网关 (gateway): OpenAPI {s.openapi_operations} 个操作、{s.openapi_schemas} 个模式；错误以 "
                f"problem+json 返回（如 {problem.get('code', '?')}）；页面带 CSP 等安全响应头")

    async def show(self) -> None:
        prov = self.fed.province
        table = Table(title=f"{prov.name} {CYCLE} 年度市（州）绩效考评排名 (rankings)")
        for col in ("名次", "单位", "得分"):
            table.add_column(col)
        for r in await self.get(prov.code, "/api/v1/rankings", cycle=CYCLE, period=PERIOD):
            table.add_row(str(r["rank"]), f"{r['name']}（{r['unit']}）", r["score"])
        self.console.print(table)
        drill = await self.get(prov.code, "/api/v1/drilldown", cycle=CYCLE, period=PERIOD, indicator="A1", depth=3)
        t = Table(title="指标下钻 A1 地区生产总值（亿元）(drill-down to townships)")
        for col in ("层级", "单位", "数值", "来源"):
            t.add_column(col)
        for r in sorted(drill["rows"], key=lambda r: r["unit"]):
            t.add_row(LEVEL_ZH.get(r["level"], r["level"]), f"{'  ' * (len(r['unit']) // 3)}{r['name']}（{r['unit']}）",
                      r["value"], r["source"])
        self.console.print(t)

    def show_logins(self) -> None:
        t = Table(title="登录 (sign in): 每个节点网关的 /login，账号相同、密码见下 (the same accounts at every node)")
        for col in ("用户名 login", "密码 password", "姓名", "角色 roles"):
            t.add_column(col)
        for login, name, roles, org in DEMO_ACCOUNTS:
            t.add_row(login, self.passwords[login], name, "、".join(roles) + (f"（{org}）" if org else ""))
        self.console.print(t)
        for spec in [next(s for s in self.fed.specs if s.level == level) for level in LEVEL_ZH]:
            self.console.print(f"  {LEVEL_ZH[spec.level]} {self.name(spec.code)}: {spec.url}/login")

    async def close(self) -> None:
        await self.http.aclose()
        await asyncio.to_thread(self.fed.stop_all)

