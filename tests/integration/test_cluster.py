"""Two gateway replicas behind HAProxy, on one PostgreSQL and one Redis (`ztgate.cluster`).

The cluster is the one `make run-cluster` starts (`LocalCluster`), with two
replicas and this suite's tools. The agent is `ztgate.sdk.Agent`, its SVIDs
issued by the cluster's CA (an `IdentityProvider` in this file standing for
the Workload API). What one replica is told, the other acts on: a kill
switch, an approval, a revocation. Through the balancer: SDK calls are
spread over both replicas and keep succeeding when one is SIGKILLed; MCP
clients of the 2026-07-28 revision land on both, a handshake-era client
(`mode="legacy"`) stays on the replica that holds its session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from cryptography import x509
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ztgate.clock import SystemClock
from ztgate.cluster import LocalCluster
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.ports import free_port
from ztgate.principals.registry import PrincipalRegistry
from ztgate.sdk import (
    Agent,
    ApprovalPending,
    CallDenied,
    CallFailed,
    Principal,
    TransportError,
    Unauthenticated,
)
from ztgate.sdk.models import SvidKey

from .harness import (
    TaskCredentials,
    Upstream,
    critical_tools,
    gateway_toml,
    main_tools,
    run_cli,
)

pytestmark = pytest.mark.slow

TAG = "cluster"
SCOPE = {"tools": {"lookup": {}, "echo": {}, "pay": {}}}


class CaIdentity:
    """An `IdentityProvider` whose SVIDs the cluster's CA issues (the Workload API's part)."""

    def __init__(self, ca: CertificateAuthority, spiffe_id: str) -> None:
        self.ca = ca
        self.spiffe_id = spiffe_id
        svid = ca.issue_x509_svid(spiffe_id)
        self.key = svid.private_key
        self._svid = SvidKey.from_chain(spiffe_id, svid.private_key, svid.chain)
        self._jwt = ca.issue_jwt_svid(spiffe_id, ["ztgate"], ttl=600)

    def svid(self) -> SvidKey:
        return self._svid

    def jwt_svid(self) -> str:
        return self._jwt

    def cached_jwt_svid(self) -> str | None:
        return self._jwt

    def trust_roots(self) -> list[x509.Certificate]:
        return self.ca.roots()

    def close(self) -> None:
        pass


class Fixture:
    """The running cluster, its CA and an admin API key."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.ca = CertificateAuthority.load(cluster.workdir / ".ztgate" / "ca", SystemClock())
        database = load_settings(cluster.config).open_database()
        try:
            self.api_key = PrincipalRegistry(database, SystemClock()).create_key("admin")[1]
        finally:
            database.dispose()
        self._agents = 0

    @property
    def one(self) -> str:
        return self.cluster.members[0].url

    @property
    def two(self) -> str:
        return self.cluster.members[1].url

    @property
    def urls(self) -> list[str]:
        return [member.url for member in self.cluster.members]

    def new_agent(self) -> str:
        """A SPIFFE ID registered now (each test its own: revocations are for good)."""
        self._agents += 1
        spiffe_id = f"spiffe://ztgate.local/agent/cluster-{self._agents}-{time.monotonic_ns()}"
        database = load_settings(self.cluster.config).open_database()
        try:
            EntryRegistry(database, SystemClock(), "ztgate.local").register(
                spiffe_id, [f"unix:path:/opt/agents/{spiffe_id.rsplit('/', 1)[-1]}"]
            )
        finally:
            database.dispose()
        return spiffe_id

    def principal(self, url: str) -> Principal:
        return Principal(url, self.api_key, timeout=10)

    def agent(self, url: str, spiffe_id: str | None = None) -> Agent:
        """An SDK agent talking to `url`, bound to a new task (created through `url`)."""
        spiffe_id = spiffe_id or self.new_agent()
        with self.principal(url) as principal:
            task = principal.create_task(agent=spiffe_id, intent="cluster test", scope=SCOPE)
        agent = Agent(url, CaIdentity(self.ca, spiffe_id), timeout=30)
        try:
            agent.bind(task_id=task.task_id)
        except BaseException:
            agent.close()
            raise
        return agent


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Fixture]:
    tools = [*main_tools(upstream, 9, tag=TAG), *critical_tools(upstream, TAG, ("pay",))]
    text = "[limits]\nburst_calls_per_second = 0\n\n" + gateway_toml(
        tools,
        gateway={"authentication": "required"},
        # A short proof lifetime: after Redis comes back empty, the replicas
        # refuse proofs for that long (test_a_revocation_whose_broadcast_...).
        warrants={"proof_window_seconds": 5},
    )
    workdir: Path = tmp_path_factory.mktemp("cluster")
    with LocalCluster(workdir, replicas=2, port=free_port(), config_text=text) as cluster:
        yield Fixture(cluster)


def _served(fixture: Fixture, before: dict[str, int]) -> dict[str, int]:
    after = fixture.cluster.served()
    return {name: after[name] - before.get(name, 0) for name in after}


# -- what one replica is told, the other acts on ---------------------------------------


def test_a_kill_switch_set_through_one_replica_stops_calls_on_the_other(fixture: Fixture) -> None:
    spiffe_id = fixture.new_agent()
    with fixture.agent(fixture.two, spiffe_id) as on_two, fixture.principal(fixture.one) as admin:
        assert on_two.call("lookup", {"q": "before"}).result is not None
        admin._post("/v1/containment/kill", {"scope": "agent", "target": spiffe_id})
        with pytest.raises(CallDenied, match=r"kill|held|stopped"):
            on_two.call("lookup", {"q": "after"})
        admin._post("/v1/containment/resume", {"scope": "agent", "target": spiffe_id})
        assert on_two.call("lookup", {"q": "resumed"}).result is not None


def test_an_approval_given_through_one_replica_releases_a_call_waiting_on_the_other(
    fixture: Fixture,
) -> None:
    waiting: dict[str, Any] = {}
    with fixture.agent(fixture.two) as on_two:
        with pytest.raises(ApprovalPending) as pending:
            on_two.call("pay", {"amount": 5}, justification="the cluster test pays")
        approval = pending.value.approval_id
        assert approval is not None

        def wait() -> None:
            try:
                waiting["result"] = on_two.wait_for_approval(pending.value, 30)
            except Exception as exc:  # reported by the assertion below
                waiting["error"] = exc

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.5)  # the agent is long-polling replica two
        with fixture.principal(fixture.one) as admin:
            admin._post(f"/v1/approvals/{approval}/approve", {"comment": "via one"})
        waiter.join(30)
    assert not waiter.is_alive()
    assert "error" not in waiting, waiting.get("error")
    assert waiting["result"].result is not None


def test_a_revocation_on_one_replica_denies_the_next_call_on_the_other(fixture: Fixture) -> None:
    spiffe_id = fixture.new_agent()
    with fixture.agent(fixture.two, spiffe_id) as on_two, fixture.principal(fixture.one) as admin:
        assert on_two.call("lookup", {"q": "before"}).result is not None
        admin._post("/v1/revocations", {"kind": "spiffe_id", "value": spiffe_id})
        with pytest.raises(Unauthenticated):
            on_two.call("lookup", {"q": "after"})


# -- through the balancer ------------------------------------------------------------


def _token(fixture: Fixture, spiffe_id: str) -> str:
    return fixture.ca.issue_jwt_svid(spiffe_id, ["ztgate"], ttl=300)


async def _mcp_calls(fixture: Fixture, mode: str, calls: int) -> list[bool]:
    spiffe_id = fixture.new_agent()
    key = fixture.ca.issue_x509_svid(spiffe_id).private_key
    task = TaskCredentials(fixture.cluster.workdir, spiffe_id, key, tools=("lookup",))
    headers = {"Authorization": f"Bearer {_token(fixture, spiffe_id)}"}
    errors = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(
            streamable_http_client(f"{fixture.cluster.url}/mcp", http_client=http),
            mode=mode,  # type: ignore[arg-type]
        ) as client,
    ):
        for i in range(calls):
            arguments = {"q": f"mcp {mode} {i}"}
            meta = task.mcp_meta("lookup", arguments, "the cluster test")
            result = await client.call_tool("lookup", arguments, meta=meta)  # type: ignore[arg-type]
            errors.append(result.is_error)
    return errors


async def test_modern_mcp_requests_land_on_both_replicas(fixture: Fixture) -> None:
    """2026-07-28: no session, every request self-contained: any replica answers any of them."""
    before, held = fixture.cluster.served(), fixture.cluster.sessions_held()
    errors = await _mcp_calls(fixture, "auto", 8)
    assert errors == [False] * 8
    served = _served(fixture, before)
    assert all(count >= 2 for count in served.values()), served
    assert fixture.cluster.sessions_held() == held  # no Mcp-Session-Id was handed out


async def test_a_legacy_mcp_session_sticks_to_its_replica(fixture: Fixture) -> None:
    """A handshake-era session lives in one replica's memory: HAProxy sends it back there."""
    before, held = fixture.cluster.served(), fixture.cluster.sessions_held()
    errors = await _mcp_calls(fixture, "legacy", 8)
    assert errors == [False] * 8
    assert fixture.cluster.sessions_held() == held + 1
    served = _served(fixture, before)
    assert sorted(served.values())[0] == 0, served  # every request on the session's replica


def test_a_legacy_session_is_unknown_to_the_other_replica(fixture: Fixture) -> None:
    """Why the affinity: the session opened on one replica is refused by the other."""
    spiffe_id = fixture.new_agent()
    headers = {
        "Authorization": f"Bearer {_token(fixture, spiffe_id)}",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2025-06-18",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "cluster-test", "version": "1"},
        },
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    with httpx.Client(headers=headers, timeout=10) as http:
        opened = http.post(f"{fixture.one}/mcp", json=initialize)
        assert opened.status_code == 200, opened.text
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        assert http.post(f"{fixture.one}/mcp", json=listing, headers=session).status_code == 200
        assert http.post(f"{fixture.two}/mcp", json=listing, headers=session).status_code == 404


def test_sdk_calls_through_the_balancer_survive_a_replica_killed(fixture: Fixture) -> None:
    cluster = fixture.cluster
    with fixture.agent(cluster.url) as agent:
        before = cluster.served()
        for i in range(6):
            assert agent.call("lookup", {"q": f"spread {i}"}).result is not None
        served = _served(fixture, before)
        assert all(count >= 2 for count in served.values()), served

        victim = cluster.members[0]
        victim.kill()
        try:
            statuses = []
            for i in range(20):
                statuses.append(agent.call("lookup", {"q": f"after kill {i}"}).result is not None)
            assert statuses == [True] * 20
        finally:
            cluster.restart(victim)
        time.sleep(1.5)  # HAProxy's next health check puts it back
        with httpx.Client(base_url=cluster.url, timeout=10) as plain:
            assert plain.get("/readyz").status_code == 200


def test_a_revocation_whose_broadcast_was_lost_holds_on_every_replica_once_redis_is_back(
    fixture: Fixture,
) -> None:
    """Redis down while an operator revokes on the command line: the replicas re-read first.

    Redis comes back empty: the replicas refuse calls until they have
    recovered the hot state, so the test waits for the cluster to serve
    again before it ends (the order of the tests is random).
    """
    spiffe_id = fixture.new_agent()
    redis = fixture.cluster.redis
    with fixture.agent(fixture.two, spiffe_id) as on_two:
        assert on_two.call("lookup", {"q": "before"}).result is not None
        redis.stop()
        try:
            revoked = run_cli(fixture.cluster.config, "revoke", "agent", spiffe_id)
            assert revoked.returncode == 0, revoked.stderr
            assert "broadcast failed" in revoked.stderr  # committed; said so
            with pytest.raises(CallFailed):  # no broadcasts, no hot state: 503
                on_two.call("lookup", {"q": "during"})
        finally:
            redis.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                on_two.call("lookup", {"q": "after"})
            except CallFailed:  # recovering the hot state: still 503
                assert time.monotonic() < deadline, "the replica never came back"
                time.sleep(0.2)
                continue
            except Unauthenticated:
                break
            pytest.fail("a revoked agent's call was allowed after Redis came back")
    _wait_until_serving(fixture)


def _wait_until_serving(fixture: Fixture, timeout: float = 60) -> None:
    """Both replicas ready, HAProxy sending to them, and a new agent's call allowed."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as plain:
        while not all(plain.get(f"{url}/readyz").status_code == 200 for url in fixture.urls):
            assert time.monotonic() < deadline, "the replicas did not get ready again"
            time.sleep(0.2)
    time.sleep(1.5)  # HAProxy's next health check puts them back
    while True:
        try:
            with fixture.agent(fixture.cluster.url) as agent:
                agent.call("lookup", {"q": "serving"})
            return
        except (CallFailed, TransportError):
            assert time.monotonic() < deadline, "the cluster did not serve again"
            time.sleep(0.2)
