"""Rectification (整改) and public comments (公众评议), the pure part: weak indicators read from a
publication, the item states and their moves, overdue, carrying into next year, the checks of what
people type, and the public comment form's token. No I/O: the service
(nodes/services/rectification.py) hands in what the store holds.

An item moves ``open`` → (the unit asks for closure with evidence and a note) ``review`` →
(the office accepts) ``done``, or back to ``open`` with the office's reason; an ``open`` or
``review`` item of cycle N may be carried into cycle N+1 (``carried``): a new item there names it
in ``carried_from`` and is one of next year's tasks (Beijing lists rectification measures as next
year's performance tasks). An item is overdue while it is ``open`` past its deadline.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from aggregator.errors import BadInput, Conflict
from sync.publication import Published

OPEN, REVIEW, DONE, CARRIED = "open", "review", "done", "carried"
STATUSES = (OPEN, REVIEW, DONE, CARRIED)
STATUS_ZH = {OPEN: "整改中", REVIEW: "待验收", DONE: "已销号", CARRIED: "已转入下年"}
STATUS_EN = {OPEN: "open", REVIEW: "closure requested", DONE: "closed", CARRIED: "carried into next year"}
SOURCES = ("weak", "appeal", "comment", "office", "carried")
SOURCE_ZH = {"weak": "薄弱指标", "appeal": "申诉复核", "comment": "公众评议", "office": "绩效办交办", "carried": "上年结转"}
SOURCE_EN = {"weak": "weak indicator", "appeal": "appeal", "comment": "public comment", "office": "by the office",
             "carried": "carried from last year"}
DECIDED_APPEALS = ("upheld", "partly", "rejected")
ONE = Decimal(1)
WEAK_PER_UNIT = 3  # at most this many weak indicators per unit become items at once

MAX_TITLE = 200
MAX_TEXT = 2000  # a measure, a closure note, an answer
MAX_COMMENT = 1000
MAX_CONTACT = 128
MAX_EVIDENCE = 20  # files on one item
FORM_TOKEN_SECONDS = 3600  # a public comment form stays valid this long after it was shown


# ------------------------------------------------------------------ weak indicators

@dataclass(frozen=True)
class Weak:
    """One indicator of one unit that scored a low share of its weight, below its class's average."""

    unit: str
    name: str
    indicator: str
    share: Decimal  # score / weight, 0–1
    average: Decimal  # the class's average share of the same indicator
    score: Decimal
    weight: Decimal

    def title(self, indicator_name: str = "") -> str:
        label = f"{indicator_name}（{self.indicator}）" if indicator_name else self.indicator
        return (f"{label}得分率 {_pct(self.share)}，低于同类平均 {_pct(self.average)} "
                f"(scored {_pct(self.share)} of its weight, class average {_pct(self.average)})")


def _pct(x: Decimal) -> str:
    return f"{(x * 100).quantize(Decimal('0.1'))}%"


def _shares(parts: object) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """indicator → (share, score, weight) of the appraised parts with a weight (an explanation's ``parts``)."""
    out: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    if not isinstance(parts, list):
        return out
    for p in parts:
        if not isinstance(p, dict):
            continue
        interim = p.get("interim")
        if isinstance(interim, dict) and interim.get("rule") == "none":  # not appraised in this period
            continue
        try:
            weight, score = Decimal(str(p["weight"])), Decimal(str(p["score"]))
        except (KeyError, ArithmeticError, ValueError):
            continue
        if weight > 0:
            out[str(p["indicator"])] = (score / weight, score, weight)
    return out


def weak_indicators(pub: Published, per_unit: int = WEAK_PER_UNIT) -> list[Weak]:
    """Per unit, its indicators with the lowest share of their weight that lie below the class
    average share (the publication is one class) and short of full marks, lowest first, at most
    ``per_unit`` each. A unit
    not scored (it reported nothing) has no parts and no weak indicators: its gap is the absence."""
    shares = {f.unit: _shares(f.explain().get("parts")) for f in pub.units}
    totals: dict[str, list[Decimal]] = {}
    for per in shares.values():
        for code, (share, _, _) in per.items():
            totals.setdefault(code, []).append(share)
    average = {code: sum(v, Decimal(0)) / len(v) for code, v in totals.items()}
    out: list[Weak] = []
    for f in pub.units:
        below = [Weak(f.unit, f.name, code, share, average[code], score, weight)
                 for code, (share, score, weight) in shares[f.unit].items() if share < min(average[code], ONE)]
        below.sort(key=lambda w: (w.share, w.share - w.average, w.indicator))
        out.extend(below[:per_unit])
    return out


# ------------------------------------------------------------------ states

def overdue(status: str, deadline: int, now: int) -> bool:
    return status == OPEN and deadline > 0 and now >= deadline


def check_move(status: str, to: str, item: int) -> None:
    """The moves an item may make (module docstring); any other is a 409 naming the state."""
    allowed = {OPEN: (REVIEW, CARRIED), REVIEW: (DONE, OPEN, CARRIED), DONE: (), CARRIED: ()}
    if to not in allowed.get(status, ()):
        raise Conflict(f"整改事项 {item} 当前为「{STATUS_ZH.get(status, status)}」，不能改为「{STATUS_ZH.get(to, to)}」 "
                       f"(item {item} is {STATUS_EN.get(status, status)}: cannot become {STATUS_EN.get(to, to)})",
                       code="rectification.state")


def next_cycle(cycle: str) -> str:
    return str(int(cycle) + 1)


# ------------------------------------------------------------------ what people type

def text(value: str, field: str, limit: int = MAX_TEXT, *, required: bool = True) -> str:
    value = value.replace("\r\n", "\n").strip()
    if required and not value:
        raise BadInput(f"请填写{field} ({field} is required)", code="rectification.text_missing")
    if len(value) > limit:
        raise BadInput(f"{field}不能超过 {limit} 个字符，现为 {len(value)} (at most {limit} characters)",
                       code="rectification.text_too_long")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise BadInput(f"{field}含有控制字符 (control characters are not allowed)", code="rectification.text_control")
    return value


def deadline(value: int, now: int) -> int:
    if not now < value < now + 3 * 366 * 86400:
        raise BadInput("整改期限须在今天之后、三年之内 (the deadline must lie after today and within three years)",
                       code="rectification.deadline")
    return value


def evidence(shas: Iterable[str]) -> list[str]:
    out = list(dict.fromkeys(shas))
    if len(out) > MAX_EVIDENCE:
        raise BadInput(f"整改佐证材料至多 {MAX_EVIDENCE} 个文件 (at most {MAX_EVIDENCE} evidence files)",
                       code="rectification.evidence_many")
    return out


def comment_body(body: str) -> str:
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise BadInput("请填写意见内容 (the comment is empty)", code="comments.empty")
    if len(body) > MAX_COMMENT:
        raise BadInput(f"意见内容不能超过 {MAX_COMMENT} 个字，现为 {len(body)} 个 (at most {MAX_COMMENT} characters)",
                       code="comments.too_long")
    if any(ord(c) < 32 and c not in "\n\t" for c in body):
        raise BadInput("意见内容含有控制字符 (control characters are not allowed)", code="comments.control")
    return body


def contact(value: str) -> str:
    value = value.strip()
    if len(value) > MAX_CONTACT or any(ord(c) < 32 for c in value):
        raise BadInput(f"联系方式至多 {MAX_CONTACT} 个字符，不含控制字符 (contact: at most {MAX_CONTACT} characters)",
                       code="comments.contact")
    return value


# ------------------------------------------------------------------ the public form

def sender_of(key: bytes, address: str) -> str:
    """What a comment keeps of where it came from: a keyed hash of the address (the key is the
    node's, so the small IPv4 space cannot be searched back from a stored value), good for rate
    limits and nothing else. An IPv6 address counts as its /64, which one subscriber holds whole."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        where = address
    else:
        where = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)
    return hmac.new(key, b"sender\0" + where.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def form_token(key: bytes, unit: str, now: int) -> str:
    """The public form's token: when it was shown and for which unit, under the node's key. A post
    needs one that is fresh, so a script must fetch the form before each post (with the rate limit
    per address and per unit, it bounds what a flood costs), and a foreign page cannot post blind."""
    mac = hmac.new(key, f"form\0{unit}\0{now}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{now}.{mac}"


def check_form_token(key: bytes, unit: str, token: str, now: int) -> None:
    issued, _, mac = token.partition(".")
    if not issued.isdigit() or len(issued) > 12:
        raise BadInput("表单已失效，请刷新页面后重新提交 (the form has expired: reload it)", code="comments.form_token")
    want = form_token(key, unit, int(issued)).partition(".")[2]
    if not hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), want.encode()):
        raise BadInput("表单已失效，请刷新页面后重新提交 (the form has expired: reload it)", code="comments.form_token")
    if not int(issued) <= now < int(issued) + FORM_TOKEN_SECONDS:
        raise BadInput("表单已失效，请刷新页面后重新提交 (the form has expired: reload it)", code="comments.form_token")
