"""Logging, set up in one place for every entry point (``appraise node run``, ``appraise host run``,
``python -m nodes``): plain text for a person at a terminal, or one JSON object per line for a log
collector (journald, Loki, Elasticsearch), chosen by ``log: {format: json|text, level: INFO}`` in
node.yaml or by the environment (``FEDAPPRAISAL_LOG_FORMAT``, ``FEDAPPRAISAL_LOG_LEVEL``, which win:
an operator changes them without editing a signed-off configuration).

A JSON line holds ``ts`` (UTC, RFC 3339 with milliseconds), ``level``, ``logger``, ``node``, ``msg``,
``exc`` when there is a traceback, and every ``extra={...}`` field the call passed. ``node`` is the
node the record is about: a host sets it per node with :func:`node_context` around each node's
tasks (a context variable, so records from concurrent nodes on one loop are told apart), a node
alone passes it to :func:`configure`.

No secrets: fields whose name says secret (token, password, secret, private key, authorization,
cookie) are replaced by ``"[redacted]"``, as is any ``user:password@`` in a URL in the message (a
store or NATS URL logged on a connection error).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TextIO

FORMAT_ENV = "FEDAPPRAISAL_LOG_FORMAT"
LEVEL_ENV = "FEDAPPRAISAL_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_NODE: contextvars.ContextVar[str] = contextvars.ContextVar("fedappraisal_node", default="")
# The attributes every LogRecord has: what is left over on a record came from extra={...}.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_SECRET = re.compile(r"(token|password|passwd|secret|private|authorization|cookie|credential)", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I)


@dataclass(frozen=True)
class LogSettings:
    """``log:`` in node.yaml."""

    format: Literal["text", "json"] = "text"
    level: str = "INFO"


DEFAULT_LOG = LogSettings()


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:[redacted]@", text)


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): "[redacted]" if _SECRET.search(str(k)) else _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", "") or _NODE.get() or self.node,
            "msg": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in out or key.startswith("_"):
                continue
            out[key] = "[redacted]" if _SECRET.search(key) else _plain(value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def __init__(self, node: str = "") -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        node = getattr(record, "node", "") or _NODE.get() or self.node
        text = redact(super().format(record))
        return f"[{node}] {text}" if node else text


@contextlib.contextmanager
def node_context(code: str) -> Iterator[None]:
    """Records logged inside (and in tasks created inside) name ``code`` as their node."""
    token = _NODE.set(code)
    try:
        yield
    finally:
        _NODE.reset(token)


def set_node(code: str) -> None:
    """For a task that belongs to one node from its start (a hosted node's tasks)."""
    _NODE.set(code)


def choose(settings: LogSettings | None = None, env: dict[str, str] | None = None) -> LogSettings:
    """The settings in force: the environment over the file over the defaults."""
    env = dict(os.environ) if env is None else env
    base = settings or DEFAULT_LOG
    fmt = env.get(FORMAT_ENV, base.format).strip().lower()
    level = env.get(LEVEL_ENV, base.level).strip().upper()
    if fmt not in ("text", "json"):
        raise ValueError(f"{FORMAT_ENV}={fmt!r}：应为 json 或 text (must be json or text)")
    if level not in LEVELS:
        raise ValueError(f"{LEVEL_ENV}={level!r}：应为 {'/'.join(LEVELS)} 之一 (unknown level)")
    return LogSettings("json" if fmt == "json" else "text", level)


def configure(settings: LogSettings | None = None, *, node: str = "", stream: TextIO | None = None,
              env: dict[str, str] | None = None) -> LogSettings:
    """Install one handler on the root logger (replacing any this function installed before) and
    return the settings in force. ``node``: the node of a process that runs one node."""
    chosen = choose(settings, env)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("fedappraisal")
    handler.setFormatter(JsonFormatter(node) if chosen.format == "json" else TextFormatter(node))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "fedappraisal"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen.level)
    # uvicorn and the NATS client log through their own loggers: the same handler, no duplicates.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "nats"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    return chosen
