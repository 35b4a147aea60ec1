"""node.yaml has a schema: a misspelt key anywhere is refused, naming file, line, place and the key meant;
``limits:`` overrides sync.limits.Limits; every configuration we generate or ship fits the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from aggregator.errors import BadInput
from nodes.config import INVALID, UNKNOWN_KEY, ConfigFile, check_keys, load_config
from nodes.launcher import Federation, load_topology
from nodes.yamlfile import FileError, load
from sync.limits import DEFAULT_LIMITS

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "nodes"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    fed = Federation(tmp_path_factory.mktemp("config") / "fed", load_topology())
    fed.prepare()
    return fed


def variant(fed: Federation, code: str, name: str, change: Any = None, extra: str = "") -> Path:
    """A copy of ``code``'s generated node.yaml beside it (so its relative key paths still hold),
    changed by ``change`` on the data and ``extra`` appended as text."""
    d = fed.node_dir(code)
    data = yaml.safe_load((d / "node.yaml").read_text(encoding="utf-8"))
    if change is not None:
        change(data)
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False) + extra, encoding="utf-8")
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in ln)


def refused(path: Path) -> FileError:
    with pytest.raises(FileError) as e:
        load_config(path)
    return e.value


def test_unknown_top_level_key_names_file_line_and_the_key_meant(fed: Federation) -> None:
    path = variant(fed, "510104", "reveiw", extra="reveiw: manual\n")
    err = refused(path)
    assert err.code == UNKNOWN_KEY
    assert isinstance(err, BadInput) and isinstance(err, ValueError)
    assert str(err) == (f"{path}:{line_of(path, 'reveiw')}: reveiw: "
                        "未知配置项 reveiw（是否应为 review？） (unknown setting reveiw; did you mean review?)")


def _child_1(d: dict[str, Any]) -> None:
    d["children"][1]["grcp"] = d["children"][1].pop("grpc")


@pytest.mark.parametrize(("change", "place", "meant"), [
    (lambda d: d["node"].update(cdoe="510104"), "node.cdoe", "code"),
    (lambda d: d["listen"].update(htttp="127.0.0.1:1"), "listen.htttp", "http"),
    (_child_1, "children.1.grcp", "grpc"),
    (lambda d: d["tls"].update(cert_file="tls.pem"), "tls.cert_file", "cert"),
    (lambda d: d["parent"].update(nmae="成都市"), "parent.nmae", "name"),
    (lambda d: d["keys"].update(certificate_chian="chain.pb"), "keys.certificate_chian", "certificate_chain"),
    (lambda d: d["trust_root"].update(public_kye="00"), "trust_root.public_kye", "public_key"),
    (lambda d: d.update(limits={"unitz": 20000}), "limits.unitz", "units"),
], ids=lambda v: v if isinstance(v, str) and "." in v else None)
def test_nested_unknown_key_is_refused_at_its_line(fed: Federation, change: Any, place: str, meant: str) -> None:
    key = place.rsplit(".", 1)[1]
    path = variant(fed, "510104", key, change)
    err = refused(path)
    assert err.code == UNKNOWN_KEY
    assert str(err).startswith(f"{path}:{line_of(path, key + ':')}: {place}: ")
    assert f"did you mean {meant}?" in str(err)


def test_unknown_key_whose_value_is_a_block_names_the_key_line(fed: Federation) -> None:
    path = variant(fed, "510104", "block", extra="listn:\n  grpc: 127.0.0.1:1\n")
    err = refused(path)
    assert err.code == UNKNOWN_KEY
    assert str(err).startswith(f"{path}:{line_of(path, 'listn:')}: listn: ")


def test_unknown_key_with_nothing_close_lists_the_known_keys(fed: Federation) -> None:
    path = variant(fed, "510104", "colour", lambda d: d["node"].update(colour="red"))
    err = refused(path)
    assert err.code == UNKNOWN_KEY
    assert "node.colour" in str(err) and "code, name, level" in str(err) and "did you mean" not in str(err)


def test_every_unknown_key_is_reported_at_once(fed: Federation) -> None:
    path = variant(fed, "510104", "two", lambda d: d["node"].update(cdoe="x"), extra="reveiw: manual\n")
    lines = str(refused(path)).splitlines()
    assert len(lines) == 2 and "node.cdoe" in lines[0] and "reveiw" in lines[1]


def test_misspelt_required_key_is_reported_as_a_misspelling(fed: Federation) -> None:
    """Not as the missing setting it leaves behind."""
    path = variant(fed, "510104", "store", lambda d: d.update(stor=d.pop("store")))
    err = refused(path)
    assert err.code == UNKNOWN_KEY and "did you mean store?" in str(err)


def test_limits_override_takes_effect(fed: Federation) -> None:
    path = variant(fed, "510104", "limits", lambda d: d.update(limits={"units": 20000, "query_rate": 50}))
    limits = load_config(path).limits
    assert limits.units == 20000
    assert limits.query_rate == 50.0 and isinstance(limits.query_rate, float)
    assert limits.evidence == DEFAULT_LIMITS.evidence
    empty = variant(fed, "510104", "limits-empty", extra="limits:\n")
    assert load_config(empty).limits == DEFAULT_LIMITS


@pytest.mark.parametrize(("name", "value"), [
    ("units", 0), ("units", -5), ("units", 1.5), ("units", "many"), ("units", True), ("units", None),
    ("query_rate", 0.0), ("query_rate", float("nan")), ("query_rate", float("inf")), ("query_rate", "fast"),
])
def test_bad_limit_value_is_refused(fed: Federation, name: str, value: object) -> None:
    path = variant(fed, "510104", "bad-limit", lambda d: d.update(limits={name: value}))
    err = refused(path)
    assert err.code == INVALID
    assert str(err).startswith(f"{path}:{line_of(path, name + ':')}: limits.{name}: ")


def test_limits_must_be_a_mapping(fed: Federation) -> None:
    err = refused(variant(fed, "510104", "limits-list", lambda d: d.update(limits=[1, 2])))
    assert err.code == INVALID and "limits" in str(err)


def test_other_config_errors_carry_the_invalid_code(fed: Federation, tmp_path: Path) -> None:
    err = refused(variant(fed, "510104", "heartbeat", lambda d: d.update(heartbeat_seconds=0)))
    assert err.code == INVALID and "heartbeat_seconds" in str(err)
    err = refused(variant(fed, "510104", "level", lambda d: d["node"].update(level="village")))
    assert err.code == INVALID and "node.level" in str(err)
    assert refused(tmp_path / "absent.yaml").code == INVALID
    (tmp_path / "broken.yaml").write_text("node: [\n", encoding="utf-8")
    assert refused(tmp_path / "broken.yaml").code == INVALID


def test_valid_config_loads_as_before(fed: Federation) -> None:
    cfg = load_config(fed.node_dir("510104") / "node.yaml")
    assert (cfg.code, cfg.name, cfg.level, cfg.node_path) == ("510104", "锦江区", "county", ("51", "5101", "510104"))
    assert cfg.parent is not None and (cfg.parent.code, cfg.parent.name) == ("5101", "成都市")
    assert cfg.parent_grpc == f"127.0.0.1:{fed.by_code['5101'].grpc_port}"
    assert [(c.code, c.grpc) for c in cfg.children] == [
        (c, f"127.0.0.1:{fed.by_code[c].grpc_port}") for c in ("510104017", "510104018")]
    assert cfg.child_class == "乡镇街道" and cfg.review == "auto" and cfg.heartbeat_seconds == 10
    assert cfg.tls is not None and cfg.admin_token == fed.tokens["510104"]
    assert cfg.http_listen == f"127.0.0.1:{fed.by_code['510104'].http_port}"
    assert cfg.limits is DEFAULT_LIMITS


def test_every_generated_config_loads_and_fits_the_schema(fed: Federation) -> None:
    for spec in fed.specs:
        path = fed.node_dir(spec.code) / "node.yaml"
        assert load_config(path).code == spec.code
        msgspec.convert(load(path).data, ConfigFile)


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_example_has_only_known_keys(path: Path) -> None:
    """Their key files live on the deployment's machines, so only the keys (and the schema's types) are checked."""
    doc = load(path)
    check_keys(doc)
    msgspec.convert(doc.data, ConfigFile)


def test_shipped_examples_exist() -> None:
    assert len(sorted(DEPLOY.glob("*.yaml"))) >= 4
