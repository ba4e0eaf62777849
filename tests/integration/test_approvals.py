"""Approvals end to end: a real gateway whose default policy asks about critical tools.

An SDK agent's critical call gets 202 and waits; a principal approves it
(the CLI, or the HTTP API) and the waiting call runs; a rejected one is
denied with the comment; an approval is bound to the very call and used once;
a request that expires undecided cannot be approved, and its call is denied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.attestation import process_selectors
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.sdk import Agent, ApprovalPending, CallDenied, Principal
from ztgate.testing import make_settings

from .harness import GatewayProcess, Upstream, critical_tools, gateway_toml, main_tools

AGENT = "spiffe://ztgate.local/agent/approvals"
JUSTIFICATION = "the user asked to pay the invoice"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("approvals")
    tools = [
        *main_tools(upstream, dead_port, tag="approvals"),
        *critical_tools(upstream, "approvals"),
    ]
    toml = gateway_toml(tools, gateway={"authentication": "required"})
    toml = "[approvals]\ntool_timeout_seconds = { pay_fast = 1.0 }\n\n" + toml
    make_settings(workdir, toml)
    process = GatewayProcess(workdir)
    process.start()
    database = load_settings(process.config).open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(AGENT, process_selectors())
        principals = PrincipalRegistry(database, SystemClock())
        principals.add("alice", roles=["approver"])
        process.keys = {  # type: ignore[attr-defined]
            "admin": principals.create_key("admin")[1],
            "alice": principals.create_key("alice")[1],
        }
    finally:
        database.dispose()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def agent(gateway: GatewayProcess) -> Iterator[Agent]:
    keys: dict[str, str] = gateway.keys  # type: ignore[attr-defined]
    with Principal(gateway.url, keys["admin"], timeout=10) as principal:
        task_id = principal.create_task(
            agent=AGENT,
            intent="pay the acme invoice",
            scope={"tools": {"pay": {}, "pay_fast": {}, "lookup": {}}},
        ).task_id
    socket_path = str(gateway.workdir / ".ztgate" / "agent.sock")
    with Agent.connect(gateway.url, socket_path=socket_path, spiffe_id=AGENT, timeout=10) as client:
        client.bind(task_id=task_id)
        yield client


def _api(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> httpx.Response:
    keys: dict[str, str] = gateway.keys  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {keys['alice']}"}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        return client.request(method, path, headers=headers, json=body)


def _pending(agent: Agent, tool: str, arguments: dict[str, Any]) -> ApprovalPending:
    with pytest.raises(ApprovalPending) as caught:
        agent.call(tool, arguments, justification=JUSTIFICATION)
    assert caught.value.approval_id is not None
    return caught.value


def _wait_listed(gateway: GatewayProcess, tool: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = _api(gateway, "GET", "/v1/approvals").json()["approvals"]
        for approval in listed:
            if approval["request"]["tool"] == tool:
                return dict(approval)
        time.sleep(0.05)
    raise AssertionError(f"no pending approval for {tool}")


def test_a_waiting_call_runs_once_approved_with_the_cli(
    gateway: GatewayProcess, agent: Agent
) -> None:
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = agent.call(
                "pay",
                {"to": "acme", "amount": 100},
                justification=JUSTIFICATION,
                approval_timeout=30,
            )
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    waiter = threading.Thread(target=call)
    waiter.start()
    request = _wait_listed(gateway, "pay")
    shown = request["request"]
    assert (shown["agent"], shown["principal"], shown["risk"]) == (AGENT, "admin", "critical")
    assert shown["intent"] == "pay the acme invoice"
    assert shown["justification"] == JUSTIFICATION
    assert shown["reasons"][0]["check"] == "policy"
    done = gateway.cli(
        "approvals", "approve", request["id"], "--principal", "alice", "--comment", "ok"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    waiter.join(30)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result.result is not None
    checks = {v.check: v for v in result.verdicts}
    assert checks["approval"].outcome == "allow"
    assert "approved by alice" in checks["approval"].reason
    records = gateway.audit_records(result.call_id)
    assert records[-1]["outcome"] == "allow"
    used = _api(gateway, "GET", f"/v1/approvals/{request['id']}").json()["approval"]
    assert (used["state"], used["used_call_id"]) == ("used", result.call_id)
    gateway.verify_audit()


def test_a_rejected_call_is_denied_with_the_comment(gateway: GatewayProcess, agent: Agent) -> None:
    pending = _pending(agent, "pay", {"to": "mallory", "amount": 9999})
    rejected = _api(
        gateway, "POST", f"/v1/approvals/{pending.approval_id}/reject", {"comment": "unknown payee"}
    )
    assert rejected.status_code == 200, rejected.text
    with pytest.raises(CallDenied, match="unknown payee"):
        agent.wait_for_approval(pending, timeout=5)


def test_an_approval_is_bound_to_the_call_and_used_once(
    gateway: GatewayProcess, agent: Agent
) -> None:
    arguments = {"to": "acme", "amount": 50}
    pending = _pending(agent, "pay", arguments)
    approved = _api(gateway, "POST", f"/v1/approvals/{pending.approval_id}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["approval"]["decided_key"] is not None
    changed = {"to": "acme", "amount": 5000}
    with pytest.raises(CallDenied, match="the arguments changed"):
        agent._call("pay", changed, JUSTIFICATION, None, pending.approval_id)
    result = agent.wait_for_approval(pending, timeout=5)  # still unused: runs once
    assert result.result is not None
    with pytest.raises(CallDenied, match="used"):
        agent._call("pay", arguments, JUSTIFICATION, None, pending.approval_id)


def test_an_approval_after_the_timeout_is_refused(gateway: GatewayProcess, agent: Agent) -> None:
    pending = _pending(agent, "pay_fast", {"to": "acme", "amount": 1})
    assert pending.expires_at is not None
    time.sleep(max(0.0, pending.expires_at - time.time()) + 0.2)
    late = _api(gateway, "POST", f"/v1/approvals/{pending.approval_id}/approve")
    assert late.status_code == 409 and "expired" in late.json()["detail"]
    with pytest.raises(CallDenied, match="expired"):
        agent.wait_for_approval(pending, timeout=5)
