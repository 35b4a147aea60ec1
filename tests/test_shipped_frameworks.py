"""Issue 9 item 12: the frameworks we ship (nodes/data/*.yaml, which the Excel template is made from)
cascade unchanged from the province to every township of the demo topology: each level derives its
children's framework and the linkage and structure checks the receiver runs pass at every step."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aggregator.framework import Framework, Unit, check_links, check_structure, derive_child_framework
from nodes.framework_file import load_framework
from nodes.launcher import CHILD_CLASS, DATA, load_topology
from nodes.yamlfile import FileError
from sync.codec import encode_framework
from sync.envelope import digest

SHIPPED = sorted(p.name for p in DATA.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_framework_cascades_to_every_township(name: str) -> None:
    now = int(time.time())
    specs = {s.code: s for s in load_topology()}
    province = next(s for s in specs.values() if s.level == "province")

    def units(code: str) -> tuple[Unit, ...]:
        spec = specs[code]
        return tuple(Unit(c, specs[c].name, CHILD_CLASS[spec.level]) for c in spec.children)

    top = load_framework(DATA / name, units=units(province.code), now=now)
    assert not check_structure(top), check_structure(top)
    frontier: list[tuple[str, Framework]] = [(province.code, top)]
    checked = 0
    while frontier:
        code, fw = frontier.pop()
        fw_digest = digest(encode_framework(fw))
        for child in specs[code].children:
            if not specs[child].children:
                continue
            derived = derive_child_framework(fw, fw_digest, specs[child].name, child, units(child),
                                             unit_class=CHILD_CLASS[specs[child].level], issued_at=now,
                                             expires_at=fw.expires_at)
            problems = [*check_structure(derived), *check_links(fw, fw_digest, derived, child)]
            assert not problems, f"{name}: {specs[child].name} ({child}): " + "; ".join(map(str, problems))
            frontier.append((child, derived))
            checked += 1
    assert checked == sum(1 for s in specs.values() if s.level in ("city", "county"))


RATE = """\
issuer: "51"
issuer_name: 四川省
cycle: "2026"
class: 市州
indicators:
  - code: A
    name: 经济
    weight: 100
    children:
      - {code: A1, name: 规上工业增加值增速, weight: 100, unit: "%", target: 8EXTRA}
"""


@pytest.mark.parametrize(("extra", "refused"), [("", True), (", rollup: mean", False),
                                                 (", rollup_reason: 各县增速按同口径相加后折算", False)])
def test_a_rate_is_not_summed_unless_the_file_says_why(tmp_path: Path, extra: str, refused: bool) -> None:
    path = tmp_path / "rate.yaml"
    path.write_text(RATE.replace("EXTRA", extra), encoding="utf-8")
    if not refused:
        assert load_framework(path, now=int(time.time())).leaves()[0].code == "A1"
        return
    with pytest.raises(FileError) as bad:
        load_framework(path, now=int(time.time()))
    assert bad.value.code == "framework_file.sum_of_rates"
    assert f"{path}:10" in str(bad.value) and "rollup_reason" in str(bad.value)
