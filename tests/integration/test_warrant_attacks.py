"""The attacks warrants and proofs exist to stop, each against a real gateway process over HTTP.

Every one is refused with a reason that names what failed, and recorded in
the audit log under the call's id. The agent's credentials are made as the
SDK makes them (an X.509-SVID's key, a JWT-SVID, a bound warrant); each
attack then changes one thing.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint
from ztgate.warrants.token import verify

from .harness import GatewayProcess, Upstream, gateway_toml, main_tools, make_client
from .test_authentication import _register

AGENT = "spiffe://ztgate.local/agents/attacked"
OTHER = "spiffe://ztgate.local/agents/other"
SUB = "spiffe://ztgate.local/agents/sub"
ARGS = {"q": "lisbon", "n": 1}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("attacks")
    toml = gateway_toml(
        main_tools(upstream, dead_port, tag="attacks"), gateway={"authentication": "required"}
    )
    make_settings(workdir, toml)
    for spiffe_id in (AGENT, OTHER, SUB):
        _register(workdir, spiffe_id)
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Agent:
    """An agent's key, JWT-SVID and a task's warrant bound to that key."""

    def __init__(
        self, workdir: Path, spiffe_id: str, tools: dict[str, Any], key: Any = None
    ) -> None:
        ca = CertificateAuthority.load(workdir / ".ztgate" / "ca", SystemClock())
        self.key = key or ca.issue_x509_svid(spiffe_id).private_key
        self.bearer = ca.issue_jwt_svid(spiffe_id, ["ztgate"], ttl=300)
        self.registry = _registry(workdir)
        task, record, warrant = self.registry.create(
            principal="admin",
            agent=spiffe_id,
            intent="an attack test",
            scope={"tools": tools},
            agent_jkt=key_thumbprint(self.key),
        )
        assert warrant is not None
        self.task_id, self.warrant_id, self.warrant = task.id, record.id, warrant

    def proof(self, tool: str | None, arguments: dict[str, Any], **changes: Any) -> str:
        fields: dict[str, Any] = {
            "audience": "ztgate",
            "task_id": self.task_id,
            "warrant": self.warrant,
            "canonical": canonical_json(arguments),
            "tool": tool,
            "issued_at": time.time(),
        }
        fields.update(changes)
        key = fields.pop("key", self.key)
        return proof.sign(key, **fields)

    def headers(self, signed: str, warrant: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.bearer}",
            "Ztgate-Warrant": warrant or self.warrant,
            "Ztgate-Proof": signed,
        }


def _registry(workdir: Path) -> TaskRegistry:
    settings = load_settings(workdir / "ztgate.toml")
    return TaskRegistry.from_settings(settings, settings.open_database(), SystemClock())


def _post(gateway: GatewayProcess, body: Any, headers: dict[str, str]) -> httpx.Response:
    with make_client(gateway.url) as client:
        if isinstance(body, bytes):
            return client.post(
                "/v1/calls", content=body, headers={**headers, "content-type": "application/json"}
            )
        return client.post("/v1/calls", json=body, headers=headers)


def _refused(gateway: GatewayProcess, response: httpx.Response, check: str, reason: str) -> None:
    """403 naming `check` and `reason`, and the same in the call's audit record."""
    assert response.status_code == 403, response.text
    problem = response.json()
    (deciding,) = problem["reasons"]
    assert deciding["check"] == check, deciding
    assert reason in deciding["reason"], deciding
    (record,) = gateway.audit_records(problem["call_id"])
    assert (record["outcome"], record["status"]) == ("deny", 403)
    assert any(reason in r["reason"] for r in record["reasons"])


@pytest.fixture(scope="module")
def agent(gateway: GatewayProcess) -> Agent:
    return Agent(gateway.workdir, AGENT, {"lookup": {}})


def _call(tool: str = "lookup", arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"tool": tool, "arguments": ARGS if arguments is None else arguments}


def test_a_good_call_is_allowed_and_names_its_task(gateway: GatewayProcess, agent: Agent) -> None:
    response = _post(gateway, _call(), agent.headers(agent.proof("lookup", ARGS)))
    assert response.status_code == 200, response.text
    (record,) = gateway.audit_records(response.json()["call_id"])
    assert record["task_id"] == agent.task_id and record["agent"] == AGENT


def test_a_replayed_proof_is_refused(gateway: GatewayProcess, agent: Agent) -> None:
    headers = agent.headers(agent.proof("lookup", ARGS))
    assert _post(gateway, _call(), headers).status_code == 200
    _refused(gateway, _post(gateway, _call(), headers), "proof", "already used (replay)")


@pytest.mark.parametrize(
    ("signed_tool", "signed_args", "sent", "reason"),
    [
        (
            "lookup",
            {"q": "lisbon", "n": 1},
            _call("lookup", {"q": "paris", "n": 1}),
            "other arguments",
        ),
        (
            "lookup",
            {"q": "lisbon", "n": 1},
            _call("lookup", {"q": "lisbon", "n": 2}),
            "other arguments",
        ),
        ("lookup", {"q": "lisbon", "n": 1}, _call("lookup", {"q": "lisbon"}), "other arguments"),
        ("echo", {"q": "lisbon", "n": 1}, _call("lookup"), "another tool"),
    ],
)
def test_a_proof_for_one_call_attached_to_another_is_refused(
    gateway: GatewayProcess,
    agent: Agent,
    signed_tool: str,
    signed_args: dict[str, Any],
    sent: dict[str, Any],
    reason: str,
) -> None:
    headers = agent.headers(agent.proof(signed_tool, signed_args))
    _refused(gateway, _post(gateway, sent, headers), "proof", reason)


def test_the_same_arguments_in_another_key_order_or_number_form_verify(
    gateway: GatewayProcess, agent: Agent
) -> None:
    signed = agent.proof("lookup", {"q": "lisbon", "n": 1})
    body = b'{"arguments": {"n": 1.0, "q": "lisbon"}, "tool": "lookup"}'
    response = _post(gateway, body, agent.headers(signed))
    assert response.status_code == 200, response.text
    body = b'{"tool": "lookup", "arguments": {"n": 1E0, "q": "lisb\\u006fn"}}'
    response = _post(gateway, body, agent.headers(agent.proof("lookup", ARGS)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("offset", "what"), [(-120, "old"), (120, "from the future")])
def test_a_proof_outside_the_window_is_refused(
    gateway: GatewayProcess, agent: Agent, offset: float, what: str
) -> None:
    headers = agent.headers(agent.proof("lookup", ARGS, issued_at=time.time() + offset))
    _refused(gateway, _post(gateway, _call(), headers), "proof", "outside the")


def test_a_proof_signed_by_another_agents_key_is_refused(
    gateway: GatewayProcess, agent: Agent
) -> None:
    other = Agent(gateway.workdir, OTHER, {"lookup": {}})
    headers = agent.headers(agent.proof("lookup", ARGS, key=other.key))
    _refused(gateway, _post(gateway, _call(), headers), "proof", "not bound to")


def test_another_agents_warrant_is_refused(gateway: GatewayProcess, agent: Agent) -> None:
    other = Agent(gateway.workdir, OTHER, {"lookup": {}})
    # The other agent's warrant and its own valid proof, but the caller is `agent`.
    signed = other.proof("lookup", ARGS)
    headers = {**agent.headers(signed, warrant=other.warrant)}
    _refused(gateway, _post(gateway, _call(), headers), "warrant", f"is for {OTHER}")


def test_a_warrant_of_task_a_used_for_task_b_is_refused(
    gateway: GatewayProcess, agent: Agent
) -> None:
    task_b = Agent(gateway.workdir, AGENT, {"lookup": {}}, key=agent.key)
    # The proof names task B, the warrant is task A's (both this agent's).
    signed = agent.proof("lookup", ARGS, task_id=task_b.task_id)
    _refused(gateway, _post(gateway, _call(), agent.headers(signed)), "proof", "another task")
    # Task B's warrant with a proof made for task A's warrant.
    signed = agent.proof("lookup", ARGS)
    headers = agent.headers(signed, warrant=task_b.warrant)
    _refused(gateway, _post(gateway, _call(), headers), "proof", "another task")


def test_a_call_outside_the_scope_is_refused(gateway: GatewayProcess) -> None:
    limited = Agent(
        gateway.workdir,
        AGENT,
        {"lookup": {"limits": {"q": {"enum": ["lisbon", "oslo"]}, "n": {"maximum": 5}}}},
    )
    for arguments, reason in (
        ({"q": "paris", "n": 1}, "argument /q is not one of the scope's allowed values"),
        ({"q": "oslo", "n": 6}, "argument /n is above the scope's maximum 5"),
    ):
        headers = limited.headers(limited.proof("lookup", arguments))
        _refused(gateway, _post(gateway, _call("lookup", arguments), headers), "scope", reason)
    headers = limited.headers(limited.proof("echo", {}))
    _refused(
        gateway, _post(gateway, _call("echo", {}), headers), "scope", "not in the task's scope"
    )


@pytest.mark.parametrize(
    "tool",
    [
        "lookup\u200b",  # a zero-width space
        "\uff4c\uff4f\uff4f\uff4b\uff55\uff50",  # fullwidth: NFKC-equal to "lookup"
        "lo\u043ekup",  # a Cyrillic o
        unicodedata.normalize("NFD", "lookupé"),
    ],
)
def test_unicode_lookalike_tool_names_are_refused(
    gateway: GatewayProcess, agent: Agent, tool: str
) -> None:
    # Signed honestly for the name sent: still not the tool the scope allows.
    headers = agent.headers(agent.proof(tool, ARGS))
    _refused(gateway, _post(gateway, _call(tool), headers), "scope", "not in the task's scope")


def test_a_warrant_after_the_task_is_completed_or_revoked_is_refused(
    gateway: GatewayProcess,
) -> None:
    for end in ("complete", "revoke"):
        doomed = Agent(gateway.workdir, AGENT, {"lookup": {}})
        first = _post(gateway, _call(), doomed.headers(doomed.proof("lookup", ARGS)))
        assert first.status_code == 200, first.text
        done = gateway.cli("tasks", end, doomed.task_id)
        assert done.returncode == 0, done.stderr
        response = _post(gateway, _call(), doomed.headers(doomed.proof("lookup", ARGS)))
        state = "completed" if end == "complete" else "revoked"
        _refused(gateway, response, "warrant", f"is {state}")


def test_a_delegated_warrant_cannot_widen_and_dies_with_its_parent(
    gateway: GatewayProcess,
) -> None:
    parent = Agent(gateway.workdir, AGENT, {"lookup": {"limits": {"n": {"maximum": 5}}}})
    registry = _registry(gateway.workdir)
    verified = verify(
        parent.warrant,
        {registry.key.kid: registry.key.public_key},
        issuer=registry.issuer,
        audience="ztgate",
        now=time.time(),
    )
    for widened, reason in (
        ({"tools": {"echo": {}}}, "adds tool 'echo'"),
        ({"tools": {"lookup": {"limits": {"n": {"maximum": 50}}}}}, "above the parent's"),
    ):
        with pytest.raises(Exception, match=reason):
            registry.delegate(verified, agent=SUB, scope=widened)
    # Through the HTTP operation too, proven by the parent's key.
    body = {"agent": SUB, "scope": {"tools": {"echo": {}}}}
    signed = parent.proof(None, body, op="delegate")
    with make_client(gateway.url) as client:
        refused = client.post("/v1/warrants/delegate", json=body, headers=parent.headers(signed))
    assert refused.status_code == 403, refused.text
    assert "adds tool 'echo'" in refused.json()["detail"]
    # A narrower delegation works; the sub-agent is refused what the parent lacked.
    sub = Agent(gateway.workdir, SUB, {"lookup": {}})
    record, token = registry.delegate(
        verified, agent=SUB, scope={"tools": {"lookup": {"limits": {"n": {"maximum": 2}}}}},
        jkt=key_thumbprint(sub.key),
    )  # fmt: skip
    assert token is not None
    sub.warrant, sub.task_id = token, parent.task_id
    ok = _post(gateway, _call(), sub.headers(sub.proof("lookup", ARGS)))
    assert ok.status_code == 200, ok.text
    over = {"q": "x", "n": 3}
    _refused(
        gateway,
        _post(gateway, _call("lookup", over), sub.headers(sub.proof("lookup", over))),
        "scope",
        "above the scope's maximum 2",
    )
    # Revoking the parent warrant ends the sub-agent's at once.
    done = gateway.cli("tasks", "revoke-warrant", parent.warrant_id)
    assert done.returncode == 0, done.stderr
    response = _post(gateway, _call(), sub.headers(sub.proof("lookup", ARGS)))
    _refused(gateway, response, "warrant", "a warrant above it")
    assert record.parent_id == parent.warrant_id
