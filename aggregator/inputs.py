"""What a unit brings to scoring besides its measured values."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class Milestone:
    """One milestone of a qualitative task list (任务清单)."""

    code: str
    due: date
    done: date | None = None
    quality: Decimal = Decimal(1)  # assessed quality of the delivery, 0..1


@dataclass(frozen=True)
class Event:
    """An occurrence that adds or deducts points: a bonus, a deduction, a negative-list entry, a veto."""

    item: str
    points: Decimal = Decimal(0)
    note: str = ""


@dataclass(frozen=True)
class UnitInputs:
    values: Mapping[str, Decimal] = field(default_factory=dict)
    previous: Mapping[str, Decimal] = field(default_factory=dict)  # last cycle's value (纵向比较)
    # where a previous value was carried from across 区划调整 (nodes/services/baseline.py), as text
    previous_from: Mapping[str, str] = field(default_factory=dict)
    ratings: Mapping[str, Sequence[Decimal]] = field(default_factory=dict)  # rater scores 0..100 (定性评价)
    surveys: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)  # group → score 0..100 (满意度)
    milestones: Mapping[str, Sequence[Milestone]] = field(default_factory=dict)
    events: Sequence[Event] = ()


def to_inputs(values: Mapping[str, Decimal], document: str | None) -> UnitInputs:
    """A unit's inputs from its values and its assessment document (canonical JSON, as
    nodes/assessments.py writes it): the same function at the node that scores and at anyone who
    recomputes a published score from the document it signed (sync/publication.py)."""
    if not document:
        return UnitInputs(values=values)
    doc = json.loads(document)
    return UnitInputs(
        values=values,
        previous={k: Decimal(v) for k, v in doc.get("previous", {}).items()},
        previous_from={k: carried_text(v) for k, v in doc.get("carried", {}).items()},
        ratings={k: [Decimal(x) for x in v] for k, v in doc.get("ratings", {}).items()},
        surveys={k: {g: Decimal(x) for g, x in v.items()} for k, v in doc.get("surveys", {}).items()},
        milestones={k: [Milestone(m["code"], date.fromisoformat(m["due"]),
                                  date.fromisoformat(m["done"]) if m.get("done") else None, Decimal(m["quality"]))
                        for m in v] for k, v in doc.get("milestones", {}).items()},
        events=tuple(Event(e["item"], Decimal(e["points"]), e.get("note", "")) for e in doc.get("events", [])),
    )


def carried_text(mark: Mapping[str, object]) -> str:
    """``{"period": "2019-Y", "from": [{"code": "511825201", "name": "思经乡"}, …]}`` →
    "2019-Y 511825201 思经乡 + 511825202 鱼泉乡"."""
    sources = mark.get("from", [])
    parts = [f"{s.get('code', '')} {s.get('name', '')}".strip() for s in sources if isinstance(s, Mapping)] \
        if isinstance(sources, list) else []
    return f"{mark.get('period', '')} {' + '.join(parts)}".strip()
