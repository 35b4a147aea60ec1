"""Issue 12, operations: structured logs. One JSON object per line with ts, level, logger, node, msg
and the extra fields; no secrets; chosen by ``log:`` in node.yaml or by the environment; the node of
each record told apart when several nodes share one event loop."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nodes.config import ConfigFile, load_config
from nodes.launcher import Federation, load_topology
from nodes.logs import FORMAT_ENV, LEVEL_ENV, LogSettings, configure, node_context, set_node
from nodes.yamlfile import FileError


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_fields_the_node_and_no_secret(restore_logging: None) -> None:
    out = io.StringIO()
    chosen = configure(LogSettings("json", "INFO"), node="510104", stream=out, env={})
    assert chosen == LogSettings("json", "INFO")
    log = logging.getLogger("fedappraisal.test")
    log.debug("not shown at INFO")
    log.info("accepted %s from %s", "bundle", "510104017", extra={"child": "510104017", "seq": 3,
                                                                     "admin_token": "s3cret", "detail": {"password": "x"}})
    log.warning("store down: postgresql+asyncpg://fa_5101:hunter2@db.cd.sc.example/fa_5101")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third = lines(out)
    assert first["level"] == "INFO" and first["logger"] == "fedappraisal.test" and first["node"] == "510104"
    assert first["msg"] == "accepted bundle from 510104017" and first["child"] == "510104017" and first["seq"] == 3
    assert str(first["ts"]).endswith("Z") and "T" in str(first["ts"])
    assert first["admin_token"] == "[redacted]" and first["detail"] == {"password": "[redacted]"}
    assert "hunter2" not in out.getvalue() and "fa_5101:[redacted]@db.cd.sc.example" in str(second["msg"])
    assert third["level"] == "ERROR" and "ValueError: boom" in str(third["exc"])


def test_the_environment_overrides_the_file_and_bad_values_are_named(restore_logging: None) -> None:
    out = io.StringIO()
    chosen = configure(LogSettings("json", "INFO"), stream=out, env={FORMAT_ENV: "text", LEVEL_ENV: "warning"})
    assert chosen == LogSettings("text", "WARNING")
    logging.getLogger("fedappraisal.x").info("hidden")
    logging.getLogger("fedappraisal.x").warning("shown")
    assert "hidden" not in out.getvalue() and "WARNING fedappraisal.x shown" in out.getvalue()
    assert len([h for h in logging.getLogger().handlers if h.get_name() == "fedappraisal"]) == 1
    configure(stream=out, env={})  # called again: still one handler
    assert len([h for h in logging.getLogger().handlers if h.get_name() == "fedappraisal"]) == 1
    with pytest.raises(ValueError, match=FORMAT_ENV):
        configure(stream=out, env={FORMAT_ENV: "xml"})


async def test_nodes_sharing_one_loop_are_told_apart(restore_logging: None) -> None:
    out = io.StringIO()
    configure(LogSettings("json"), stream=out, env={})
    log = logging.getLogger("fedappraisal.host")

    async def hosted(code: str) -> None:
        set_node(code)  # a hosted node's task: its own context from its start
        for _ in range(3):
            log.info("tick")
            await asyncio.sleep(0)

    await asyncio.gather(*(asyncio.create_task(hosted(c)) for c in ("510104017", "510104018")))
    with node_context("5101"):
        log.info("inside")
    log.info("outside")
    got = [(r["node"], r["msg"]) for r in lines(out)]
    assert sorted(got[:6]) == [("510104017", "tick")] * 3 + [("510104018", "tick")] * 3
    assert got[6:] == [("5101", "inside"), ("", "outside")]


def test_log_in_node_yaml_is_checked_and_loaded(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    path = fed.node_dir("510104") / "node.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert load_config(path).log == LogSettings("text", "INFO")  # absent: the default
    data["log"] = {"format": "json", "level": "debug"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert load_config(path).log == LogSettings("json", "DEBUG")
    import msgspec

    msgspec.convert(data, ConfigFile)  # the schema accepts what load_config accepts
    data["log"] = {"format": "xml"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FileError, match="json"):
        load_config(path)
    data["log"] = {"fromat": "json"}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FileError, match="format"):
        load_config(path)
