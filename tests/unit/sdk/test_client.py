"""The sync Agent against the in-memory gateway (warrants and proofs checked by ztgate's code)."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from ztgate.sdk.client import Agent
from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallFailed,
    CallTimeout,
    TransportError,
    Unauthenticated,
    ZtgateError,
)
from ztgate.sdk.models import Delegation, Grant, Reason
from ztgate.sdk.tls import GatewayContext

from .conftest import SUB_AGENT, Approvals, FakeGateway, FakeIdentity, problem

URL = "http://127.0.0.1:8470"


@pytest.fixture
def agent(identity: FakeIdentity, gateway: FakeGateway) -> Agent:
    return Agent(URL, identity, transport=httpx.MockTransport(gateway), timeout=5)


def test_bind_then_call(agent: Agent, gateway: FakeGateway, identity: FakeIdentity) -> None:
    assert agent.warrant is None
    warrant = agent.bind(task_id="t1")
    assert agent.warrant == warrant
    assert (warrant.task_id, warrant.warrant_id, warrant.jkt) == (
        "t1",
        "w-root",
        identity.current.jkt,
    )
    result = agent.call("echo", {"msg": "hi"}, justification="the user asked")
    assert result.result == {"echo": {"msg": "hi"}, "justification": "the user asked"}
    assert result.verdicts == (Reason("scope", "allow", "in scope"),)
    assert result.call_id.startswith("c-")
    assert agent.spiffe_id == identity.spiffe_id
    assert gateway.paths() == ["/v1/warrants/bind", "/v1/calls"]


def test_a_call_without_a_warrant_is_refused_locally(agent: Agent, gateway: FakeGateway) -> None:
    with pytest.raises(ZtgateError, match="bind"):
        agent.call("echo")
    assert gateway.requests == []
    with pytest.raises(ValueError, match="task_id"):
        agent.bind()


def test_a_rotated_svid_is_bound_again_before_the_next_call(
    agent: Agent, gateway: FakeGateway, identity: FakeIdentity
) -> None:
    agent.bind(task_id="t1")
    agent.call("echo", {"n": 1})
    old = agent.warrant
    identity.rotate()
    agent.call("echo", {"n": 2})
    assert gateway.paths() == ["/v1/warrants/bind", "/v1/calls", "/v1/warrants/bind", "/v1/calls"]
    assert agent.warrant is not None and old is not None
    assert agent.warrant.jkt == identity.current.jkt != old.jkt
    assert gateway.binds[1] == {
        "task_id": "t1",
        "warrant_id": "w-root",
        "x5c": list(identity.current.x5c),
    }
    agent.call("echo", {"n": 3})
    assert gateway.paths().count("/v1/warrants/bind") == 2  # no rotation, no bind


def test_a_denied_call_names_the_reasons(agent: Agent) -> None:
    agent.bind(task_id="t1")
    with pytest.raises(CallDenied) as caught:
        agent.call("search", {"q": "DROP TABLE"})
    assert caught.value.call_id == "c-403"
    [reason] = caught.value.reasons
    assert (reason.check, reason.outcome) == ("scope", "deny")
    assert "/q" in reason.reason


def test_every_proof_is_new_and_nothing_is_retried(agent: Agent, gateway: FakeGateway) -> None:
    agent.bind(task_id="t1")
    for n in range(3):
        agent.call("echo", {"n": n})
    proofs = [r.headers["ztgate-proof"] for r in gateway.requests]
    assert len(set(proofs)) == len(proofs) == 4

    def fail(request: httpx.Request) -> httpx.Response | None:
        return problem(502, "the tool failed", call_id="c-502")

    gateway.override = fail
    with pytest.raises(CallFailed, match="the tool failed"):
        agent.call("echo")
    assert len(gateway.requests) == 5


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ReadTimeout("slow"), CallTimeout),
        (httpx.ConnectError("refused"), TransportError),
        (httpx.RemoteProtocolError("garbage"), TransportError),
    ],
)
def test_transport_failures_are_typed(
    agent: Agent, gateway: FakeGateway, failure: Exception, kind: type[Exception]
) -> None:
    agent.bind(task_id="t1")

    def broken(request: httpx.Request) -> httpx.Response | None:
        raise failure

    gateway.override = broken
    with pytest.raises(kind):
        agent.call("echo")


def test_unauthenticated(agent: Agent, gateway: FakeGateway) -> None:
    gateway.override = lambda request: problem(401, "revoked", call_id="c-401")
    with pytest.raises(Unauthenticated, match="revoked"):
        agent.bind(task_id="t1")


def test_timeouts_apply_per_request(identity: FakeIdentity, gateway: FakeGateway) -> None:
    seen: list[object] = []

    def record(request: httpx.Request) -> httpx.Response | None:
        seen.append(request.extensions["timeout"])
        return None

    gateway.override = record
    agent = Agent(URL, identity, transport=httpx.MockTransport(gateway), timeout=7)
    agent.bind(task_id="t1")
    agent.call("echo", timeout=0.25)
    assert seen[0] == {"connect": 7, "read": 7, "write": 7, "pool": 7}
    assert seen[1] == {"connect": 0.25, "read": 0.25, "write": 0.25, "pool": 0.25}


def test_delegate_and_bind_the_delegation(
    agent: Agent, gateway: FakeGateway, identity: FakeIdentity
) -> None:
    agent.bind(task_id="t1")
    delegation = agent.delegate(SUB_AGENT, scope={"tools": {"echo": {}}}, expires_in_seconds=60)
    assert delegation == Delegation("w-child", "t1", delegation.expires_at, 1)
    body = orjson.loads(gateway.requests[-1].content)
    assert body == {"agent": SUB_AGENT, "scope": {"tools": {"echo": {}}}, "expires_in_seconds": 60}
    with pytest.raises(CallDenied, match="adds a tool"):
        agent.delegate(SUB_AGENT, scope={"tools": {"rm": {}}})

    sub_identity = FakeIdentity(identity.ca, SUB_AGENT)
    sub = Agent(URL, sub_identity, transport=httpx.MockTransport(gateway))
    warrant = sub.bind(grant=delegation.to_json())
    assert (warrant.task_id, warrant.warrant_id, warrant.jkt) == (
        "t1",
        "w-child",
        sub_identity.current.jkt,
    )
    assert gateway.binds[-1]["warrant_id"] == "w-child"
    assert sub.bind(grant=delegation).warrant_id == "w-child"
    assert sub.bind("t1", "w-child").warrant_id == "w-child"
    assert sub.bind(grant=Grant("t1", "w-child")).warrant_id == "w-child"


def test_close_closes_an_owned_identity(identity: FakeIdentity, gateway: FakeGateway) -> None:
    with Agent(URL, identity, transport=httpx.MockTransport(gateway)):
        pass
    assert not identity.closed
    with Agent(URL, identity, transport=httpx.MockTransport(gateway), owns_identity=True):
        pass
    assert identity.closed


def test_https_verifies_the_gateway_by_spiffe_id(identity: FakeIdentity) -> None:
    with Agent("https://gateway.example:8470", identity) as agent:
        transport = agent._http._transport
        context = transport._pool._ssl_context  # type: ignore[attr-defined]
        assert isinstance(context, GatewayContext)
        assert context.expected_spiffe_id == "spiffe://sdk.example/ztgate/gateway"


def test_bind_refused_for_another_key(agent: Agent, gateway: FakeGateway) -> None:
    good = gateway.override

    def other_key(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/bind"):
            gateway.override = good
            response = gateway(request)
            data = response.json()
            data["warrant"] = data["warrant"].split(".")[0] + ".e30.sig"  # claims: {}
            return httpx.Response(200, json=data)
        return None

    gateway.override = other_key
    with pytest.raises(TransportError, match="another key"):
        agent.bind(task_id="t1")
    assert agent.warrant is None


def test_connect_fails_cleanly_without_a_workload_api(tmp_path: object) -> None:
    from ztgate.sdk.errors import IdentityError

    started = time.monotonic()
    with pytest.raises(IdentityError):
        Agent.connect(URL, socket_path="/nonexistent/agent.sock", identity_timeout=0.5)
    assert time.monotonic() - started < 5


def test_an_asked_call_waits_and_is_re_sent_as_asked_with_the_approval(
    agent: Agent, gateway: FakeGateway
) -> None:
    approvals = Approvals(gateway, ["pending", "approved"])
    agent.bind(task_id="t1")
    result = agent.call("echo", {"msg": "pay"}, justification="asked", approval_timeout=5)
    assert result.result == {"echo": {"msg": "pay"}, "justification": "asked"}
    (first, _), (second, _) = approvals.sent
    assert (first, second) == (None, "a1")
    assert approvals.sent[0][1] == approvals.sent[1][1]  # the very same call
    calls = [r for r in gateway.requests if r.url.path == "/v1/calls"]
    assert calls[0].headers["ztgate-proof"] != calls[1].headers["ztgate-proof"]  # fresh proof


def test_without_waiting_the_pending_approval_is_raised_and_can_be_waited_on(
    agent: Agent, gateway: FakeGateway
) -> None:
    Approvals(gateway, ["approved"])
    agent.bind(task_id="t1")
    with pytest.raises(ApprovalPending) as caught:
        agent.call("echo", {"msg": "pay"})
    pending = caught.value
    assert (pending.approval_id, pending.expires_at, pending.tool) == ("a1", 2e9, "echo")
    assert agent.wait_for_approval(pending, timeout=5).result is not None
    with pytest.raises(ValueError):
        agent.wait_for_approval(ApprovalPending("no id"))


def test_a_rejected_or_undecided_approval(agent: Agent, gateway: FakeGateway) -> None:
    Approvals(gateway, ["rejected"], reason="approval a1 was rejected by bob: no")
    agent.bind(task_id="t1")
    with pytest.raises(CallDenied, match="rejected by bob"):
        agent.call("echo", {"msg": "pay"}, approval_timeout=5)
    Approvals(gateway, ["pending"])
    with pytest.raises(ApprovalPending):
        agent.call("echo", {"msg": "pay"}, approval_timeout=0.01)


def test_proxy_headers_need_a_warrant_and_are_fresh_for_each_connection(
    agent: Agent, gateway: FakeGateway, identity: FakeIdentity
) -> None:
    with pytest.raises(ZtgateError, match="bind"):
        agent.proxy_headers("api.example.com", 443)
    agent.bind(task_id="t1")
    first = agent.proxy_headers("api.example.com", 443)
    second = agent.proxy_headers("api.example.com", 443)
    assert first["Ztgate-Warrant"] == second["Ztgate-Warrant"] == agent.warrant.token  # type: ignore[union-attr]
    assert first["Proxy-Authorization"].startswith("Bearer ")
    assert first["Ztgate-Proof"] != second["Ztgate-Proof"]  # one proof, one connection
    assert gateway.paths() == ["/v1/warrants/bind"]  # made locally, nothing sent
