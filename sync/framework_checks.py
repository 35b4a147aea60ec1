"""What a receiver checks of a framework its signer issued, in one place: the cascade receiver
applies it to every framework of a cascade message, the roll-up check (sync/rollup_check.py) to
the framework a child says it rolled its sources up by, and derivation to a framework before a
node signs it, so a node issues only what its children accept.
"""

from __future__ import annotations

from aggregator.framework import Framework, check_links, check_structure
from sync.envelope import EnvelopeError
from sync.limits import DEFAULT_LIMITS, Limits
from sync.trust import Identity, valid_code

_PASSED_MAX = 256
# What passed the checks that depend on the frameworks alone (not on the time), by
# (framework digest, parent digest, signer, level, departments, unit limit): the townships of one county
# on one node host each check the same county framework against the same city framework.
_passed: dict[tuple[str, str, str, str, bool, int], None] = {}


def check_issued(fw: Framework, signer: Identity, parent: tuple[Framework, str] | None, now: int | None,
                 limits: Limits = DEFAULT_LIMITS, *, departments: bool = False, digest: str = "") -> None:
    """What a receiver checks of one framework its signer issued: units within the signer's scope,
    structure, expiry (``now`` None: not checked, for a framework judged as of an earlier time) and,
    under ``parent`` (framework, digest), the linkage. Cascade receivers and roll-up checks share it,
    so a framework a parent accepts as the basis of a roll-up is one its children would accept.

    ``departments``: a framework the signer keeps for its own departments (分类考评; never cascaded):
    its units are the signer's departments (``<signer>-<suffix>``), and it need not decompose every
    must-cascade indicator of the parent's (the governments below do).

    ``digest``: the digest of ``fw``'s payload, which lets a repeat of checks already passed by this
    process skip all but the time check."""
    key = (digest, parent[1] if parent else "", signer.code, signer.level, departments, limits.units)
    if digest and key in _passed:
        _check_time(fw, now)
        return
    _check_static(fw, signer, parent, now, limits, departments)
    if digest:
        if len(_passed) >= _PASSED_MAX:
            _passed.clear()
        _passed[key] = None


def _check_time(fw: Framework, now: int | None) -> None:
    if now is not None and fw.expires_at < now:
        raise EnvelopeError(f"指标体系 {fw.issuer}/{fw.cycle} v{fw.version} 已过期 (framework expired)",
                            code="cascade.expired")


def _check_static(fw: Framework, signer: Identity, parent: tuple[Framework, str] | None, now: int | None,
                  limits: Limits, departments: bool) -> None:
    if fw.issuer != signer.code:
        raise EnvelopeError(f"指标体系发布者 {fw.issuer} 与签名者 {signer.code} 不符 (issuer is not the signer)",
                            code="cascade.issuer_not_signer")
    if len(fw.units) > limits.units:
        raise EnvelopeError("被考评单位过多 (too many units)", code="cascade.too_many_units")
    child_level = {"province": "city", "city": "county", "county": "township"}.get(signer.level, "")
    for u in fw.units:
        if departments:
            prefix, sep, suffix = u.code.partition("-")
            if prefix != signer.code or not sep or not suffix.isalnum() or len(suffix) > 16:
                raise EnvelopeError(f"部门指标体系的单位 {u.code} 不是 {signer.code} 的部门 (unit is not one of the "
                                    "issuer's departments)", code="cascade.not_a_department")
        elif not valid_code(u.code, child_level) or not u.code.startswith(signer.code):
            raise EnvelopeError(f"指标体系的单位 {u.code} 超出发布者 {signer.code} 的管辖范围 "
                                "(unit outside the issuer's scope)", code="cascade.unit_out_of_scope")
    structure = check_structure(fw)
    if structure:
        raise EnvelopeError(f"指标体系 {fw.issuer} v{fw.version} 结构检查未通过 (structure check failed): "
                            + "; ".join(map(str, structure[:5])), code="cascade.structure")
    _check_time(fw, now)
    if parent is None:
        if fw.parent is not None:
            raise EnvelopeError("根指标体系不应钉住上级 (root framework pins a parent)", code="cascade.root_pins_parent")
    else:
        pfw, pdigest = parent
        if fw.issuer not in {u.code for u in pfw.units}:
            raise EnvelopeError(f"{fw.issuer} 不是上级指标体系的被考评单位 (issuer is not a unit of the parent framework)",
                                code="cascade.issuer_not_unit")
        problems = check_links(pfw, pdigest, fw, fw.issuer, cascading=not departments)
        if problems:
            raise EnvelopeError("衔接检查未通过 (linkage check failed): " + "; ".join(map(str, problems[:5])),
                                code="cascade.linkage")
