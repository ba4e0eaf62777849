"""The policy package's records: policies as loaded, a call's facts, and an evaluation.

A `PolicySnapshot` is what one load produced: the parsed policy set, the
schema it was validated against, and what evaluating a call needs. It never
changes once built (apart from caches of agents' entities and of what
Cedar's answers mean), so a reload
builds a new one and swaps it in whole.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cedarpy

from ztgate.models import Outcome
from ztgate.policy.references import Needs
from ztgate.policy.schema import CedarType

AGENT_CACHE_SIZE = 4096
EVALUATION_CACHE_SIZE = 1024
DECISION_CACHE_SIZE = 4096
# Requests with a larger context (arguments the policies read) are not kept.
DECISION_CACHE_MAX_CONTEXT_CHARS = 4096
_NO_TAGS: Mapping[str, tuple[str, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Rule:
    """One policy: its id, where it is written, and what its annotations ask."""

    id: str
    file: str
    line: int
    effect: str  # "permit" or "forbid"
    text: str
    ask: str | None = None  # @ask("why"): a satisfied permit asks a human instead
    reason: str | None = None  # @reason("why"): said when this policy decides

    @property
    def where(self) -> str:
        """`file:line`."""
        return f"{self.file}:{self.line}"

    @property
    def label(self) -> str:
        """The id and where the policy is written (once, when the id is the location)."""
        return self.where if self.id == self.where else f"{self.id} ({self.where})"


@dataclass(frozen=True, slots=True)
class Tags:
    """Tags given to agents (by SPIFFE ID) and tools (by name) in the policy directory."""

    agents: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_TAGS)
    tools: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: _NO_TAGS)


@dataclass(slots=True)
class PolicySnapshot:
    """A loaded, validated policy set and what evaluating calls against it needs."""

    policies: cedarpy.PolicySet
    schema: cedarpy.Schema
    rules: Mapping[str, Rule]
    arguments: Mapping[str, CedarType]  # each tool's `context.arguments`, as far as it is read
    entities: cedarpy.Entities  # the tools and the actions
    tags: Tags
    digest: str  # of the policy files' names and contents
    source: str  # the directory, or "built-in defaults"
    needs: Needs = True  # the parts of `context` the policies read
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    _agents: OrderedDict[tuple[Any, ...], cedarpy.Entities] = field(default_factory=OrderedDict)
    _evaluations: dict[tuple[Any, ...], Evaluation] = field(default_factory=dict)
    _decisions: dict[tuple[Any, ...], Evaluation] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A short form of the digest, for logs and status."""
        return self.digest[:12]

    def with_agent(self, key: tuple[Any, ...], build: Any) -> cedarpy.Entities:
        """The tools' entities plus one agent's (built by `build()` once per agent)."""
        hit = self._agents.get(key)
        if hit is not None:
            self._agents.move_to_end(key)
            return hit
        entities: cedarpy.Entities = build()
        self._agents[key] = entities
        while len(self._agents) > AGENT_CACHE_SIZE:
            self._agents.popitem(last=False)
        return entities

    def decided(self, request: tuple[Any, ...]) -> Evaluation | None:
        """What this set decided for exactly `request` (a `Request.key()`), if it is kept."""
        return self._decisions.get(request)

    def keep(self, request: tuple[Any, ...], evaluation: Evaluation) -> None:
        """Keep what this set decided for `request`: Cedar is a pure function of the request,
        the entities and the policies, and all three are fixed for this key in this set."""
        if len(request[-1]) > DECISION_CACHE_MAX_CONTEXT_CHARS:
            return
        if len(self._decisions) >= DECISION_CACHE_SIZE:
            self._decisions.clear()
        self._decisions[request] = evaluation

    def evaluation(self, answer: tuple[Any, ...], interpret: Any) -> Evaluation:
        """What Cedar's `answer` (decision, policy ids, errors, exactly) means for this set.

        `interpret()` makes it, once per distinct answer (the same answer
        always means the same thing for one set).
        """
        hit = self._evaluations.get(answer)
        if hit is not None:
            return hit
        evaluation: Evaluation = interpret()
        if len(self._evaluations) >= EVALUATION_CACHE_SIZE:
            self._evaluations.clear()
        self._evaluations[answer] = evaluation
        return evaluation


@dataclass(frozen=True, slots=True)
class AgentFacts:
    """The authenticated agent, as the `authenticate` check proved it."""

    spiffe_id: str
    trust_domain: str
    local: bool
    owner: str = ""


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """The task a call belongs to, as its warrant and the task registry say."""

    id: str
    intent: str
    principal: str
    age_seconds: int
    calls: int = 0  # made before this one
    spend: float = 0.0  # spend units used before this call
    depth: int = 0
    delegated_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GuardFacts:
    """What the guards found in a call (all empty until the guards run)."""

    tainted_arguments: tuple[str, ...] = ()  # JSON Pointers of untrusted values
    tainted_from: tuple[str, ...] = ()  # the tools whose results those values were seen in
    secrets: tuple[str, ...] = ()  # kinds of secrets leaving
    pii: tuple[str, ...] = ()  # kinds of personal data leaving
    encoded: tuple[str, ...] = ()  # encoded or high-entropy data leaving (kinds)
    injection: bool = False  # the task read injected instructions earlier
    hosts: tuple[str, ...] = ()  # destination hosts the egress guard found

    @property
    def tainted(self) -> bool:
        """Some argument carries data the agent read from an untrusted source."""
        return bool(self.tainted_arguments)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """Everything a policy can see about one call."""

    tool: str
    arguments: Mapping[str, Any]
    now: float
    justification: str = ""
    cost: float = 0.0  # what this call costs in spend units
    agent: AgentFacts | None = None  # None: unauthenticated (authentication off)
    in_scope: bool = False
    task: TaskFacts | None = None
    guards: GuardFacts = field(default_factory=GuardFacts)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the policies said about one call, and which policies said it."""

    outcome: Outcome
    reason: str
    deciding: tuple[Rule, ...] = ()
    satisfied: tuple[Rule, ...] = ()
    errors: tuple[str, ...] = ()
