"""Division change events from plain data (a YAML/JSON file for ``appraise divisions changes sign``,
or the body of ``POST /api/v1/admin/division-changes``) into :mod:`aggregator.lineage` events.

One reader for both, so that a file and a request mean the same thing. Every refusal names the change
(its position), the field and what would fix it. The issuer is never read from the data: it is the
node that signs (nodes/services/divisions.py puts its own code on every event).

A file is a list of changes, or a mapping ``{changes: [...]}``::

    changes:
      - {kind: recode, effective: 2012-11-01, unit: "511821", code: "511803", name: 名山区, ref: 国函〔2012〕}
      - {kind: move, effective: 2016-05-01, unit: "512081", parent: "5101", code: "510185", name: 简阳市}
      - {kind: merge, effective: 2020-01-01, units: ["511825201", "511825202"], code: "511825102", name: 思经镇}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aggregator.errors import BadInput
from aggregator.lineage import DivisionChange, Merge, Move, Part, Recode, Relocation, Rename, Split

FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {  # kind → (required, optional) besides kind/effective/ref
    "rename": (frozenset({"unit", "name"}), frozenset()),
    "recode": (frozenset({"unit", "code", "name"}), frozenset()),
    "move": (frozenset({"unit", "parent", "code", "name"}), frozenset()),
    # survivor true: ``code`` is one of ``units`` that absorbs the others and stays the same unit
    "merge": (frozenset({"units", "code", "name"}), frozenset({"survivor", "children"})),
    "split": (frozenset({"unit", "parts"}), frozenset({"rule", "children"})),
}
COMMON = frozenset({"kind", "effective", "ref"})
MAX_EVENTS = 10_000


class DivisionFileError(BadInput):
    default_code = "division_file.invalid"


def events(data: Any, source: str = "") -> list[DivisionChange]:
    """The changes ``data`` lists; ``source`` names the file in messages."""
    at = f"{source}: " if source else ""
    if isinstance(data, Mapping) and set(data) == {"changes"}:
        data = data["changes"]
    if not isinstance(data, Sequence) or isinstance(data, str | bytes) or not data:
        raise DivisionFileError(f"{at}应为变更列表，或 {{changes: [...]}} (expected a non-empty list of changes)",
                                code="division_file.not_a_list")
    if len(data) > MAX_EVENTS:
        raise DivisionFileError(f"{at}变更 {len(data)} 条，超过上限 {MAX_EVENTS} (too many changes)",
                                code="division_file.too_many")
    return [_event(item, f"{at}第 {i} 条变更 (change {i})") for i, item in enumerate(data, 1)]


def _event(item: Any, where: str) -> DivisionChange:
    if not isinstance(item, Mapping):
        raise DivisionFileError(f"{where}：应为键值映射 (expected a mapping with kind, effective …)",
                                code="division_file.not_a_mapping")
    kind = item.get("kind")
    if kind not in FIELDS:
        raise DivisionFileError(f"{where}：kind 应为 {'/'.join(FIELDS)} 之一，实为 {str(kind)[:20]!r} (unknown kind)",
                                code="division_file.bad_kind")
    required, optional = FIELDS[kind]
    unknown = sorted(set(item) - COMMON - required - optional)
    if unknown:
        raise DivisionFileError(f"{where}：{kind} 不接受字段 {', '.join(map(str, unknown))[:80]}；可用 "
                                f"{', '.join(sorted(COMMON | required | optional))} (unknown field)",
                                code="division_file.unknown_field")
    missing = sorted(required - set(item))
    if missing:
        raise DivisionFileError(f"{where}：{kind} 缺少字段 {', '.join(missing)} (missing field)",
                                code="division_file.missing_field")
    effective = _day(item.get("effective"), where)
    ref = _text(item, "ref", where, "")
    common: dict[str, Any] = {"effective": effective, "issuer": "", "ref": ref}
    if kind == "rename":
        return Rename(**common, unit=_text(item, "unit", where), name=_text(item, "name", where))
    if kind == "recode":
        return Recode(**common, unit=_text(item, "unit", where), code=_text(item, "code", where),
                      name=_text(item, "name", where))
    if kind == "move":
        return Move(**common, unit=_text(item, "unit", where), parent=_text(item, "parent", where),
                    code=_text(item, "code", where), name=_text(item, "name", where))
    children = tuple(_relocation(r, f"{where} children[{j}]") for j, r in enumerate(_list(item, "children", where), 1))
    if kind == "merge":
        units = tuple(_code(u, f"{where} units[{j}]") for j, u in enumerate(_list(item, "units", where), 1))
        return Merge(**common, units=units, code=_text(item, "code", where), name=_text(item, "name", where),
                     survivor=_flag(item, "survivor", where), children=children)
    parts = tuple(_part(p, f"{where} parts[{j}]") for j, p in enumerate(_list(item, "parts", where), 1))
    return Split(**common, unit=_text(item, "unit", where), parts=parts, rule=_text(item, "rule", where, ""),
                 children=children)


def _day(value: Any, where: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):  # YAML reads an unquoted 2012-11-01 as a date
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise DivisionFileError(f"{where}：effective 应为 YYYY-MM-DD 的日期，实为 {str(value)[:20]!r} "
                            "(effective must be a day, e.g. 2012-11-01)", code="division_file.bad_date")


def _text(item: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and key in ("unit", "code", "parent"):
        value = str(value)  # YAML reads an unquoted 511821 as a number
    if not isinstance(value, str):
        raise DivisionFileError(f"{where}：{key} 应为文本，实为 {str(value)[:20]!r} (field {key} must be text)",
                                code="division_file.not_text")
    return value


def _flag(item: Mapping[str, Any], key: str, where: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise DivisionFileError(f"{where}：{key} 应为 true 或 false，实为 {str(value)[:20]!r} "
                                f"(field {key} must be true or false)", code="division_file.not_bool")
    return value


def _code(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DivisionFileError(f"{where}：应为区划代码文本，实为 {str(value)[:20]!r} (a division code as text)",
                                code="division_file.bad_code")
    return value


def _list(item: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key, [])
    if not isinstance(value, list):
        raise DivisionFileError(f"{where}：{key} 应为列表 (field {key} must be a list)", code="division_file.not_list")
    return value


def _relocation(value: Any, where: str) -> Relocation:
    if not isinstance(value, Mapping) or set(value) - {"code", "new_code", "name"} or not {"code", "new_code"} <= set(value):
        raise DivisionFileError(f"{where}：应为 {{code, new_code, name}} (a child placement: code, new_code, name)",
                                code="division_file.bad_child")
    return Relocation(code=_code(value["code"], where), new_code=_code(value["new_code"], where),
                      name=_text(value, "name", where, ""))


def _part(value: Any, where: str) -> Part:
    keys = set(value) if isinstance(value, Mapping) else set()
    if not isinstance(value, Mapping) or keys - {"code", "name", "share", "shares"} or not {"code", "name", "share"} <= keys:
        raise DivisionFileError(f"{where}：应为 {{code, name, share, shares}} (a part: code, name, share)",
                                code="division_file.bad_part")
    shares = value.get("shares", {})
    if not isinstance(shares, Mapping):
        raise DivisionFileError(f"{where}：shares 应为 指标: 比例 的映射 (shares maps indicator to share)",
                                code="division_file.bad_shares")
    return Part(code=_code(value["code"], where), name=_text(value, "name", where),
                share=_share(value["share"], where), shares={str(k): _share(v, f"{where} shares.{k}") for k, v in shares.items()})


def _share(value: Any, where: str) -> Decimal:
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidOperation
        share = Decimal(str(value))
    except InvalidOperation:
        raise DivisionFileError(f"{where}：share 应为 0 至 1 的小数，实为 {str(value)[:20]!r} (a share between 0 and 1)",
                                code="division_file.bad_share") from None
    if not share.is_finite():
        raise DivisionFileError(f"{where}：share 应为有限数 (a finite share)", code="division_file.share_finite")
    return share
