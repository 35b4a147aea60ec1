"""Assessments (考评录入): what an evaluating node records about its units besides reported values —
rater scores, survey results, task-list milestones, bonus/deduction/negative-list/veto events and
last cycle's values. Parsed strictly here; turned into :class:`aggregator.inputs.UnitInputs`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from aggregator.errors import BadInput
from aggregator.framework import valid_indicator_code
from aggregator.numbers import NumberError, parse_decimal, to_text

KINDS = ("ratings", "surveys", "milestones", "events", "previous")
MAX_ITEMS = 500  # per list or mapping; the gateway's schema (gateway/schemas.py Many) states the same


class AssessmentError(BadInput):
    """Names the field and what is wrong (zh-CN first); ``code``: ``assessment.*`` (``number.*`` for a bad number)."""

    default_code = "input.assessment"


def _num(value: Any, where: str) -> Decimal:
    try:
        return parse_decimal(value, where)
    except NumberError as exc:
        raise AssessmentError(str(exc), code=exc.code) from None


def _code(value: Any, where: str) -> str:
    if not isinstance(value, str) or not valid_indicator_code(value):
        raise AssessmentError(f"{where}: 编码无效 {value!r} (invalid code)", code="assessment.bad_code")
    return value


def _day(value: Any, where: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise AssessmentError(f"{where}: 日期应为 YYYY-MM-DD，实为 {value!r} (expected a date)",
                              code="assessment.bad_date") from None


def _mapping(data: Any, where: str, most: int = MAX_ITEMS) -> Mapping[str, Any]:
    if not isinstance(data, dict) or len(data) > most:
        raise AssessmentError(f"{where}: 应为 指标编码: 内容 的映射 (expected indicator: content)",
                              code="assessment.not_indicator_map")
    return data


def normalise(body: Mapping[str, Any], most: int = MAX_ITEMS) -> dict[str, Any]:
    """Validate an assessment document and return it in canonical JSON-ready form; ``most``: items per
    list or mapping."""
    unknown = sorted(set(body) - set(KINDS))
    if unknown:
        raise AssessmentError(f"未知的录入项 {', '.join(unknown)}；可用：{', '.join(KINDS)} (unknown fields)",
                              code="assessment.unknown_fields")
    out: dict[str, Any] = {}
    if "ratings" in body:
        out["ratings"] = {}
        for k, scores in _mapping(body["ratings"], "ratings", most).items():
            if not isinstance(scores, list) or not scores or len(scores) > most:
                raise AssessmentError(f"ratings.{k}: 应为评分列表 (expected a list of scores)", code="assessment.not_score_list")
            vals = [_num(s, f"ratings.{k}[{i}]") for i, s in enumerate(scores)]
            if any(not 0 <= v <= 100 for v in vals):
                raise AssessmentError(f"ratings.{k}: 评分应在 0 到 100 之间 (scores are 0..100)", code="assessment.score_range")
            out["ratings"][_code(k, "ratings")] = [to_text(v) for v in vals]
    if "surveys" in body:
        out["surveys"] = {}
        for k, groups in _mapping(body["surveys"], "surveys", most).items():
            g = _mapping(groups, f"surveys.{k}", most)
            scores = {str(name): _num(v, f"surveys.{k}.{name}") for name, v in g.items()}
            if any(not 0 <= v <= 100 for v in scores.values()):
                raise AssessmentError(f"surveys.{k}: 满意度应在 0 到 100 之间 (scores are 0..100)", code="assessment.score_range")
            out["surveys"][_code(k, "surveys")] = {n: to_text(v) for n, v in scores.items()}
    if "milestones" in body:
        out["milestones"] = {}
        for k, items in _mapping(body["milestones"], "milestones", most).items():
            if not isinstance(items, list) or len(items) > most:
                raise AssessmentError(f"milestones.{k}: 应为节点列表 (expected a list)", code="assessment.not_a_list")
            ms = []
            for i, m in enumerate(items):
                where = f"milestones.{k}[{i}]"
                if not isinstance(m, dict):
                    raise AssessmentError(f"{where}: 应为 {{code, due, done, quality}} (expected a mapping)",
                                          code="assessment.not_a_mapping")
                quality = _num(m.get("quality", 1), f"{where}.quality")
                if not 0 <= quality <= 1:
                    raise AssessmentError(f"{where}.quality: 质量应在 0 到 1 之间 (quality is 0..1)",
                                          code="assessment.quality_range")
                ms.append({"code": _code(m.get("code"), f"{where}.code"),
                           "due": _day(m.get("due"), f"{where}.due").isoformat(),
                           "done": _day(m["done"], f"{where}.done").isoformat() if m.get("done") else None,
                           "quality": to_text(quality)})
            out["milestones"][_code(k, "milestones")] = ms
    if "events" in body:
        events = body["events"]
        if not isinstance(events, list) or len(events) > most:
            raise AssessmentError("events: 应为事件列表 [{item, points, note}] (expected a list)", code="assessment.not_a_list")
        out["events"] = []
        for i, e in enumerate(events):
            if not isinstance(e, dict):
                raise AssessmentError(f"events[{i}]: 应为 {{item, points, note}} (expected a mapping)",
                                      code="assessment.not_a_mapping")
            points = _num(e.get("points", 0), f"events[{i}].points")
            if points < 0:
                raise AssessmentError(f"events[{i}].points: 分值不能为负 (points must not be negative)",
                                      code="assessment.negative_points")
            out["events"].append({"item": _code(e.get("item"), f"events[{i}].item"), "points": to_text(points),
                                  "note": str(e.get("note", ""))[:500]})
    if "previous" in body:
        out["previous"] = {_code(k, "previous"): to_text(_num(v, f"previous.{k}"))
                           for k, v in _mapping(body["previous"], "previous", most).items()}
    return out


def merge(old: str | None, new: Mapping[str, Any]) -> str:
    """Each kind entered replaces that kind; the others stay. Entering ``previous`` replaces the
    carried bases too (nodes/services/baseline.py carries again what it then lacks)."""
    doc = json.loads(old) if old else {}
    if "previous" in new:
        doc.pop("carried", None)
    doc.update(new)
    return json.dumps(doc, ensure_ascii=False, sort_keys=True)
