"""What the rectification pages and the task book's rectification section show of an item (shared by
gateway/controllers/rectification.py and the /tasks page of gateway/controllers/intake.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request

from aggregator.errors import BadInput
from gateway.deps import node_state
from gateway.i18n import language
from nodes import rectification as rules
from nodes.accounts import Principal
from nodes.services.rectification import Item, RectificationService

CST = 8 * 3600


def cst(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d %H:%M") if ts else ""


def cst_date(ts: int) -> str:
    return datetime.fromtimestamp(ts + CST, UTC).strftime("%Y-%m-%d") if ts else ""


def parse_date(text: str, field: str) -> int:
    """A date typed on a page (China time): the start of that day."""
    try:
        d = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadInput(f"{field} 应为日期，如 2027-01-20 (a date, e.g. 2027-01-20)", code="form.date") from None
    return int(d.timestamp()) - CST


def item_row(i: Item, lang: str) -> dict[str, Any]:
    r = i.record
    return {"id": r.id, "cycle": r.cycle, "unit": r.unit, "unit_name": i.unit_name, "title": r.title,
            "source": (rules.SOURCE_EN if lang == "en" else rules.SOURCE_ZH).get(r.source, r.source),
            "ref": r.ref, "measure": r.measure, "owner": r.owner, "deadline": cst_date(r.deadline),
            "status": r.status, "status_text": (rules.STATUS_EN if lang == "en" else rules.STATUS_ZH).get(r.status),
            "overdue": i.overdue, "evidence": list(r.evidence), "closure": r.closure,
            "closed": cst(r.closed_at), "closed_by": r.closed_by, "carried_from": r.carried_from}


async def rectification_tasks(request: Request[Any, Any, Any], cycle: str, who: Principal) -> list[dict[str, Any]]:
    """The task book's section of rectification tasks (items carried into ``cycle``), for /tasks."""
    if not who.can("rectification.view"):
        return []
    rect: RectificationService = node_state(request)["rectification"]
    lang = language(request)
    return [item_row(i, lang) for i in await rect.tasks_of(cycle, who)]
