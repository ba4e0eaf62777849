"""Agents on the egress proxy: each connection a call of the tool `egress`, proven like any other.

An agent (not an enclave) that reaches the network through the proxy's TCP
listener sends, with its `CONNECT host:port` (or absolute-form request):

    Proxy-Authorization: Bearer <its JWT-SVID>
    Ztgate-Warrant: <its task's warrant>
    Ztgate-Proof: <a proof for the tool `egress` over {"host", "method", "port"}>

The connection is then decided as a call of the tool `egress` with those
arguments, by the gateway's own checks: `authenticate` (the SVID), `warrant`
(bound to that key, its task active, nothing revoked), `proof` (signed by
the warrant's key for exactly this destination, fresh, never used before:
one proof, one connection), `scope` (the task grants `egress`, and its
limits — a `domains` limit on `/host` above all — hold) and `halt` (no kill
switch or suspension). Allowed, the connection is the agent's and the
task's: attributed to them on record, and held to the allow-lists that
exist (the gateway's `[guards.egress] allowed_domains`, else the agent's
own list; the agent's list; the task's `domains` on `egress`; with none at
all it goes nowhere) and to the proxy's address rules.

`Ztgate-Warrant` and `Ztgate-Proof` are never forwarded to a destination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from ztgate.canonical import canonical_json
from ztgate.clock import Clock
from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant
from ztgate.egress.request import EGRESS_TOOL, ProxyRequest, egress_arguments
from ztgate.guards.egress import task_domains
from ztgate.ids import time_ordered_id
from ztgate.models import Credentials, Outcome, ToolCall
from ztgate.pipeline import CallContext, Check, Pipeline
from ztgate.warrants.checks import FACT as WARRANT_FACT
from ztgate.warrants.checks import proven_caller

__all__ = ["EGRESS_TOOL", "AgentEgress", "AgentRefused", "agent_grant_id", "egress_arguments"]

WARRANT_HEADER: Final = b"ztgate-warrant"
PROOF_HEADER: Final = b"ztgate-proof"
# The gateway's checks that decide an agent's connection, in the pipeline's order.
CHECKS: Final = ("authenticate", "warrant", "proof", "scope", "halt")


class AgentRefused(Exception):
    """An agent's connection refused: the status (407: not authenticated; else 403) and why,
    and the agent and task when the checks had proved them (the refusal is theirs on record)."""

    def __init__(
        self, status: int, reason: str, agent: str | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.agent = agent
        self.task_id = task_id


def agent_grant_id(agent: str, task_id: str | None) -> str:
    """The proxy's grant id (its budgets, its refusal records) of an agent's connections."""
    return f"agent:{agent}:{task_id or ''}"


class AgentEgress:
    """Decides agents' connections with the gateway's checks (see the module's docstring)."""

    def __init__(
        self,
        checks: Iterable[Check],
        clock: Clock,
        *,
        allowed_domains: Sequence[str] = (),
        agent_domains: Mapping[str, Sequence[str]] | None = None,
        test_destinations: Sequence[str] = (),
        refresh: Callable[[], None] = lambda: None,
    ) -> None:
        """Decide with those of `checks` named in `CHECKS` (all of them must be there),
        after `refresh()` (the gateway's: what changed in the store since, as for a call)."""
        chosen = [check for check in checks if check.name in CHECKS]
        missing = set(CHECKS) - {check.name for check in chosen}
        if missing:
            raise ValueError(f"agents' egress needs the checks {sorted(missing)}")
        self._pipeline = Pipeline(chosen)
        self._clock = clock
        self._allowed = tuple(allowed_domains)
        self._agents = {agent: tuple(d) for agent, d in (agent_domains or {}).items()}
        self._tests = tuple(test_destinations)
        self._refresh = refresh

    async def __call__(self, request: ProxyRequest, bearer: str) -> Grant:
        """The grant of an agent's connection.

        Raises:
            AgentRefused: a check refused it (or a header is missing).
        """
        try:
            self._refresh()  # revocations, tasks, kill switches: as for the next call
        except Exception as exc:  # fail closed
            raise AgentRefused(503, "the store is unavailable") from exc
        destination = request.destination
        arguments = egress_arguments(request.method, destination.host, destination.port)
        call = ToolCall(
            call_id=time_ordered_id(),
            tool=EGRESS_TOOL,
            arguments=arguments,
            canonical_arguments=canonical_json(arguments),
            credentials=Credentials(
                bearer=bearer,
                warrant=_text(request.header(WARRANT_HEADER)),
                proof=_text(request.header(PROOF_HEADER)),
            ),
            received_at=self._clock.now(),
            front_door="egress",
        )
        ctx = CallContext(self._clock)
        decision = await self._pipeline.decide(call, ctx)
        agent, task_id = proven_caller(decision)
        if decision.outcome is not Outcome.ALLOW:
            deciding = decision.deciding
            first = deciding[0] if deciding else None
            status = 407 if first is not None and first.check == "authenticate" else 403
            reason = f"{first.check}: {first.reason}" if first is not None else "not allowed"
            raise AgentRefused(status, reason, agent, task_id)
        warrant = ctx.facts.get(WARRANT_FACT)
        if agent is None or task_id is None:  # pragma: no cover
            raise AgentRefused(403, "the checks allowed it without naming the agent and task")
        own = self._agents.get(agent)
        tasks = task_domains(getattr(warrant, "scope", None), EGRESS_TOOL)
        rules = EgressRules.build(
            self._allowed or own or tasks or (),
            agent_domains=own,
            task_domains=tasks,
            test_destinations=self._tests,
        )
        attribution = Attribution("", agent, task_id)
        return Grant(agent_grant_id(agent, task_id), attribution, rules)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None
