"""`appraise framework publish` takes the Excel template as it takes YAML, against a real province
gateway (uvicorn on a free port, the node's real services and store); a file that is neither UTF-8
YAML nor a workbook is refused with the fix, never with a traceback."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from gateway.app import create_app
from nodes.config import load_config
from nodes.launcher import DATA, Federation, free_port, load_topology
from nodes.runtime import NodeServices, build_services, gateway_services
from nodes.store import Store

APPRAISE = str(Path(sys.executable).parent / "appraise")


def appraise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APPRAISE, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
async def province(tmp_path: Path) -> AsyncIterator[tuple[NodeServices, str, Path]]:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    node_dir = fed.node_dir("51")
    node = build_services(load_config(node_dir / "node.yaml"), await Store.open(f"sqlite+aiosqlite:///{tmp_path}/51.db"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(gateway_services(node)), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield node, f"http://127.0.0.1:{port}", node_dir / "admin.token"
    finally:
        server.should_exit = True
        await serving
        await node.context.store.close()


async def test_publish_takes_the_excel_template(province: tuple[NodeServices, str, Path], tmp_path: Path) -> None:
    node, url, token = province
    workbook = tmp_path / "指标体系.xlsx"
    exported = await asyncio.to_thread(appraise, "framework", "export", str(DATA / "sample-framework.yaml"),
                                       "--out", str(workbook))
    assert exported.returncode == 0, exported.stderr
    done = await asyncio.to_thread(appraise, "framework", "publish", str(workbook), "--gateway", url,
                                   "--token-file", str(token))
    assert done.returncode == 0, done.stdout + done.stderr
    async with node.context.store.read() as r:
        issued = await r.frameworks.list(role="issued")
    assert len(issued) == 1 and issued[0].digest in done.stdout and issued[0].authored


async def test_publish_refuses_what_is_neither_yaml_nor_a_workbook(province: tuple[NodeServices, str, Path],
                                                                    tmp_path: Path) -> None:
    _node, url, token = province
    gbk = tmp_path / "指标体系.yaml"
    gbk.write_bytes("issuer: '51'\nissuer_name: 四川省\n".encode("gbk"))
    done = await asyncio.to_thread(appraise, "framework", "publish", str(gbk), "--gateway", url, "--token-file", str(token))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "UTF-8" in done.stderr and str(gbk) in done.stderr
    broken = tmp_path / "坏.xlsx"
    broken.write_bytes(b"PK not really a workbook")
    done = await asyncio.to_thread(appraise, "framework", "publish", str(broken), "--gateway", url, "--token-file",
                                   str(token))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Excel" in done.stderr
