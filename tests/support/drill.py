"""成都市 and 锦江区 as real node services in one process, on the demo's keys and TLS certificates: the
province's framework (signed with the province's key) goes through the city's real receiving path,
the city derives and signs its own, and the county takes that one from the city's stored cascade.
Townships' values go into the county's store, the county rolls them up and signs its bundle, and
the city takes that bundle through its real results path (ResultsService.submit). The county can be
served over real gRPC with mutual TLS, as itself or through a dishonest handler."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import uvicorn
import yaml

from aggregator.framework import Unit
from gateway.app import create_app
from nodes.config import load_config
from nodes.framework_file import load_framework
from nodes.launcher import Federation, load_topology
from nodes.runtime import FederationHandlers, QuietServer, build_services, gateway_services
from nodes.runtime import NodeServices as Node
from nodes.store import Store
from proto.appraisal.v1 import appraisal_pb2 as pb
from sync import keys
from sync.codec import encode_framework
from sync.envelope import PAYLOAD_FRAMEWORK, digest, sign
from sync.transport.grpc import Federation as Handlers
from sync.transport.grpc import FederationServicer, start_server
from sync.transport.tls import TlsFiles
from tests.support.nodes import PROVINCE

CYCLE, PERIOD = "2026", "2026-Y"
TOWNS = ("510104017", "510104018")


def tls_of(fed: Federation, code: str) -> TlsFiles:
    d = fed.node_dir(code)
    return TlsFiles.load(fed.workdir / "tls" / "ca.pem", d / "tls.pem", d / "tls.key")


@dataclass
class Rig:
    fed: Federation
    city: Node
    county: Node
    servers: list[grpc.aio.Server]

    def county_address(self) -> str:
        return next(c.grpc for c in self.city.context.cfg.children if c.code == "510104")

    async def serve_county(self, handlers: Handlers | None = None) -> None:
        """Serve 锦江区's Federation service where 成都市 will ask it: the node itself, or ``handlers``."""
        servicer = FederationServicer(handlers or FederationHandlers(self.county), authenticated=True, me="510104")
        server, _ = await start_server(self.county_address(), servicer, tls_of(self.fed, "510104"))
        self.servers.append(server)

    async def publish(self, version: int, a1_name: str = "地区生产总值", county: bool = True) -> None:
        """The province's framework ``version`` reaches the city, and (``county``) the city's derived one
        the county."""
        now = int(time.time())
        src = self.fed.workdir / f"province-v{version}.yaml"
        src.write_text(PROVINCE.replace("name: 地区生产总值", f"name: {a1_name}") + f"version: {version}\n",
                       encoding="utf-8")
        fw = load_framework(src, units=(Unit("5101", "成都市", "市州"), Unit("5107", "绵阳市", "市州")), now=now)
        env = sign(PAYLOAD_FRAMEWORK, encode_framework(fw), keys.load_private(self.fed.node_dir("51") / "key.pem"))
        assert await self.city.cascade.take(None, pb.CascadeMessage(frameworks=[env]).SerializeToString())
        issued = await self.issued(self.city)
        assert issued.version == version, "the city derived its own"
        if not county:
            return
        assert await self.county.cascade.take(None, issued.cascade)
        assert (await self.issued(self.county)).version == version, "the county derived its own"

    @staticmethod
    async def issued(node: Node) -> Any:
        async with node.context.store.read() as r:
            return max(await r.frameworks.list(role="issued"), key=lambda f: f.version)

    async def report(self, a1: dict[str, str]) -> None:
        """The townships' A1 values under the county's latest framework; the county rolls them up and
        signs its bundle, which the city takes through its results path."""
        county = self.county
        fw = await self.issued(county)
        async with county.context.store.tx() as tx:
            for town, value in a1.items():
                await tx.results.put(node=town, cycle=CYCLE, period=PERIOD, framework_digest=fw.digest,
                                     values={"A1": value}, source="reported", bundle_id=f"{town}-{fw.version}",
                                     now=int(time.time()))
            await county.scoring.recompute(tx, CYCLE, PERIOD, fw.digest, cause="test")
            bundles = [o for o in await tx.outbox.pending() if o.subject.startswith("res.")]
            for o in bundles:
                await tx.outbox.mark_sent(o.id, int(time.time()))
        assert bundles, "the county rolled up and signed its bundle"
        for o in bundles:
            ok, reason = await self.city.results.submit(o.payload, county.context.me.code)
            assert ok, reason

    @contextlib.asynccontextmanager
    async def gateway(self) -> AsyncIterator[httpx.AsyncClient]:
        """The city's gateway served by uvicorn in this event loop (as the node serves it), so that the
        county's gRPC server, in the same loop, answers while the gateway waits for it."""
        host, _, port = self.city.context.cfg.http_listen.rpartition(":")
        server = QuietServer(uvicorn.Config(create_app(gateway_services(self.city)), host=host, port=int(port),
                                             log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            token = self.city.context.cfg.admin_token  # computed results: results.interim (the bearer token has it)
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30,
                                         headers={"Authorization": f"Bearer {token}"}) as client:
                yield client
        finally:
            server.should_exit = True
            await task

    async def close(self) -> None:
        for server in self.servers:
            await server.stop(grace=0)
        await self.city.context.store.close()
        await self.county.context.store.close()


async def make_rig(tmp_path: Path, city_store: str | None = None, city_children: tuple[str, ...] | None = None) -> Rig:
    """``city_children``: the counties the city keeps in its configuration (all of them if None)."""
    fed = Federation(tmp_path / "fed", load_topology())
    fed.prepare()
    city_yaml = fed.node_dir("5101") / "node.yaml"
    if city_children is not None:
        data = yaml.safe_load(city_yaml.read_text(encoding="utf-8"))
        data["children"] = [c for c in data["children"] if c["code"] in city_children]
        city_yaml.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    city = build_services(load_config(city_yaml),
                          await Store.open(city_store or f"sqlite+aiosqlite:///{tmp_path / 'city.db'}"))
    county = build_services(load_config(fed.node_dir("510104") / "node.yaml"),
                            await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'county.db'}"))
    return Rig(fed, city, county, [])


def framework_digest(envelope: bytes) -> str:
    return digest(pb.Envelope.FromString(envelope).payload)
