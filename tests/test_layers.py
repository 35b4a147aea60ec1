"""The layer contracts and the no-cycle rule are real checks: they pass on this tree and fail on a
tree that breaks them (``./dev lint`` runs both)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from check_cycles import cycles  # noqa: E402


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_this_tree_keeps_its_contracts_and_has_no_cycle() -> None:
    lint = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "broken" in lint.stdout and " 0 broken" in lint.stdout
    found = subprocess.run([sys.executable, "scripts/check_cycles.py"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120, check=False)
    assert found.returncode == 0, found.stdout


def test_a_function_level_import_cycle_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, {
        "cyc/__init__.py": "",
        "cyc/service.py": "def start():\n    from cyc.app import create\n    return create()\n",
        "cyc/app.py": "from cyc.service import start\n\ndef create():\n    return start\n",
        "cyc/alone.py": "import cyc.app\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cycles(grimp.build_graph("cyc", cache_dir=None)) == [["cyc.app", "cyc.service"]]


def test_a_broken_layer_contract_fails_the_lint(tmp_path: Path) -> None:
    _package(tmp_path, {
        "aggregator/__init__.py": "", "aggregator/core.py": "def f():\n    import sync.transport\n",
        "sync/__init__.py": "", "sync/transport.py": "X = 1\n",
        ".importlinter": "[importlinter]\nroot_packages =\n    aggregator\n    sync\n\n"
                         "[importlinter:contract:pure]\nname = core is pure\ntype = forbidden\n"
                         "source_modules =\n    aggregator\nforbidden_modules =\n    sync\n",
    })
    lint = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert "aggregator.core -> sync.transport" in lint.stdout
