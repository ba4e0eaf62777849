"""Two gateway processes sharing one Redis hot state: they act as one, and fail closed without it.

Both replicas serve the same directory (one SQLite store, one CA) with
`[store] hot_state_url` naming this module's own redis-server. A proof used
on one is refused on the other, a tool's rate limit is spent by calls on
both, and while Redis is down every call is denied (nothing reaches a tool
unchecked: 503, the store's fault) until it is back and the gateways have
recovered what it lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgate.store.redis_server import RedisServer
from ztgate.testing import make_settings

from .harness import Replica, Upstream, gateway_toml, make_client, two_replicas
from .test_authentication import _register
from .test_warrant_attacks import Agent

TAG = "hot-redis"
AGENT = "spiffe://ztgate.local/agents/replicated"


@dataclass
class Cluster:
    redis: RedisServer
    one: Replica
    two: Replica
    workdir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    tools: list[dict[str, Any]] = [
        {
            "name": "lookup",
            "url": f"{upstream.url}/echo/{TAG}",
            "risk": "read",
            "input_schema": {"type": "object"},
        },
        {
            "name": "limited",
            "url": f"{upstream.url}/echo/{TAG}-limited",
            "risk": "read",
            "input_schema": {"type": "object"},
            "limits": {"rate_per_second": 0.001, "burst": 3},
        },
    ]
    with RedisServer() as redis:
        toml = "[limits]\nburst_calls_per_second = 0\n\n" + gateway_toml(
            tools,
            gateway={"authentication": "required"},
            # Proofs live 4 s in hot state: after Redis comes back empty, the
            # ones that may have been used before are refused that long.
            warrants={"proof_window_seconds": 2},
            store={
                "hot_state_url": redis.url,
                "hot_state_prefix": f"it:{uuid.uuid4().hex}:",
                "hot_state_timeout_seconds": 0.3,
            },
        )
        make_settings(workdir, toml)
        _register(workdir, AGENT)
        with two_replicas(workdir) as (one, two):
            yield Cluster(redis, one, two, workdir)


def _post(client: httpx.Client, agent: Agent, tool: str, arguments: dict[str, Any]) -> Any:
    headers = agent.headers(agent.proof(tool, arguments))
    return client.post("/v1/calls", json={"tool": tool, "arguments": arguments}, headers=headers)


def _reasons(response: httpx.Response) -> list[tuple[str, str]]:
    return [(r["check"], r["reason"]) for r in response.json()["reasons"]]


def test_the_replicas_say_they_share_redis(cluster: Cluster) -> None:
    for replica in (cluster.one, cluster.two):
        assert f"hot state: redis at {cluster.redis.url}" in replica.log_path.read_text()


def test_a_proof_used_on_one_replica_is_refused_on_the_other(cluster: Cluster) -> None:
    agent = Agent(cluster.workdir, AGENT, {"lookup": {}})
    arguments = {"q": "replayed"}
    headers = agent.headers(agent.proof("lookup", arguments))
    body = {"tool": "lookup", "arguments": arguments}
    with make_client(cluster.one.url) as one, make_client(cluster.two.url) as two:
        assert one.post("/v1/calls", json=body, headers=headers).status_code == 200
        for replica in (two, one):
            replayed = replica.post("/v1/calls", json=body, headers=headers)
            assert replayed.status_code == 403, replayed.text
            assert _reasons(replayed) == [("proof", "proof: already used (replay)")]


def test_a_rate_limit_is_spent_on_both_replicas(cluster: Cluster, upstream: Upstream) -> None:
    agent = Agent(cluster.workdir, AGENT, {"limited": {}})
    before = len(upstream.received(f"/echo/{TAG}-limited"))
    with make_client(cluster.one.url) as one, make_client(cluster.two.url) as two:
        statuses = [
            _post(client, agent, "limited", {"n": i}).status_code
            for i, client in enumerate((one, two, one, two, one))
        ]
    # Three tokens in all, not three a replica.
    assert statuses == [200, 200, 200, 429, 429] or statuses == [200, 200, 200, 403, 403]
    assert len(upstream.received(f"/echo/{TAG}-limited")) == before + 3


def test_calls_fail_closed_while_redis_is_down_and_recover_after(
    cluster: Cluster, upstream: Upstream
) -> None:
    """Redis stopped under load from two clients: denied, never unchecked; back once it is."""
    agent = Agent(cluster.workdir, AGENT, {"lookup": {}})
    path = f"/echo/{TAG}"
    outcomes: list[tuple[float, float, int, str]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(replica: Replica, name: str) -> None:
        with make_client(replica.url) as client:
            i = 0
            while not stop.is_set():
                i += 1
                started = time.monotonic()
                response = _post(client, agent, "lookup", {"q": f"{name}-{i}"})
                text = response.text
                with lock:
                    outcomes.append((started, time.monotonic(), response.status_code, text))

    workers = [
        threading.Thread(target=load, args=(cluster.one, "one")),
        threading.Thread(target=load, args=(cluster.two, "two")),
    ]
    before = len(upstream.received(path))
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        cluster.redis.stop()
        down_from = time.monotonic()
        time.sleep(1.5)
        down_until = time.monotonic()
        cluster.redis.start()
        back_at = time.monotonic()
        time.sleep(5.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    allowed = [o for o in outcomes if o[2] == 200]
    # Refused because the hot state did not answer: 503, the store's fault, so
    # that an agent tells an outage (the SDK's CallFailed) from a denial.
    unavailable = [o for o in outcomes if o[2] == 503]
    # On a loaded machine a proof may also arrive outside its short window.
    late = [o for o in outcomes if o[2] == 403 and "outside the" in o[3]]
    # A call decided just before the outage may reach its tool; then the
    # result checks cannot record what it read, and the result is withheld.
    withheld = [o for o in outcomes if o[2] == 502]
    assert len(allowed) + len(unavailable) + len(late) + len(withheld) == len(outcomes)
    assert all("store-unavailable" in text for _, _, _, text in unavailable)
    assert all("result-withheld" in text for _, _, _, text in withheld)
    assert all("HotStateUnavailableError" in text for _, _, _, text in withheld)
    # Calls sent and answered while Redis was down were all refused ...
    during = [o for o in outcomes if o[0] >= down_from and o[1] <= down_until]
    assert during and all(status == 503 for _, _, status, _ in during)
    # ... and promptly (the timeout is 0.3 s, the check timeout 2 s).
    assert max(end - start for start, end, _, _ in during) < 2.0
    # Back, but empty: refused until recovered and the proof TTL (4 s) has passed
    # (a proof used before the loss is not accepted again).
    assert not any(back_at <= o[0] and o[1] <= back_at + 3.5 for o in allowed)
    # Before and after, calls went through.
    assert any(o[1] < down_from for o in allowed)
    assert any(o[0] > back_at + 4.2 for o in allowed)
    # Only what was allowed before the call ran reached the tool.
    assert len(upstream.received(path)) == before + len(allowed) + len(withheld)
