"""A federation of real node processes for the end-to-end tests: wait for a condition, talk to each
node's gateway, start every node and wait until it answers, or keep the whole federation up for a block."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from nodes.launcher import Federation

CYCLE, PERIOD = "2026", "2026-Y"


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Client:
    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.http = httpx.Client(timeout=10)

    def get(self, code: str, path: str, **params: Any) -> Any:
        # The office's token: /api/v1/audit needs it, the public reads ignore it.
        r = self.http.get(self.fed.by_code[code].url + path, params=params,
                          headers={"Authorization": f"Bearer {self.fed.tokens[code]}"})
        r.raise_for_status()
        return r.json()

    def post(self, code: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(self.fed.by_code[code].url + path, json=body,
                              headers={"Authorization": f"Bearer {self.fed.tokens[code]}"})

    def frameworks(self, code: str) -> list[dict[str, Any]]:
        return list(self.get(code, "/api/v1/frameworks", envelopes=True))

    def holds(self, code: str) -> bool:
        s = self.fed.by_code[code]
        want = (1 if s.parent else 0) + (1 if s.children else 0)
        return len(self.frameworks(code)) >= want


def healthy(fed: Federation, client: Client, code: str) -> bool:
    if code in fed.exited():
        raise AssertionError(f"node {code} exited:\n{fed.log_tail(code)}")
    return bool(client.get(code, "/health")["code"] == code)


def start_all(fed: Federation, client: Client) -> None:
    """Start every node of ``fed`` and wait until each answers on its gateway."""
    for s in fed.specs:
        fed.start_node(s.code)
    for s in fed.specs:
        wait_until(f"{s.code} healthy", lambda code=s.code: healthy(fed, client, code), 90)


@contextlib.contextmanager
def serving(fed: Federation) -> Iterator[Client]:
    """NATS and every node of ``fed`` up (and healthy) for the block; all of it stopped afterwards."""
    fed.prepare()
    fed.start_nats()
    client = Client(fed)
    try:
        start_all(fed, client)
        yield client
    finally:
        client.http.close()
        fed.stop_all()
