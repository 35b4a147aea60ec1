"""Regenerate proto/appraisal/v1/*_pb2*.py(i) with the pinned grpcio-tools.

CI runs this and fails on any diff, so the committed code always matches the .proto.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

PINNED_GRPCIO_TOOLS = "1.85.1"
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    found = version("grpcio-tools")
    if found != PINNED_GRPCIO_TOOLS:
        print(f"grpcio-tools {found} installed, {PINNED_GRPCIO_TOOLS} pinned", file=sys.stderr)
        return 1
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto").rglob("*.proto"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", "-I.",
        "--python_out=.", "--mypy_out=.", "--grpc_python_out=.", "--mypy_grpc_out=.", *protos,
    ]
    env = dict(os.environ)
    # protoc finds the mypy-protobuf plugins on PATH; they live beside this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
