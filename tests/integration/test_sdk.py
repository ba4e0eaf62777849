"""The agent SDK end to end: a real gateway process, its real Workload API socket, this test
process registered as two agents, a principal's API key, and `ztgate.sdk` doing the rest.

The X.509-SVIDs live 6 seconds, so the Workload API rotates them every few
seconds and the agent must bind its warrant again to each new key.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.attestation import process_selectors
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.sdk import (
    Agent,
    AsyncAgent,
    CallDenied,
    CallTimeout,
    IdentityError,
    Principal,
    Unauthenticated,
)
from ztgate.sdk.identity import WorkloadIdentity
from ztgate.sdk.tls import gateway_context
from ztgate.testing import make_settings

from .harness import GatewayProcess, Upstream, gateway_toml, main_tools

AGENT = "spiffe://ztgate.local/agent/sdk-main"
SUB = "spiffe://ztgate.local/agent/sdk-sub"
OTHER = "spiffe://ztgate.local/agent/sdk-other"
SCOPE = {
    "tools": {
        "lookup": {"limits": {"q": {"pattern": "[a-z ]{1,40}"}}},
        "echo": {},
        "slow": {},
    }
}
SVID_TTL = 6


def _start(workdir: Path, upstream: Upstream, dead_port: int, **gateway: object) -> GatewayProcess:
    toml = f"[identity]\nx509_svid_ttl_seconds = {SVID_TTL}\n\n" + gateway_toml(
        main_tools(upstream, dead_port, tag="sdk"),
        gateway={"authentication": "required", **gateway},
        warrants={"require_justification": ["write", "critical"]},
    )
    make_settings(workdir, toml)
    process = GatewayProcess(
        workdir, verify=_roots_context(workdir) if gateway.get("tls") else None
    )
    process.start()
    for spiffe_id in (AGENT, SUB, OTHER):
        _register(process, spiffe_id)
    return process


def _register(gateway: GatewayProcess, spiffe_id: str) -> None:
    """Register this very process (uid and interpreter) as `spiffe_id`, as the CLI would."""
    database = load_settings(gateway.config).open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(
            spiffe_id, process_selectors()
        )
    finally:
        database.dispose()


def _api_key(gateway: GatewayProcess) -> str:
    """An admin API key: what `ztgate principals keys create admin` prints."""
    database = load_settings(gateway.config).open_database()
    try:
        return PrincipalRegistry(database, SystemClock()).create_key("admin")[1]
    finally:
        database.dispose()


def _roots_context(workdir: Path) -> ssl.SSLContext:
    ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
    return gateway_context(ca.roots(), "spiffe://ztgate.local/ztgate/gateway")


def _socket(gateway: GatewayProcess) -> str:
    return str(gateway.workdir / ".ztgate" / "agent.sock")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    process = _start(tmp_path_factory.mktemp("sdk"), upstream, dead_port)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def principal(gateway: GatewayProcess) -> Iterator[Principal]:
    with Principal(gateway.url, _api_key(gateway), timeout=10) as client:
        yield client


@pytest.fixture
def agent(gateway: GatewayProcess) -> Iterator[Agent]:
    with Agent.connect(
        gateway.url, socket_path=_socket(gateway), spiffe_id=AGENT, timeout=10
    ) as client:
        yield client


def _task(principal: Principal, agent: str = AGENT) -> str:
    return principal.create_task(agent=agent, intent="SDK integration test", scope=SCOPE).task_id


def test_bind_call_deny_and_audit(
    gateway: GatewayProcess, principal: Principal, agent: Agent
) -> None:
    task_id = _task(principal)
    warrant = agent.bind(task_id=task_id)
    assert warrant.task_id == task_id
    assert warrant.jkt == agent.identity.svid().jkt

    result = agent.call("lookup", {"q": "who am i"})
    assert result.result is not None
    assert {v.check for v in result.verdicts} >= {"authenticate", "warrant", "proof", "scope"}
    [record] = gateway.audit_records(result.call_id)
    assert record["agent"] == AGENT

    with pytest.raises(CallDenied) as out_of_scope:
        agent.call("lookup", {"q": "UPPER CASE"})
    assert out_of_scope.value.call_id
    assert [r.check for r in out_of_scope.value.reasons] == ["scope"]
    assert "/q" in out_of_scope.value.reasons[0].reason

    with pytest.raises(CallDenied) as unlisted:
        agent.call("sink", {})
    assert "not in the task's scope" in str(unlisted.value)

    with pytest.raises(CallDenied) as unjustified:
        agent.call("echo", {"msg": "hi"})  # a write: needs a justification
    assert "justification" in {r.check for r in unjustified.value.reasons}
    echoed = agent.call("echo", {"msg": "hi"}, justification="the test asks for an echo")
    assert echoed.call_id


def test_the_warrant_follows_each_svid_rotation(
    gateway: GatewayProcess, principal: Principal, agent: Agent
) -> None:
    task_id = _task(principal)
    first = agent.bind(task_id=task_id)
    agent.call("lookup", {"q": "before"})
    deadline = time.monotonic() + 3 * SVID_TTL
    while agent.identity.svid().jkt == first.jkt:
        assert time.monotonic() < deadline, "the Workload API pushed no new SVID"
        time.sleep(0.1)
    agent.call("lookup", {"q": "after"})  # bound again to the new key first
    assert agent.warrant is not None
    assert agent.warrant.jkt == agent.identity.svid().jkt != first.jkt
    assert agent.warrant.warrant_id == first.warrant_id
    [stored] = principal.task(task_id)["warrants"]
    assert stored["jkt"] == agent.warrant.jkt


def test_delegation_to_a_sub_agent(
    gateway: GatewayProcess, principal: Principal, agent: Agent
) -> None:
    agent.bind(task_id=_task(principal))
    with pytest.raises(CallDenied, match="sink"):
        agent.delegate(SUB, scope={"tools": {"sink": {}}})
    delegation = agent.delegate(
        SUB, scope={"tools": {"lookup": {"limits": {"q": {"enum": ["narrow"]}}}}}
    )
    assert delegation.depth == 1
    handed_over = delegation.to_json()  # what travels to the sub-agent

    with Agent.connect(gateway.url, socket_path=_socket(gateway), spiffe_id=SUB) as sub:
        bound = sub.bind(grant=handed_over)
        assert bound.warrant_id == delegation.warrant_id
        assert sub.call("lookup", {"q": "narrow"}).call_id
        with pytest.raises(CallDenied):
            sub.call("lookup", {"q": "wider"})  # allowed by the parent, not by the child
        with pytest.raises(CallDenied):
            sub.call("echo", {}, justification="not delegated")

    with (
        Agent.connect(gateway.url, socket_path=_socket(gateway), spiffe_id=OTHER) as other,
        pytest.raises(CallDenied),
    ):
        other.bind(grant=handed_over)  # delegated to SUB, not to OTHER


def test_ending_the_task_ends_the_calls(principal: Principal, agent: Agent) -> None:
    task_id = _task(principal)
    agent.bind(task_id=task_id)
    agent.call("lookup", {"q": "still fine"})
    principal.revoke_task(task_id, reason="the user changed their mind")
    with pytest.raises(CallDenied) as caught:
        agent.call("lookup", {"q": "too late"})
    assert "revoked" in str(caught.value)


def test_timeouts(principal: Principal, agent: Agent) -> None:
    agent.bind(task_id=_task(principal))
    with pytest.raises(CallTimeout) as tool:
        agent.call("slow", {"seconds": 3}, justification="t")  # given SLOW_TOOL_TIMEOUT
    assert tool.value.status == 504
    assert tool.value.call_id
    started = time.monotonic()
    with pytest.raises(CallTimeout) as ours:
        agent.call("slow", {"seconds": 0.4}, justification="t", timeout=0.1)
    assert ours.value.status is None
    assert time.monotonic() - started < 0.4


def test_a_revoked_agent_is_unauthenticated(gateway: GatewayProcess, principal: Principal) -> None:
    victim = "spiffe://ztgate.local/agent/sdk-revoked"
    _register(gateway, victim)
    task_id = _task(principal, victim)
    with Agent.connect(gateway.url, socket_path=_socket(gateway), spiffe_id=victim) as agent:
        agent.bind(task_id=task_id)
        agent.call("lookup", {"q": "ok"})
        revoked = gateway.cli("revoke", "agent", victim, "--reason", "sdk test")
        assert revoked.returncode == 0, revoked.stderr
        # The gateway refuses the SVID (401), or the SDK already learnt from the
        # Workload API, which ends a revoked agent's stream, that it has none.
        with pytest.raises((Unauthenticated, IdentityError)) as caught:
            agent.call("lookup", {"q": "not any more"})
        if isinstance(caught.value, Unauthenticated):
            assert "revoked" in caught.value.message
    with pytest.raises(IdentityError):
        Agent.connect(
            gateway.url, socket_path=_socket(gateway), spiffe_id=victim, identity_timeout=1
        )


def test_the_async_agent(gateway: GatewayProcess, principal: Principal) -> None:
    task_id = _task(principal)

    async def scenario() -> list[str]:
        agent = await AsyncAgent.connect(
            gateway.url, socket_path=_socket(gateway), spiffe_id=AGENT, timeout=10
        )
        async with agent:
            await agent.bind(task_id=task_id)
            results = await asyncio.gather(
                *(agent.call("lookup", {"q": f"call {'abcdefgh'[n]}"}) for n in range(8))
            )
            with pytest.raises(CallDenied):
                await agent.call("lookup", {"q": "NO"})
            delegation = await agent.delegate(SUB, expires_in_seconds=60)
            assert delegation.task_id == task_id
        return [r.call_id for r in results]

    call_ids = asyncio.run(scenario())
    assert len(set(call_ids)) == 8


def test_https_pins_the_gateway_identity(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> None:
    process = _start(tmp_path_factory.mktemp("sdk-tls"), upstream, dead_port, tls=True)
    try:
        assert process.url.startswith("https://")
        with Principal(process.url, _api_key(process), verify=_roots_context(process.workdir)) as p:
            task_id = _task(p)
        with Agent.connect(process.url, socket_path=_socket(process), spiffe_id=AGENT) as agent:
            agent.bind(task_id=task_id)
            assert agent.call("lookup", {"q": "over tls"}).call_id
        # An agent expecting another server identity refuses to talk at all.
        with (
            WorkloadIdentity(_socket(process), spiffe_id=AGENT) as identity,
            Agent(process.url, identity, server_id=OTHER) as wary,
            pytest.raises(Exception, match="not the gateway"),
        ):
            wary.bind(task_id=task_id)
    finally:
        process.stop()
