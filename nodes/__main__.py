"""`python -m nodes --config FILE`: the node process entry point; `python -m nodes --host FILE`: a
node host's (many nodes in one process, nodes/host.py).

Kept apart from the `appraise` CLI so a node process does not load typer and rich.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    # Litestar loads its pydantic plugin whenever pydantic is importable (typer's dependency
    # installs it), ~8 MB per node process; the gateway uses msgspec only, so keep it out.
    sys.modules.setdefault("pydantic", None)  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(prog="python -m nodes", description="运行一个节点 (run one node)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", "-c", type=Path, help="节点配置文件 (node.yaml)")
    which.add_argument("--host", type=Path, help="主机配置文件 (host.yaml: many nodes in one process)")
    args = parser.parse_args(argv)
    from nodes.config import load_config
    from nodes.logs import configure
    from nodes.yamlfile import FileError

    if args.host is not None:
        return _host(args.host)
    from nodes.runtime import run_node

    try:
        cfg = load_config(args.config)
    except FileError as exc:
        print(f"错误 (error): 节点未启动 (node not started):\n{exc}", file=sys.stderr)
        return 2
    configure(cfg.log, node=cfg.code)
    asyncio.run(run_node(cfg))
    return 0


def _host(path: Path) -> int:
    from nodes.host import load_host_config, run_host
    from nodes.logs import configure
    from nodes.yamlfile import FileError

    try:
        cfg = load_host_config(path)
    except FileError as exc:
        print(f"错误 (error): 主机未启动 (host not started):\n{exc}", file=sys.stderr)
        return 2
    configure(cfg.log)  # each hosted node's records carry its code (nodes/logs.py node_context)
    asyncio.run(run_host(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
