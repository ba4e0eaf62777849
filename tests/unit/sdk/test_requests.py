from __future__ import annotations

import math
import time
from typing import Any

import httpx
import orjson
import pytest

from ztgate.canonical import canonical_json
from ztgate.sdk import requests
from ztgate.sdk.errors import (
    ApprovalPending,
    CallDenied,
    CallFailed,
    CallTimeout,
    TransportError,
    Unauthenticated,
)
from ztgate.sdk.models import BoundWarrant, Grant, Reason, SvidKey
from ztgate.warrants import proof as proofs
from ztgate.warrants.token import warrant_hash

from .conftest import AUDIENCE, FakeIdentity, problem

WARRANT = BoundWarrant("eyJ.warrant.token", "w1", "t1", "jkt-of-key", time.time() + 600)


def _verified(request: requests.HttpRequest, svid: SvidKey) -> proofs.Proof:
    return proofs.ProofVerifier().verify(request.headers["Ztgate-Proof"], jkt=svid.jkt)


def test_bind_request_proves_the_key_over_the_body(identity: FakeIdentity) -> None:
    svid = identity.svid()
    now = time.time()
    request = requests.bind_request(
        svid, Grant("t1", "w9"), audience=AUDIENCE, issued_at=now, bearer="jwt"
    )
    assert (request.method, request.path) == ("POST", "/v1/warrants/bind")
    body = orjson.loads(request.content)
    assert body == {"task_id": "t1", "warrant_id": "w9", "x5c": list(svid.x5c)}
    assert request.content == canonical_json(body)
    assert request.headers["Authorization"] == "Bearer jwt"
    assert request.headers["Content-Type"] == "application/json"
    proof = _verified(request, svid)
    proofs.expect(
        proof,
        audience=AUDIENCE,
        task_id="t1",
        ath=warrant_hash(""),
        canonical=request.content,
        now=now,
        window=1,
        op="bind",
    )


def test_bind_request_for_the_tasks_own_warrant_names_no_warrant(identity: FakeIdentity) -> None:
    request = requests.bind_request(identity.svid(), Grant("t1"), audience=AUDIENCE, issued_at=0)
    assert set(orjson.loads(request.content)) == {"task_id", "x5c"}
    assert "Authorization" not in request.headers


def test_call_request(identity: FakeIdentity) -> None:
    svid = identity.svid()
    now = time.time()
    arguments = {"b": [1, 2.5], "a": "é"}
    request = requests.call_request(
        svid,
        WARRANT,
        "search",
        arguments,
        audience=AUDIENCE,
        issued_at=now,
        bearer="jwt",
        justification='asked "nicely"',
    )
    assert (request.method, request.path) == ("POST", "/v1/calls")
    assert orjson.loads(request.content) == {
        "tool": "search",
        "arguments": arguments,
        "justification": 'asked "nicely"',
    }
    assert request.headers["Ztgate-Warrant"] == WARRANT.token
    assert request.headers["Authorization"] == "Bearer jwt"
    proof = _verified(request, svid)
    proofs.expect(
        proof,
        audience=AUDIENCE,
        task_id="t1",
        ath=warrant_hash(WARRANT.token),
        canonical=canonical_json(arguments),
        now=now,
        window=1,
        tool="search",
    )
    again = requests.call_request(
        svid, WARRANT, "search", arguments, audience=AUDIENCE, issued_at=now, bearer="jwt"
    )
    assert "justification" not in orjson.loads(again.content)
    assert _verified(again, svid).jti != proof.jti  # a new proof every time


def test_arguments_without_canonical_form_are_refused_before_sending(
    identity: FakeIdentity,
) -> None:
    with pytest.raises(ValueError, match="arguments"):
        requests.call_request(
            identity.svid(),
            WARRANT,
            "t",
            {"x": math.nan},
            audience=AUDIENCE,
            issued_at=0,
            bearer="j",
        )


def test_delegate_request(identity: FakeIdentity) -> None:
    svid = identity.svid()
    now = time.time()
    scope = {"tools": {"echo": {}}}
    request = requests.delegate_request(
        svid,
        WARRANT,
        "spiffe://x/agent/sub",
        audience=AUDIENCE,
        issued_at=now,
        bearer="jwt",
        scope=scope,
        expires_in_seconds=60,
    )
    body = {"agent": "spiffe://x/agent/sub", "scope": scope, "expires_in_seconds": 60}
    assert request.path == "/v1/warrants/delegate"
    assert orjson.loads(request.content) == body
    assert request.headers["Ztgate-Warrant"] == WARRANT.token
    proofs.expect(
        _verified(request, svid),
        audience=AUDIENCE,
        task_id="t1",
        ath=warrant_hash(WARRANT.token),
        canonical=canonical_json(body),
        now=now,
        window=1,
        op="delegate",
    )
    bare = requests.delegate_request(
        svid, WARRANT, "spiffe://x/agent/sub", audience=AUDIENCE, issued_at=now, bearer="jwt"
    )
    assert orjson.loads(bare.content) == {"agent": "spiffe://x/agent/sub"}


# -- answers ----------------------------------------------------------------------------


def test_parse_call_allowed() -> None:
    answer = {
        "call_id": "c1",
        "outcome": "allow",
        "result": {"ok": True},
        "verdicts": [{"check": "scope", "outcome": "allow", "reason": "fine"}],
    }
    result = requests.parse_call(httpx.Response(200, json=answer))
    assert result.call_id == "c1"
    assert result.result == {"ok": True}
    assert result.verdicts == (Reason("scope", "allow", "fine"),)


def test_parse_call_denied_keeps_reasons() -> None:
    reasons = [{"check": "scope", "outcome": "deny", "reason": "argument /q is too long"}]
    with pytest.raises(CallDenied) as caught:
        requests.parse_call(problem(403, "scope: argument /q", call_id="c2", reasons=reasons))
    denied = caught.value
    assert (denied.status, denied.call_id, denied.message) == (403, "c2", "scope: argument /q")
    assert denied.reasons == (Reason("scope", "deny", "argument /q is too long"),)
    assert denied.problem["reasons"] == reasons


def test_parse_call_asked_raises_approval_pending() -> None:
    answer = {
        "call_id": "c3",
        "outcome": "ask",
        "reasons": [{"check": "risk", "outcome": "ask", "reason": "writes"}],
    }
    with pytest.raises(ApprovalPending) as caught:
        requests.parse_call(httpx.Response(202, json=answer))
    assert caught.value.call_id == "c3"
    assert caught.value.reasons == (Reason("risk", "ask", "writes"),)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, Unauthenticated),
        (403, CallDenied),
        (504, CallTimeout),
        (502, CallFailed),
        (503, CallFailed),
        (422, CallFailed),
        (404, CallFailed),
    ],
)
def test_error_answers_map_to_types(status: int, kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught:
        requests.parse_call(problem(status, "what happened", call_id="c4"))
    error: Any = caught.value
    assert (error.status, error.call_id, error.message) == (status, "c4", "what happened")


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>"),
        httpx.Response(200, json=[1]),
        httpx.Response(200, json={"outcome": "allow"}),  # no call id
        httpx.Response(500, content=b"oops"),
        httpx.Response(202, content=b"[]"),
    ],
)
def test_answers_that_are_not_the_gateways_are_transport_errors(response: httpx.Response) -> None:
    with pytest.raises(TransportError):
        requests.parse_call(response)


def test_error_without_detail_names_the_status() -> None:
    error = requests.error_for(httpx.Response(403, json={"title": "Forbidden"}))
    assert isinstance(error, CallDenied)
    assert error.message == "HTTP 403"
    assert error.reasons == ()


def _bound_token(jkt: str) -> str:
    import base64

    payload = base64.urlsafe_b64encode(orjson.dumps({"cnf": {"jkt": jkt}})).rstrip(b"=")
    return f"eyJhbGciOiJFUzI1NiJ9.{payload.decode()}.sig"


def test_parse_bind() -> None:
    answer = {"warrant": _bound_token("K"), "warrant_id": "w", "task_id": "t", "expires_at": 5}
    warrant = requests.parse_bind(httpx.Response(200, json=answer), expected_jkt="K")
    assert warrant == BoundWarrant(answer["warrant"], "w", "t", "K", 5.0)  # type: ignore[arg-type]
    with pytest.raises(TransportError, match="another key"):
        requests.parse_bind(httpx.Response(200, json=answer), expected_jkt="other")
    garbled = answer | {"warrant": "not-a-jwt"}
    with pytest.raises(TransportError, match="another key"):
        requests.parse_bind(httpx.Response(200, json=garbled), expected_jkt="K")
    with pytest.raises(TransportError, match="expires_at"):
        bad = answer | {"expires_at": "soon"}
        requests.parse_bind(httpx.Response(200, json=bad), expected_jkt="K")
    with pytest.raises(CallDenied, match="task is completed"):
        requests.parse_bind(problem(403, "task is completed"), expected_jkt="K")


def test_parse_delegate() -> None:
    answer = {"warrant_id": "w2", "task_id": "t", "expires_at": 9.5, "depth": 2, "warrant": None}
    delegation = requests.parse_delegate(httpx.Response(201, json=answer))
    assert (delegation.warrant_id, delegation.task_id, delegation.depth) == ("w2", "t", 2)
    assert delegation.expires_at == 9.5
    with pytest.raises(TransportError, match="depth"):
        requests.parse_delegate(httpx.Response(201, json=answer | {"depth": True}))
    with pytest.raises(CallDenied, match="widen"):
        requests.parse_delegate(problem(403, "would widen the scope"))


def test_parse_json() -> None:
    assert requests.parse_json(httpx.Response(201, json={"a": 1})) == {"a": 1}
    with pytest.raises(CallFailed):
        requests.parse_json(problem(409, "conflict"))


def test_the_approval_rides_on_the_call_and_waits_are_long_polls() -> None:
    answer = {"call_id": "c4", "approval": {"id": "a/1", "state": "pending", "expires_at": 5}}
    with pytest.raises(ApprovalPending) as caught:
        requests.parse_call(httpx.Response(202, json=answer))
    assert (caught.value.approval_id, caught.value.expires_at) == ("a/1", 5.0)
    wait = requests.wait_request("a/1", 90)
    assert (wait.method, wait.path) == ("GET", "/v1/approvals/a%2F1/wait?timeout=60")
    view = {"approval": {"id": "a", "state": "rejected", "reason": "no"}}
    assert requests.parse_wait(httpx.Response(200, json=view)) == ("rejected", "no")
    assert requests.parse_wait(httpx.Response(200, json={"approval": {"state": "pending"}})) == (
        "pending",
        "",
    )
    with pytest.raises(TransportError):
        requests.parse_wait(httpx.Response(200, json={"approval": {}}))
    with pytest.raises(CallFailed):
        requests.parse_wait(problem(404, "approval 'a' not found"))


@pytest.mark.parametrize(
    ("host", "port", "method", "seen"),
    [
        ("API.Example.com.", 443, "CONNECT", ("api.example.com", 443)),
        ("[2001:db8::1]", 8443, "CONNECT", ("2001:db8::1", 8443)),
        ("2001:db8::1", 8443, "CONNECT", ("2001:db8::1", 8443)),  # bare, as httpcore gives it
        ("docs.example.org", 80, "GET", ("docs.example.org", 80)),
    ],
)
def test_proxy_headers_prove_the_destination_as_the_proxy_reads_it(
    identity: FakeIdentity, host: str, port: int, method: str, seen: tuple[str, int]
) -> None:
    """What the proof signs is what the proxy computes from the request (egress/agents.py)."""
    from ztgate.egress.agents import egress_arguments
    from ztgate.egress.request import parse_authority

    svid = identity.svid()
    now = time.time()
    headers = requests.proxy_headers(
        svid, WARRANT, host, port, method=method, audience=AUDIENCE, issued_at=now, bearer="jwt"
    )
    assert headers["Proxy-Authorization"] == "Bearer jwt"
    assert headers["Ztgate-Warrant"] == WARRANT.token
    bracketed = f"[{host}]" if ":" in host and "[" not in host else host
    read = parse_authority(f"{bracketed}:{port}")
    assert (read.host, read.port) == seen
    proof = proofs.ProofVerifier().verify(headers["Ztgate-Proof"], jkt=svid.jkt)
    proofs.expect(
        proof,
        audience=AUDIENCE,
        task_id="t1",
        ath=warrant_hash(WARRANT.token),
        canonical=canonical_json(egress_arguments(method, *seen)),
        now=now,
        window=1,
        tool="egress",
    )


def test_proxy_headers_refuse_a_destination_the_proxy_would_not_read(
    identity: FakeIdentity,
) -> None:
    with pytest.raises(ValueError, match="not a destination"):
        requests.proxy_headers(
            identity.svid(), WARRANT, "a b", 443, method="CONNECT", audience=AUDIENCE,
            issued_at=0, bearer="jwt",
        )  # fmt: skip
