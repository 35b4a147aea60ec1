"""One error hierarchy (aggregator/errors.py): every deliberate error is an AppraisalError (still a
ValueError) with a stable dotted code, and every raise site names its reason with a code of its own.

The raise sites are read with ``ast``, so a new ``raise EnvelopeError("…")`` without a code, or a code
reused for another reason, fails here rather than in a program that decides on it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aggregator
import sync
from aggregator.errors import (
    AppraisalError,
    BadInput,
    ConfigError,
    Conflict,
    NotFound,
    Refused,
    StoreFailure,
    TransportFailure,
    TrustFailure,
)
from aggregator.numbers import NumberError
from aggregator.rollup import RollupIncompleteError
from aggregator.weights import WeightsError
from nodes.assessments import AssessmentError
from nodes.framework_file import FrameworkFileError
from nodes.yamlfile import FileError
from sync.envelope import EnvelopeError
from sync.identity import Outcome
from sync.keys import KeyFileError
from sync.retry import GaveUp
from sync.transport.tls import TlsError
from sync.trust import CertificateTimeError, TrustError

ROOT = Path(__file__).resolve().parents[1]
CODE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
KINDS = (AppraisalError, BadInput, NotFound, Conflict, Refused, TrustFailure, StoreFailure, TransportFailure, ConfigError)
SIGNALS = {"aggregator.methods.MissingInput"}  # not errors: handled by the missing-data policy
# Where the raise sites with codes live: the core, the protocol roles, the node's services and the files
# it reads (nodes/config.py and nodes/yamlfile.py code through Located.error; gateway/ maps them to HTTP).
SOURCES = sorted([*ROOT.joinpath("aggregator").glob("*.py"), *ROOT.joinpath("sync").rglob("*.py"),
                  *ROOT.joinpath("nodes", "services").glob("*.py"), *ROOT.joinpath("nodes", "repositories").glob("*.py"),
                  *(ROOT / "nodes" / name for name in ("assessments.py", "framework_file.py", "framework_excel.py"))])
CODED = {"AppraisalError", "BadInput", "ConfigError", "Refused", "TrustFailure", "EnvelopeError", "TrustError",
         "CertificateTimeError", "NumberError", "WeightsError", "RollupIncompleteError", "KeyFileError", "TlsError",
         "AssessmentError", "FrameworkFileError", "NotFound", "Conflict"}


def _project_errors() -> list[type[BaseException]]:
    """Every exception class defined in aggregator/ and sync/, plus the ones of the nodes modules above."""
    found: dict[str, type[BaseException]] = {}
    for package in (aggregator, sync):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    for cls in (AssessmentError, FrameworkFileError):
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [cls for name, cls in sorted(found.items()) if name not in SIGNALS]


ERRORS = _project_errors()


def test_the_known_errors_are_found() -> None:
    assert {EnvelopeError, TrustError, CertificateTimeError, NumberError, WeightsError, RollupIncompleteError,
            KeyFileError, TlsError, AssessmentError, FrameworkFileError, GaveUp} <= set(ERRORS)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__qualname__)
def test_every_error_is_an_appraisal_error_with_a_dotted_code(cls: type[BaseException]) -> None:
    assert issubclass(cls, AppraisalError) and issubclass(cls, ValueError)
    assert cls.kind and cls.default_code
    if cls not in KINDS:  # the kinds themselves carry generic defaults ("error", "not_found" …)
        assert CODE.match(cls.default_code), cls.default_code
    err = cls("消息 (message)")
    assert err.code == cls.default_code and err.message == "消息 (message)"
    assert cls("x", code="area.reason").code == "area.reason"


@pytest.mark.parametrize(("cls", "parents", "code"), [
    (EnvelopeError, (Refused,), "envelope.refused"),
    (TrustError, (EnvelopeError, TrustFailure), "trust.failed"),
    (CertificateTimeError, (TrustError,), "trust.certificate_time"),
    (NumberError, (BadInput,), "input.number"),
    (WeightsError, (BadInput,), "input.weights"),
    (AssessmentError, (BadInput,), "input.assessment"),
    (KeyFileError, (BadInput,), "input.key_file"),
    (TlsError, (ConfigError,), "config.tls"),
    (RollupIncompleteError, (AppraisalError,), "rollup.incomplete"),
    (FrameworkFileError, (FileError, BadInput), "framework_file.invalid"),
])
def test_each_error_sits_under_its_kind(cls: type[AppraisalError], parents: tuple[type[BaseException], ...],
                                        code: str) -> None:
    assert all(issubclass(cls, p) for p in parents) and cls.default_code == code
    assert TrustError.kind == CertificateTimeError.kind == "trust" and EnvelopeError.kind == "refused"


@given(st.sampled_from([*ERRORS, *KINDS]), st.text(max_size=50),
       st.one_of(st.none(), st.from_regex(CODE, fullmatch=True)))
def test_appraisal_errors_remain_value_errors(cls: type[AppraisalError], message: str, code: str | None) -> None:
    caught: BaseException | None = None
    try:
        raise cls(message, code=code)
    except ValueError as exc:  # what code written before the hierarchy catches
        caught = exc
    assert isinstance(caught, AppraisalError) and type(caught) is cls
    exc = caught
    assert str(exc) == message and exc.code == (code or cls.default_code)


def test_an_outcome_has_no_code_unless_refused() -> None:
    assert Outcome(True, False, "").code == ""
    assert Outcome(False, False, "版本回退 (rollback)", code="cascade.rollback").code == "cascade.rollback"


# ------------------------------------------------------------------ raise sites

def _text(node: ast.AST) -> str:
    """The literal text of a message, ``{}`` for what is formatted in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp):
        return _text(node.left) + _text(node.right)
    return ""


def _reason(texts: list[str]) -> str:
    """What a message says in English: its parenthesised parts (zh-CN first, then English)."""
    text = " ".join(t for t in texts if t and not CODE.match(t))
    english = re.findall(r"\(([^()]*[A-Za-z][^()]*)\)", text)
    return " | ".join(english) if english else text


def _codes_in(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and CODE.match(n.value)]


def _sites() -> list[tuple[str, int, list[str], str]]:
    """(file, line, codes, reason) of every raise with a literal code, and of every (code, reason) pair
    a receiver builds without an exception (a rollback, a fork, a finding)."""
    out = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                call = node.exc
                codes = _codes_in(call)
                texts = [_text(a) for a in call.args]
                if codes and any(texts):
                    out.append((where, node.lineno, codes, _reason(texts)))
            elif isinstance(node, ast.Tuple) and len(node.elts) == 2:
                first, second = node.elts
                if (isinstance(first, ast.Constant) and isinstance(first.value, str) and CODE.match(first.value)
                        and _text(second)):
                    out.append((where, node.lineno, [first.value], _reason([_text(second)])))
    return out


def test_raise_sites_were_found() -> None:
    sites = _sites()
    files = {f for f, *_ in sites}
    assert len(sites) > 150 and {"sync/trust.py", "sync/cascade_receiver.py", "sync/results_receiver.py",
                                 "nodes/framework_excel.py", "aggregator/weights.py"} <= files


def test_a_code_names_one_reason() -> None:
    """Codes are unique per distinct reason: one code is never used for two different reasons (the same
    reason raised in two places may share its code)."""
    reasons: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    for file, line, codes, reason in _sites():
        for code in codes:
            reasons.setdefault(code, set()).add(reason)
            where.setdefault(code, []).append(f"{file}:{line}")
    shared = {code: (sorted(r), where[code]) for code, r in reasons.items() if len(r) > 1}
    assert shared == {}


def test_distinct_reasons_in_one_function_have_distinct_codes() -> None:
    """Within one raise site the alternatives (expired / not yet valid) are different codes too."""
    for file, line, codes, _ in _sites():
        assert len(codes) == len(set(codes)), f"{file}:{line}"


def _code_literals() -> list[tuple[str, int, str]]:
    """Every literal given as a code: ``code=…`` and ``*_code=…`` arguments and defaults, the default
    of ``code_of``, ``default_code = …``; collected by name, not by shape, so a malformed one is caught. (The kinds in
    aggregator/errors.py keep their generic defaults.)"""
    out = []
    for path in SOURCES:
        if path.name == "errors.py":
            continue
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            values: list[ast.AST] = []
            if isinstance(node, ast.keyword):
                if node.arg is not None and (node.arg == "code" or node.arg.endswith("_code")):
                    values.append(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "code_of":
                values += node.args[1:]  # code_of(exc, "cascade.arithmetic"): the code of a non-project error
            elif isinstance(node, ast.Assign):
                if any(isinstance(t, ast.Name) and t.id in ("default_code", "GAP") for t in node.targets):
                    values.append(node.value)
            elif isinstance(node, ast.arguments):
                named = [*node.posonlyargs, *node.args][-len(node.defaults):] if node.defaults else []
                pairs = [*zip(named, node.defaults, strict=True), *zip(node.kwonlyargs, node.kw_defaults, strict=True)]
                values += [d for a, d in pairs if d is not None and a.arg.endswith("_code")]
            for v in values:
                branches = [v.body, v.orelse] if isinstance(v, ast.IfExp) else [v]  # "a.b" if … else "a.c"
                out += [(where, b.lineno, b.value) for b in branches if isinstance(b, ast.Constant) and isinstance(b.value, str)]
    return out


def test_every_code_is_dotted_lowercase() -> None:
    literals = _code_literals()
    assert len(literals) > 150
    assert [(f, line, c) for f, line, c in literals if not CODE.match(c)] == []


def test_every_raise_of_a_project_error_carries_a_code() -> None:
    missing = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "_error":  # nodes/framework_file.py: _error(doc, where, message, code)
                ok = len(node.exc.args) == 4
            elif name in CODED:
                ok = any(k.arg == "code" for k in node.exc.keywords)
            else:
                continue
            if not ok:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert missing == []
