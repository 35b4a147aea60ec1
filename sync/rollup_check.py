"""Roll-up recomputation: a parent does not take a child's rolled-up values on its word.

A roll-up bundle cites the children's bundles it was rolled up from (``sources``) and its message
carries them as evidence, with the framework the sender issued to those children (``framework``,
signed by the sender). The receiver, without asking anyone:

1. checks that framework exactly as the children would on receiving it (units within the sender's
   scope, structure, linkage to the framework this receiver issued: ``check_issued``), so a parent
   accepts as the basis of a roll-up only a decomposition its own rules allow;
2. checks that every source answers that framework, for the same cycle and period, from one of its
   units;
3. merges the sources' signed values in chain order (a later bundle of a unit overrides an earlier
   one, as the sender's store does), lays over them the values the sender's own data providers
   entered about its units (``provided``, inside the sender's signature), rolls them up with
   ``aggregator.rollup.roll_up`` (every rule, the engine's own code) and requires the result to be
   exactly the bundle's values: the same keys, equal numbers.

A disagreement raises :class:`RollupMismatch` naming the indicator, both values and the sources;
the results receiver refuses the bundle as content and audits those fields. ``sync/approvals.py``
applies this at depth 1 and, with the evidence's own evidence, at depth 2, so the province checks
both the city's and each county's arithmetic from the city's message alone.

What it cannot see: a unit the sender left out of the framework it issued (the receiver knows its
grandchildren only through that framework), and values a sender reports as entered by itself (a
bundle without sources) rather than rolled up; docs/design.md §4.4 says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from aggregator.framework import Framework
from aggregator.numbers import to_text
from aggregator.rollup import RolledUp, roll_up
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync.codec import Bundle, decode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, EnvelopeError, digest, open_envelope, verify_signature
from sync.framework_checks import check_issued
from sync.trust import Identity

Evidence = Mapping[str, tuple[pb.ResultMessage, Bundle, Identity]]  # source bundle id → (message, bundle, signer)


class RollupMismatch(EnvelopeError):
    """A rolled-up value that its sources do not give; ``detail`` is audited as it stands."""

    default_code = "rollup.mismatch"

    def __init__(self, message: str, detail: Mapping[str, object] | None = None, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.detail = dict(detail or {})


def derived_framework(msg: pb.ResultMessage, signer: Identity, issued: tuple[Framework, str]) -> tuple[Framework, str]:
    """The framework ``signer`` says it rolled its sources up by, verified as its children would."""
    if not msg.framework:
        raise EnvelopeError("汇总结果包未附下发给下级的指标体系，无法核算 (roll-up carries no framework to recompute by)",
                            code="rollup.no_framework")
    opened = open_envelope(msg.framework, PAYLOAD_FRAMEWORK)
    verify_signature(opened, signer.public_key)
    fw = decode_framework(opened.payload)
    try:
        check_issued(fw, signer, issued, None)
    except EnvelopeError as exc:
        raise EnvelopeError(f"汇总所依据的指标体系未通过核对 (the roll-up's framework fails the checks its children "
                            f"would make): {exc}", code="rollup.bad_framework") from None
    return fw, digest(opened.payload)


def recompute(bundle: Bundle, fw: Framework, fw_digest: str, sources: Evidence) -> list[RolledUp]:
    """Roll the sources' values up by ``fw`` and compare with ``bundle``; raise on any difference."""
    units = {u.code for u in fw.units}
    values: dict[str, dict[str, Decimal]] = {}
    for _, src, _ in sorted(sources.values(), key=lambda e: (e[1].node, e[1].seq)):
        if src.framework_digest != fw_digest or (src.cycle, src.period) != (bundle.cycle, bundle.period):
            raise EnvelopeError(f"来源 {src.node} 的结果包不属于该汇总的指标体系或报告期 (a source answers another "
                                "framework or period than the roll-up)", code="rollup.source_mismatch")
        if src.node not in units:
            raise EnvelopeError(f"来源 {src.node} 不是汇总所依据指标体系的被考评单位 (source is not a unit of the "
                                "roll-up's framework)", code="rollup.source_not_unit")
        values.setdefault(src.node, {}).update(src.values)
    for unit, vals in bundle.provided:  # the sender's providers' values count over the unit's own, as they do there
        if unit not in units:
            raise EnvelopeError(f"数据提供单位报送的 {unit} 不是汇总所依据指标体系的被考评单位 (provided values for a unit "
                                "outside the roll-up's framework)", code="rollup.provided_not_unit")
        values.setdefault(unit, {}).update(vals)
    try:
        rolled = roll_up(fw, values)
    except (ValueError, ArithmeticError) as exc:  # RollupIncompleteError is a ValueError
        raise RollupMismatch(f"{bundle.node} 的汇总无法由其来源得出 (the sources do not give a roll-up): {exc}",
                             {"node": bundle.node, "seq": bundle.seq, "problem": str(exc)[:300],
                              "sources": _cited(sources)}) from None
    expected: dict[str, tuple[Decimal, RolledUp]] = {}
    for r in rolled:
        expected[r.parent_indicator] = (r.value, r)
        for key, value in r.extra.items():
            expected[key] = (value, r)
    for key in sorted(set(expected) | set(bundle.values)):
        claimed = bundle.values.get(key)
        got = expected.get(key)
        if got is not None and claimed is not None and claimed == got[0]:
            continue
        inputs = {u: to_text(v) for u, v in got[1].inputs.items()} if got is not None else {}
        detail: dict[str, object] = {
            "node": bundle.node, "seq": bundle.seq, "indicator": key,
            "claimed": "" if claimed is None else to_text(claimed),
            "recomputed": "" if got is None else to_text(got[0]),
            "rule": got[1].rule if got is not None else "", "inputs": inputs, "sources": _cited(sources)}
        raise RollupMismatch(
            f"{bundle.node} 上报的汇总值与其来源不符：指标 {key} 上报 {detail['claimed'] or '（缺）'}，按来源重算为 "
            f"{detail['recomputed'] or '（无）'} (a rolled-up value disagrees with the signed sources)", detail)
    return rolled


def _cited(sources: Evidence) -> list[str]:
    return sorted(f"{b.node}#{b.seq}:{bundle_id[:12]}" for bundle_id, (_, b, _) in sources.items())[:50]
