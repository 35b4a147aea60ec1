"""Bad configuration and framework files are refused at start, naming file, place and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nodes.config import load_config
from nodes.framework_file import load_framework
from nodes.launcher import Federation, load_topology
from nodes.yamlfile import FileError
from tests.support.frameworks import CITY
from tests.support.hierarchy import sample_path


@pytest.fixture
def configs(tmp_path: Path) -> Federation:
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    return fed


def edit(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_good_config_loads(configs: Federation) -> None:
    cfg = load_config(configs.node_dir("510104") / "node.yaml")
    assert cfg.node_path == ("51", "5101", "510104")
    assert [c.code for c in cfg.children] == ["510104017", "510104018"]


def test_unknown_parent(configs: Federation) -> None:
    path = configs.node_dir("510104") / "node.yaml"
    edit(path, lambda d: d["parent"].update(code="5107"))
    with pytest.raises(FileError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "parent.code" in msg and "unknown parent" in msg and "'5101'" in msg


def test_missing_key_file(configs: Federation) -> None:
    path = configs.node_dir("5101") / "node.yaml"
    (configs.node_dir("5101") / "key.pem").unlink()
    with pytest.raises(FileError) as e:
        load_config(path)
    assert "keys.private_key" in str(e.value) and "appraise keys generate" in str(e.value)


def test_key_not_matching_certificate(configs: Federation) -> None:
    path = configs.node_dir("5101") / "node.yaml"
    (configs.node_dir("5107") / "key.pem").replace(configs.node_dir("5101") / "key.pem")
    with pytest.raises(FileError, match="does not match this node's key"):
        load_config(path)


def test_tls_certificate_of_another_node_or_missing_file_is_refused(configs: Federation) -> None:
    assert load_config(configs.node_dir("5101") / "node.yaml").tls is not None
    path = configs.node_dir("5101") / "node.yaml"
    (configs.node_dir("5107") / "tls.pem").replace(configs.node_dir("5101") / "tls.pem")
    with pytest.raises(FileError) as e:
        load_config(path)
    assert "tls.cert" in str(e.value) and "names another node" in str(e.value) and "'5107'" in str(e.value)
    edit(path, lambda d: d["tls"].update(key="missing.key"))
    with pytest.raises(FileError, match="cannot read TLS file"):
        load_config(path)


def test_heartbeat_period_out_of_range(configs: Federation) -> None:
    path = configs.node_dir("5101") / "node.yaml"
    edit(path, lambda d: d.update(heartbeat_seconds=0))
    with pytest.raises(FileError, match="heartbeat_seconds"):
        load_config(path)


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node:\n  code: \"5101\"\n  name: [成都市\n", encoding="utf-8")
    with pytest.raises(FileError) as e:
        load_config(path)
    assert f"{path}:" in str(e.value) and "malformed YAML" in str(e.value)


def test_weight_not_a_number(tmp_path: Path) -> None:
    text = sample_path().read_text(encoding="utf-8").replace("weight: 20\n", "weight: 二十\n", 1)
    path = tmp_path / "fw.yaml"
    path.write_text(text, encoding="utf-8")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "二十" in ln)
    with pytest.raises(FileError) as e:
        load_framework(path, now=0)
    assert f"{path}:{line}" in str(e.value) and "weight" in str(e.value) and "expected a number" in str(e.value)


def test_weights_not_adding_up(tmp_path: Path) -> None:
    text = sample_path().read_text(encoding="utf-8").replace("weight: 40\n", "weight: 45\n", 1)
    path = tmp_path / "fw.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileError, match="must add up"):
        load_framework(path, now=0)


def test_node_refuses_to_start_half_configured(configs: Federation) -> None:
    path = configs.node_dir("5101") / "node.yaml"
    edit(path, lambda d: d["listen"].update(grpc="127.0.0.1:notaport"))
    proc = subprocess.run([sys.executable, "-m", "nodes.cli", "node", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "listen.grpc" in proc.stderr and "host:port" in proc.stderr
    assert not (configs.node_dir("5101") / "node.db").exists()


def test_framework_validate_cli(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(sample_path())],
                        capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(sample_path().read_text(encoding="utf-8").replace("code: A2", "code: A1"), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "[A1]" in proc.stderr and "duplicate" in proc.stderr


def test_yaml_aliases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &x [1, 2]\nb: [*x, *x]\nc: &y [*y]\n", encoding="utf-8")
    with pytest.raises(FileError, match="aliases are not supported"):
        load_framework(path, now=0)


def test_numbers_out_of_range(tmp_path: Path) -> None:
    text = sample_path().read_text(encoding="utf-8").replace("target: 3000\n", "target: 1e30\n", 1)
    path = tmp_path / "fw.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileError, match="out of range"):
        load_framework(path, now=0)


def test_validate_against_parent(tmp_path: Path) -> None:
    good = tmp_path / "city.yaml"
    good.write_text(CITY, encoding="utf-8")
    ok = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(good), "--parent",
                         str(sample_path())], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad-city.yaml"
    bad.write_text(CITY.replace("target: 11500", "target: 11000")  # 2 × 11000 < 23000
                   .replace("unit: 微克/立方米", "unit: 毫克/立方米")  # unit of measure differs
                   .replace(", link: {indicator: B1}", ""),  # must-cascade B1 left unlinked
                   encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(bad), "--parent",
                           str(sample_path())], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    line_a1 = next(i for i, ln in enumerate(bad.read_text(encoding="utf-8").splitlines(), 1) if "code: A1" in ln)
    assert any(f"{bad}:{line_a1}" in ln and "[A1]" in ln and "do not cover" in ln for ln in lines), proc.stderr
    assert any("[C1]" in ln and "unit of measure" in ln for ln in lines), proc.stderr
    assert any("[B1]" in ln and "must-cascade" in ln for ln in lines), proc.stderr


def test_every_bad_number_is_reported_in_one_pass(tmp_path: Path) -> None:
    text = (sample_path().read_text(encoding="utf-8").replace("weight: 20\n", "weight: 二十\n", 1)
            .replace("target: 200\n", "target: 两百\n", 1).replace("target: 35\n", "target: 1e40\n", 1))
    path = tmp_path / "fw.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FileError) as e:
        load_framework(path, now=0)
    lines = str(e.value).splitlines()
    assert len(lines) == 3
    assert all(ln.startswith(f"{path}:") for ln in lines)
    assert "二十" in lines[0] and "两百" in lines[1] and "out of range" in lines[2]


def test_validate_reports_structure_and_linkage_together(tmp_path: Path) -> None:
    bad = tmp_path / "city.yaml"
    bad.write_text(CITY.replace("target: 11500", "target: 11000").replace("weight: 40\n", "weight: 45\n", 1),
                   encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "nodes.cli", "framework", "validate", str(bad), "--parent",
                           str(sample_path())], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "must add up to 100" in proc.stderr and "do not cover" in proc.stderr


def test_cycles_in_the_tree_are_found() -> None:
    from decimal import Decimal

    from aggregator.framework import Framework, Indicator, Unit, check_structure

    looped = (Indicator(code="A", name="A", weight=Decimal(100), parent_code="B"),
              Indicator(code="B", name="B", weight=Decimal(100), parent_code="A"))
    fw = Framework("51", "四川省", "2026", "市州", 1, "t", 0, 1, (Unit("5101", "成都市"),), looped)
    assert any("cycle" in str(p) for p in check_structure(fw))
