"""Agents' connections on the egress proxy: decided by the gateway's checks, held to their lists.

The checks themselves (identity, warrant, proof, scope, halt) have their own
tests; here they are stand-ins that say what the test needs, to see how
their answer becomes a grant or a refusal. The real ones, through a real
gateway, are in tests/integration/test_egress_agents.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ztgate.egress.agents import CHECKS, EGRESS_TOOL, AgentEgress, AgentRefused, egress_arguments
from ztgate.egress.request import bearer_token, parse_head
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.tasks.scope import parse_scope
from ztgate.testing import FrozenClock

AGENT = "spiffe://ztgate.local/agents/fetcher"


@dataclass
class Warrant:
    task_id: str
    scope: Any


@dataclass
class StandIn:
    """A check that answers as told, noting the calls it saw."""

    name: str
    outcome: Outcome = Outcome.ALLOW
    facts: dict[str, Any] = field(default_factory=dict)
    seen: list[ToolCall] = field(default_factory=list)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        self.seen.append(call)
        return Verdict(
            self.name, self.outcome, f"{self.name} says {self.outcome.value}", self.facts
        )


def _checks(task_scope: Any = None, **refusing: Outcome) -> list[StandIn]:
    facts = {
        "authenticate": {"principal.spiffe_id": AGENT},
        "warrant": {"warrant.verified": Warrant("task-7", task_scope), "task.id": "task-7"},
    }
    return [
        StandIn(name, refusing.get(name, Outcome.ALLOW), facts.get(name, {})) for name in CHECKS
    ]


def _request(head: bytes) -> Any:
    return parse_head(head)


CONNECT = (
    b"CONNECT API.Example.com.:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
    b"Proxy-Authorization: Bearer eyJ.a-b_c.d\r\n"
    b"Ztgate-Warrant: w.x.y\r\nZtgate-Proof: p.q.r\r\n\r\n"
)


async def test_a_connection_is_a_call_of_egress_over_its_destination() -> None:
    checks = _checks()
    policy = StandIn("policy")  # not one of the checks that decide a connection
    agents = AgentEgress([*checks, policy], FrozenClock(), allowed_domains=["*.example.com"])
    grant = await agents(_request(CONNECT), "eyJ.a-b_c.d")
    call = checks[0].seen[0]
    assert call.tool == EGRESS_TOOL and call.front_door == "egress"
    # The destination as the proxy reads it (lower case, no trailing dot): what the proof signs.
    assert dict(call.arguments) == egress_arguments("CONNECT", "api.example.com", 443)
    assert (call.credentials.bearer, call.credentials.warrant, call.credentials.proof) == (
        "eyJ.a-b_c.d",
        "w.x.y",
        "p.q.r",
    )
    assert grant.attribution.agent == AGENT and grant.attribution.task_id == "task-7"
    assert grant.rules.allowed_domains == ("*.example.com",)
    assert all(check.seen for check in checks) and not policy.seen


@pytest.mark.parametrize(
    ("refusing", "status"),
    [("authenticate", 407), ("warrant", 403), ("proof", 403), ("scope", 403), ("halt", 403)],
)
async def test_any_check_that_refuses_refuses_the_connection(refusing: str, status: int) -> None:
    agents = AgentEgress(_checks(**{refusing: Outcome.DENY}), FrozenClock())
    with pytest.raises(AgentRefused) as refused:
        await agents(_request(CONNECT), "eyJ.a-b_c.d")
    assert refused.value.status == status
    assert refused.value.reason == f"{refusing}: {refusing} says deny"


def test_every_deciding_check_must_be_there() -> None:
    with pytest.raises(ValueError, match="proof"):
        AgentEgress([c for c in _checks() if c.name != "proof"], FrozenClock())


async def test_the_lists_are_the_gateways_or_the_agents_and_the_tasks() -> None:
    scope = parse_scope(
        {"tools": {"egress": {"limits": {"/host": {"domains": ["api.example.com"]}}}}}
    )
    lists = {AGENT: ["*.example.com"]}
    grant = await AgentEgress(_checks(scope), FrozenClock(), agent_domains=lists)(
        _request(CONNECT), "t"
    )
    assert grant.rules.allowed_domains == ("*.example.com",)  # no gateway list: the agent's
    assert grant.rules.agent_domains == ("*.example.com",)
    assert grant.rules.task_domains == ("api.example.com",)
    nowhere = await AgentEgress(_checks(), FrozenClock())(_request(CONNECT), "t")
    assert nowhere.rules.allowed_domains == ()  # no list at all: nowhere
    assert nowhere.rules.task_domains is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (b"Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        (b"bearer  abc==", "abc=="),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearer", None),
        (b"Bearer abc def", None),
        (b"Bearer ab\xffc", None),
        (None, None),
    ],
)
def test_bearer_tokens_are_read_strictly(value: bytes | None, token: str | None) -> None:
    assert bearer_token(value) == token


def test_the_warrant_and_the_proof_never_reach_the_destination() -> None:
    request = parse_head(
        b"GET http://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\n"
        b"Ztgate-Warrant: w\r\nZtgate-Proof: p\r\nProxy-Authorization: Bearer t\r\n"
        b"Accept: */*\r\n\r\n"
    )
    head = request.upstream_head().lower()
    assert b"ztgate-" not in head and b"proxy-authorization" not in head and b"accept" in head
