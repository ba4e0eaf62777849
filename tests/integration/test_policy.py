"""Policy through a real gateway over HTTP: the default set, hot reload, a rejected edit.

The gateway requires authentication; the agent calls with a JWT-SVID, its
task's warrant and a proof per call, as the SDK does. Policy files are edited
in the gateway's policy directory while it runs, the way an operator would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgate.clock import SystemClock
from ztgate.identity.authority import CertificateAuthority
from ztgate.testing import make_settings

from .harness import (
    GatewayProcess,
    TaskCredentials,
    Upstream,
    gateway_toml,
    main_tools,
    make_client,
)
from .test_authentication import _register, _token

AGENT = "spiffe://ztgate.local/agents/ruled"
ARGS = {"q": "lisbon"}
FORBID_LOOKUP = """@id("no-lookups")
@reason("lookups are paused")
forbid (principal, action == Action::"call:lookup", resource);
"""


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("policy")
    tools = [
        *main_tools(upstream, dead_port, tag="policy"),
        {
            "name": "wipe",
            "url": f"{upstream.url}/echo/policy",
            "risk": "critical",
            "input_schema": {"type": "object"},
        },
    ]
    make_settings(workdir, gateway_toml(tools, gateway={"authentication": "required"}))
    _register(workdir, AGENT)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def task(gateway: GatewayProcess) -> TaskCredentials:
    ca = CertificateAuthority.load(gateway.workdir / ".ztgate" / "ca", SystemClock())
    key = ca.issue_x509_svid(AGENT).private_key
    return TaskCredentials(gateway.workdir, AGENT, key, tools=("lookup", "echo", "wipe"))


@pytest.fixture
def policies(gateway: GatewayProcess) -> Iterator[Path]:
    """The gateway's policy directory, put back as it was after the test."""
    directory = gateway.workdir / ".ztgate" / "policies"
    saved = {path.name: path.read_bytes() for path in directory.iterdir()}
    yield directory
    for path in directory.iterdir():
        if path.name not in saved:
            path.unlink() if path.is_file() else shutil.rmtree(path)
    for name, content in saved.items():
        (directory / name).write_bytes(content)


def _call(
    gateway: GatewayProcess, task: TaskCredentials, tool: str = "lookup", arguments: Any = None
) -> httpx.Response:
    arguments = ARGS if arguments is None else arguments
    headers = {
        "Authorization": f"Bearer {_token(gateway.workdir, AGENT)}",
        **task.headers(tool, arguments),
    }
    with make_client(gateway.url) as client:
        return client.post(
            "/v1/calls",
            json={"tool": tool, "arguments": arguments, "justification": "a policy test"},
            headers=headers,
        )


def _policy_reason(response: httpx.Response) -> str:
    assert response.status_code == 403, response.text
    (deciding,) = [r for r in response.json()["reasons"] if r["check"] == "policy"]
    reason: str = deciding["reason"]
    return reason


def test_the_default_set_allows_in_scope_and_asks_for_critical_tools(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    response = _call(gateway, task)
    assert response.status_code == 200, response.text
    (record,) = gateway.audit_records(response.json()["call_id"])
    (policy,) = [r for r in record["reasons"] if r["check"] == "policy"]
    assert policy == {
        "check": "policy",
        "outcome": "allow",
        "reason": "permitted by reads-in-scope (default.cedar:10)",
    }
    assert _call(gateway, task, "echo", {"msg": "hi"}).status_code == 200
    asked = _call(gateway, task, "wipe", {})
    assert asked.status_code == 202, asked.text
    assert asked.json()["outcome"] == "ask"
    assert asked.json()["approval"]["state"] == "pending"
    (record,) = gateway.audit_records(asked.json()["call_id"])
    assert (record["outcome"], record["status"]) == ("ask", 202)
    checks = {r["check"]: r for r in record["reasons"]}
    assert checks["policy"]["outcome"] == "ask"
    assert checks["policy"]["reason"] == (
        "approval required by critical-asks (default.cedar:18): "
        "a critical tool: a human approves each call"
    )


def test_a_hot_reloaded_policy_change_takes_effect_on_the_next_call(
    gateway: GatewayProcess, task: TaskCredentials, policies: Path
) -> None:
    assert _call(gateway, task).status_code == 200
    (policies / "pause.cedar").write_text(FORBID_LOOKUP, encoding="utf-8")
    reason = _policy_reason(_call(gateway, task))  # the very next call
    assert reason == "forbidden by no-lookups (pause.cedar:1): lookups are paused"
    assert _call(gateway, task, "echo", {"msg": "hi"}).status_code == 200
    (policies / "pause.cedar").unlink()
    assert _call(gateway, task).status_code == 200


def test_a_broken_edit_is_rejected_and_the_previous_set_keeps_deciding(
    gateway: GatewayProcess, task: TaskCredentials, policies: Path
) -> None:
    (policies / "pause.cedar").write_text(FORBID_LOOKUP, encoding="utf-8")
    _policy_reason(_call(gateway, task))
    (policies / "pause.cedar").write_text(
        FORBID_LOOKUP + "\npermit (principal, action, resource)\nwhen { principal.rank > 3 };\n",
        encoding="utf-8",
    )
    # Not loaded: the set with the forbid is still in force.
    assert "no-lookups" in _policy_reason(_call(gateway, task))
    status = gateway.cli("policy", "status")
    assert status.returncode == 1, status.stdout + status.stderr
    flat = " ".join(status.stdout.split())
    assert "rejected" in flat
    assert "pause.cedar:6: attribute `rank` on entity type `Agent` not found" in flat
    assert "the files on disk are not the set in force" in flat
    with make_client(gateway.url) as client:
        metrics = client.get("/metrics").text
    assert "ztgate_policy_in_sync 0.0" in metrics
    assert 'ztgate_policy_reloads_total{result="rejected"}' in metrics
    log = gateway.log_path.read_text(errors="replace")
    assert "policy reload rejected" in log and "pause.cedar:6" in log
    (policies / "pause.cedar").unlink()
    assert _call(gateway, task).status_code == 200
    assert gateway.cli("policy", "status").returncode == 0


def test_a_gateway_does_not_start_with_policies_that_do_not_load(
    tmp_path: Path, upstream: Upstream, dead_port: int
) -> None:
    make_settings(tmp_path, gateway_toml(main_tools(upstream, dead_port, tag="broken")))
    (tmp_path / ".ztgate" / "policies" / "default.cedar").write_text(
        "permit (principal, action, resource)\nwhen { ( };\n", encoding="utf-8"
    )
    process = GatewayProcess(tmp_path)
    with pytest.raises(RuntimeError, match=r"default\.cedar:2: unexpected token"):
        process.start(timeout=20)
