"""The whole federation over a NATS hierarchy: the province on the hub, each city and everything below
it on that city's leaf server (its own JetStream domain). Frameworks cascade down through the hub's
stream sourced into each city's; results come up, and only each city's own results cross to the hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import nats
import pytest

from nodes.launcher import DATA, Federation, NatsHierarchy, load_topology
from tests.support.federation import CYCLE, PERIOD, Client, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory,
               serve_federation: Callable[[Federation], Client]) -> tuple[Federation, Client]:
    fed = Federation(tmp_path_factory.mktemp("hier") / "fed", load_topology(), nats_hierarchy=True)
    fed.heartbeat_seconds = 2
    return fed, serve_federation(fed)


def test_cascade_and_results_across_the_hierarchy(federation: tuple[Federation, Client]) -> None:
    fed, client = federation
    assert isinstance(fed.nats, NatsHierarchy)
    framework = (DATA / "sample-framework.yaml").read_text(encoding="utf-8")
    assert client.post("51", "/api/v1/admin/frameworks", {"yaml": framework}).status_code == 201
    towns = [s.code for s in fed.specs if s.level == "township"]
    wait_until("every township holds its framework", lambda: all(client.frameworks(t) for t in towns), 60)
    entered = {}
    for n, town in enumerate(towns):
        fw = client.frameworks(town)[-1]
        vals = {i["code"]: str(Decimal(i["target"]) + n) for i in fw["indicators"] if i["leaf"]}
        entered[town] = Decimal(vals["A1"])
        assert client.post(town, "/api/v1/admin/values", {"cycle": CYCLE, "period": PERIOD,
                                                          "values": vals}).status_code == 201

    def province_a1() -> Decimal | None:
        rows = [v for v in client.get("51", "/api/v1/values", cycle=CYCLE)
                if v["indicator"] == "A1" and v["source"] == "rolled_up" and v["period"] == PERIOD]
        return Decimal(rows[0]["value"]) if rows else None

    wait_until("the province's roll-up equals the townships' reports", lambda: province_a1() == sum(entered.values()), 60)
    wait_until("every child hears its parent",
               lambda: all(client.get(s.code, "/api/v1/sync")["parent_heartbeat"]["fresh"] for s in fed.specs[1:]), 30)

    async def hub_subjects() -> dict[str, int]:
        nc = await nats.connect(fed.nats.url)
        info = await nc.jetstream().stream_info("FA_RESULTS", subjects_filter=">")
        await nc.close()
        return dict(info.state.subjects or {})

    assert set(asyncio.run(hub_subjects())) == {"res.51.5101", "res.51.5107"}  # counties and townships stay home
    for s in fed.specs:
        assert not client.get(s.code, "/api/v1/audit", action="reject.results")["entries"], s.code
