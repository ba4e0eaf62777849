"""The AsyncAgent against the in-memory gateway (warrants and proofs checked by ztgate's code)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from ztgate.sdk.aio import AsyncAgent
from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallTimeout,
    IdentityError,
    TransportError,
    ZtgateError,
)
from ztgate.sdk.models import Reason
from ztgate.sdk.tls import GatewayContext

from .conftest import SUB_AGENT, Approvals, FakeGateway, FakeIdentity, problem

URL = "http://127.0.0.1:8470"


def _agent(identity: FakeIdentity, gateway: FakeGateway, **kwargs: object) -> AsyncAgent:
    return AsyncAgent(URL, identity, transport=httpx.MockTransport(gateway), **kwargs)  # type: ignore[arg-type]


async def test_bind_call_delegate(identity: FakeIdentity, gateway: FakeGateway) -> None:
    async with _agent(identity, gateway, timeout=5) as agent:
        with pytest.raises(ZtgateError, match="bind"):
            await agent.call("echo")
        warrant = await agent.bind(task_id="t1")
        assert agent.warrant == warrant
        assert agent.spiffe_id == identity.spiffe_id
        result = await agent.call("echo", {"msg": "hi"}, justification="asked")
        assert result.result == {"echo": {"msg": "hi"}, "justification": "asked"}
        assert result.verdicts == (Reason("scope", "allow", "in scope"),)
        delegation = await agent.delegate(SUB_AGENT, scope={"tools": {"echo": {}}})
        assert delegation.warrant_id == "w-child"
        with pytest.raises(CallDenied) as caught:
            await agent.call("search", {"q": "UPPER"})
        assert caught.value.reasons[0].check == "scope"
        with pytest.raises(ValueError, match="task_id"):
            await agent.bind()
    sub_identity = FakeIdentity(identity.ca, SUB_AGENT)
    async with _agent(sub_identity, gateway) as sub:
        bound = await sub.bind(grant=delegation)
        assert bound.jkt == sub_identity.current.jkt
        assert (await sub.bind("t1", "w-child")).warrant_id == "w-child"


async def test_concurrent_calls_after_a_rotation_bind_once(
    identity: FakeIdentity, gateway: FakeGateway
) -> None:
    async with _agent(identity, gateway) as agent:
        await agent.bind(task_id="t1")
        identity.rotate()
        results = await asyncio.gather(*(agent.call("echo", {"n": n}) for n in range(5)))
    assert [r.result["echo"] for r in results] == [{"n": n} for n in range(5)]
    assert gateway.paths().count("/v1/warrants/bind") == 2
    assert gateway.paths()[1] == "/v1/warrants/bind"  # before any call with the new key


async def test_failures_are_typed(identity: FakeIdentity, gateway: FakeGateway) -> None:
    async with _agent(identity, gateway) as agent:
        await agent.bind(task_id="t1")
        for failure, kind in (
            (httpx.ReadTimeout("slow"), CallTimeout),
            (httpx.ConnectError("refused"), TransportError),
        ):

            def broken(request: httpx.Request, failure: Exception = failure) -> httpx.Response:
                raise failure

            gateway.override = broken
            with pytest.raises(kind):
                await agent.call("echo")
        gateway.override = lambda request: problem(504, "the tool timed out", call_id="c")
        with pytest.raises(CallTimeout, match="tool timed out") as caught:
            await agent.call("echo", timeout=1)
        assert caught.value.status == 504


async def test_a_cached_jwt_svid_is_not_fetched_again(
    identity: FakeIdentity, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = identity.ca.issue_jwt_svid(identity.spiffe_id, ["ztgate"])
    monkeypatch.setattr(identity, "cached_jwt_svid", lambda: token)
    async with _agent(identity, gateway) as agent:
        await agent.bind(task_id="t1")
        await agent.call("echo")
    assert identity.jwt_fetches == 0
    assert {r.headers["authorization"] for r in gateway.requests} == {f"Bearer {token}"}


async def test_a_due_jwt_svid_is_fetched_off_the_loop(
    identity: FakeIdentity, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    fetch = identity.jwt_svid

    def recorded() -> str:
        threads.append(threading.current_thread().name)
        return fetch()

    monkeypatch.setattr(identity, "jwt_svid", recorded)
    async with _agent(identity, gateway) as agent:
        await agent.bind(task_id="t1")
    assert threads
    assert threading.main_thread().name not in threads


async def test_close_closes_an_owned_identity(identity: FakeIdentity, gateway: FakeGateway) -> None:
    async with _agent(identity, gateway, owns_identity=True):
        pass
    assert identity.closed


async def test_https_verifies_the_gateway_by_spiffe_id(identity: FakeIdentity) -> None:
    agent = AsyncAgent("https://gateway.example", identity, server_id="spiffe://sdk.example/gw")
    context = agent._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert isinstance(context, GatewayContext)
    assert context.expected_spiffe_id == "spiffe://sdk.example/gw"
    await agent.close()


async def test_connect_fails_cleanly_without_a_workload_api() -> None:
    with pytest.raises(IdentityError):
        await AsyncAgent.connect(URL, socket_path="/nonexistent/agent.sock", identity_timeout=0.5)


async def test_an_asked_call_waits_then_runs_or_is_denied(
    identity: FakeIdentity, gateway: FakeGateway
) -> None:
    approvals = Approvals(gateway, ["pending", "approved"])
    async with _agent(identity, gateway, timeout=5) as agent:
        await agent.bind(task_id="t1")
        result = await agent.call("echo", {"msg": "pay"}, approval_timeout=5)
        assert result.result is not None
        assert [a for a, _ in approvals.sent] == [None, "a1"]
        Approvals(gateway, ["expired"])
        with pytest.raises(ApprovalPending) as caught:
            await agent.call("echo", {"msg": "pay"})
        with pytest.raises(CallDenied, match="expired"):
            await agent.wait_for_approval(caught.value, timeout=5)
        Approvals(gateway, ["pending"])
        with pytest.raises(ApprovalPending):
            await agent.call("echo", {"msg": "pay"}, approval_timeout=0.01)
        with pytest.raises(ValueError):
            await agent.wait_for_approval(ApprovalPending("no id"))


async def test_proxy_headers(identity: FakeIdentity, gateway: FakeGateway) -> None:
    async with AsyncAgent(URL, identity, transport=httpx.MockTransport(gateway)) as agent:
        await agent.bind(task_id="t1")
        headers = await agent.proxy_headers("api.example.com", 443, method="GET")
    assert set(headers) == {"Proxy-Authorization", "Ztgate-Warrant", "Ztgate-Proof"}
