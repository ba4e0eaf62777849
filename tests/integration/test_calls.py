"""Calls through the real HTTP front door to a real tool server, and their audit trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .harness import (
    LEAK_MARKER,
    SLOW_TOOL_TIMEOUT,
    GatewayProcess,
    Upstream,
    assert_problem,
)


def _unique() -> str:
    return uuid.uuid4().hex


def _received_ids(upstream: Upstream, path: str) -> set[str]:
    return {call["call_id"] for call in upstream.received(path)}


def test_allowed_call_returns_the_result_and_is_audited(
    client: httpx.Client, gateway: GatewayProcess, upstream: Upstream
) -> None:
    marker = _unique()
    arguments = {"msg": marker, "opts": {"count": 3}}

    response = client.post(
        "/v1/calls",
        json={"tool": "echo", "arguments": arguments, "justification": "integration test"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["outcome"] == "allow"
    assert body["result"] == {"echo": arguments}
    call_id = body["call_id"]
    assert isinstance(call_id, str)
    assert len(call_id) >= 16
    checks = {(v["check"], v["outcome"]) for v in body["verdicts"]}
    assert ("schema", "allow") in checks
    assert ("result_schema", "allow") in checks
    assert all(v["outcome"] == "allow" for v in body["verdicts"])

    # The tool saw exactly this call, with the gateway's call id.
    seen = [c for c in upstream.received("/echo/main") if c["call_id"] == call_id]
    assert [c["arguments"] for c in seen] == [arguments]

    records = gateway.audit_records(call_id)
    assert [(r["kind"], r["outcome"]) for r in records] == [
        ("decision", "allow"),
        ("result", "allow"),
    ]
    decision, result = records
    assert decision["tool"] == "echo"
    assert decision["justification"] == "integration test"
    assert len(decision["arguments_sha256"]) == 64
    assert result["status"] == 200
    assert result["detail"]["upstream_status"] == 200
    assert result["seq"] > decision["seq"]
    gateway.verify_audit()


def test_a_read_is_recorded_once_after_its_result(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    # Reads have no side effects to account for if the gateway dies mid-call,
    # so (by default) they get one record, carrying every check's verdict.
    response = client.post("/v1/calls", json={"tool": "lookup", "arguments": {"q": _unique()}})
    assert response.status_code == 200, response.text
    records = gateway.audit_records(response.json()["call_id"])
    assert [(r["kind"], r["outcome"]) for r in records] == [("result", "allow")]
    checks = {(r["check"], r["outcome"]) for r in records[0]["reasons"]}
    assert {("schema", "allow"), ("result_schema", "allow")} <= checks
    gateway.verify_audit()


def test_same_arguments_in_any_key_order_hash_the_same(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    first = client.post(
        "/v1/calls",
        content=b'{"tool":"echo","arguments":{"msg":"a","opts":{"count":1}}}',
        headers={"content-type": "application/json"},
    )
    second = client.post(
        "/v1/calls",
        content=b'{"arguments":{"opts":{"count":1.0},  "msg":"a"},"tool":"echo"}',
        headers={"content-type": "application/json"},
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    [one] = [r for r in gateway.audit_records(first.json()["call_id"]) if r["kind"] == "decision"]
    [two] = [r for r in gateway.audit_records(second.json()["call_id"]) if r["kind"] == "decision"]
    assert one["arguments_sha256"] == two["arguments_sha256"]


@dataclass(frozen=True)
class Failed:
    """A call that got no result: the answer, its problem document, its audit records."""

    response: httpx.Response
    problem: dict[str, Any]
    records: list[dict[str, Any]]


def _failed_call(
    client: httpx.Client, gateway: GatewayProcess, tool: str, arguments: dict[str, Any]
) -> Failed:
    before = gateway.audit_count()
    response = client.post("/v1/calls", json={"tool": tool, "arguments": arguments})
    problem = response.json()
    records = gateway.audit_records(problem.get("call_id", ""))
    assert gateway.audit_count() == before + 2, "expected a decision and a result record"
    return Failed(response, problem, records)


def _assert_upstream_error(failed: Failed, status: int, slug: str, reason: str) -> None:
    problem = assert_problem(failed.response, status)
    assert problem["type"] == f"urn:ztgate:problem:{slug}"
    assert reason in problem["detail"]
    assert problem["call_id"]
    assert "result" not in problem
    assert [(r["kind"], r["outcome"]) for r in failed.records] == [
        ("decision", "allow"),
        ("result", "error"),
    ]
    assert failed.records[1]["status"] == status
    assert any(reason in r["reason"] for r in failed.records[1]["reasons"]), failed.records[1]


def test_upstream_timeout_is_504_and_audited(
    client: httpx.Client, gateway: GatewayProcess, upstream: Upstream
) -> None:
    failed = _failed_call(client, gateway, "slow", {"seconds": 2})
    _assert_upstream_error(failed, 504, "upstream-timeout", "did not answer within")
    assert f"{SLOW_TOOL_TIMEOUT:g}s" in failed.problem["detail"]
    assert failed.response.elapsed.total_seconds() < 1.9, "the per-tool timeout was not applied"
    assert failed.problem["call_id"] in _received_ids(upstream, "/sleep")


def test_upstream_http_500_is_502_and_audited(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    failed = _failed_call(client, gateway, "failing", {})
    _assert_upstream_error(failed, 502, "upstream-failed", "answered HTTP 500")
    assert "internal failure in the tool" not in failed.response.text


def test_unreachable_upstream_is_502_and_audited(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    failed = _failed_call(client, gateway, "unreachable", {})
    _assert_upstream_error(failed, 502, "upstream-failed", "unreachable")


def test_upstream_closing_the_connection_is_502_and_audited(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    failed = _failed_call(client, gateway, "closer", {})
    _assert_upstream_error(failed, 502, "upstream-failed", "unreachable")


def test_invalid_json_result_is_502_and_audited(
    client: httpx.Client, gateway: GatewayProcess
) -> None:
    failed = _failed_call(client, gateway, "notjson", {})
    _assert_upstream_error(failed, 502, "upstream-failed", "invalid JSON")
    assert "this is not JSON" not in failed.response.text


def test_non_json_content_type_result_is_502(client: httpx.Client, gateway: GatewayProcess) -> None:
    # The upstream contract (docs/tools.md): a 2xx answer with a JSON content
    # type is the result. A text/plain answer must not reach the agent.
    failed = _failed_call(client, gateway, "plaintext", {})
    assert failed.response.status_code == 502, failed.response.text
    assert "plain text, not JSON" not in failed.response.text
    assert failed.records[-1]["kind"] == "result"
    assert failed.records[-1]["outcome"] in {"error", "deny"}


@pytest.mark.parametrize("tool", ["big", "bigchunked"])
def test_oversized_result_is_502_and_audited(
    client: httpx.Client, gateway: GatewayProcess, tool: str
) -> None:
    failed = _failed_call(client, gateway, tool, {})
    _assert_upstream_error(failed, 502, "upstream-failed", "result is larger than")
    assert "xxxxxxxx" not in failed.response.text


def test_result_matching_output_schema_is_returned(client: httpx.Client) -> None:
    response = client.post("/v1/calls", json={"tool": "shaped", "arguments": {"count": 7}})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"count": 7}


def test_result_violating_output_schema_is_withheld(
    client: httpx.Client, gateway: GatewayProcess, upstream: Upstream
) -> None:
    failed = _failed_call(client, gateway, "shaped", {"leak": True})

    problem = assert_problem(failed.response, 502)
    assert problem["type"] == "urn:ztgate:problem:result-withheld"
    assert "output schema" in problem["detail"]
    assert "/count" in problem["detail"]
    # The tool did run, but nothing of its result reaches the client or the log.
    assert problem["call_id"] in _received_ids(upstream, "/shaped")
    assert LEAK_MARKER not in failed.response.text
    assert "result" not in problem
    assert [(r["kind"], r["outcome"]) for r in failed.records] == [
        ("decision", "allow"),
        ("result", "deny"),
    ]
    assert failed.records[1]["status"] == 502
    assert all(LEAK_MARKER not in str(r) for r in failed.records)
