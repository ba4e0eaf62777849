"""The `policy` check: Cedar decides over the call and what the checks before it found.

It runs after `scope`, `justification` and `schema` (and, with the guards
issue, after the guards), and reads their facts from the call context:

| fact | from | becomes |
| --- | --- | --- |
| `principal.spiffe_id`, `.trust_domain`, `.local` | `authenticate` | the `Agent` principal |
| `task.id`, `warrant.depth`, `warrant.delegated_by` | `warrant` | `context.task` |
| `scope.within` | `scope` | `context.in_scope` |
| `task.calls`, `task.spend`, `call.cost` | budget (when present) | `context.task`, `.cost` |
| `guards.*` (`ztgate.guards.facts`) | the guards, when present | `context.guards`, `.hosts` |

The task's intent, principal and age come from the task registry, read once
per task (they never change) and only when a policy reads `context.task`.
With authentication off there is no agent, warrant or task: the principal is
`Agent::"anonymous"`, `context.authenticated` is false and every registered
tool counts as in scope (as it would for a task whose scope names them all).

Only what the loaded policies read is looked at (see `references`). A fact
of the wrong type or an argument of the wrong type that a policy reads, a
task that cannot be read, a tool the policy set was not loaded for, no policy
set at all, or any error while evaluating: deny, with the reason (fail closed).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from ztgate.clock import Clock
from ztgate.config import Settings
from ztgate.errors import GatewayError
from ztgate.guards import facts as found_by_guards
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.policy import engine
from ztgate.policy.live import LivePolicies
from ztgate.policy.model import AgentFacts, CallFacts, GuardFacts, PolicySnapshot, TaskFacts
from ztgate.policy.references import wants
from ztgate.policy.status import STATUS_FILE
from ztgate.tasks.registry import Task
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import Tool

NAME = "policy"
TASK_CACHE_SIZE = 10_000
NO_FINDINGS = GuardFacts()
_GUARD_FACTS = (
    found_by_guards.TAINTED_ARGUMENTS,
    found_by_guards.TAINT_SOURCES,
    found_by_guards.SECRETS_LEAVING,
    found_by_guards.PII_LEAVING,
    found_by_guards.ENCODED_LEAVING,
    found_by_guards.INJECTION_SEEN,
    found_by_guards.DESTINATION_HOSTS,
)
TaskLookup = Callable[[str], Task]
OwnerLookup = Callable[[str], str]


class FactError(ValueError):
    """A fact the policy needs is missing or malformed."""


class PolicyCheck:
    """Pre-call check: the Cedar policies in force allow, ask or deny the call."""

    name = NAME

    def __init__(
        self,
        live: LivePolicies,
        *,
        authentication: bool = True,
        tasks: TaskLookup | None = None,
        owner: OwnerLookup | None = None,
    ) -> None:
        """Decide with the set `live` holds.

        `authentication`: the chain authenticates callers (else every call
        is the anonymous agent's, in scope). `tasks` reads a task by id;
        `owner` names the owner of a registered SPIFFE ID.
        """
        self.live = live
        self._authentication = authentication
        self._tasks = tasks
        self._owner = owner
        self._task_cache: OrderedDict[str, Task] = OrderedDict()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        clock: Clock,
        *,
        tasks: TaskLookup | None = None,
        owner: OwnerLookup | None = None,
    ) -> PolicyCheck:
        """The check the settings describe (nothing is loaded before `start`)."""
        policy = settings.policy
        live = LivePolicies(
            settings.path(policy.dir),
            clock,
            status_path=settings.path(settings.data_dir) / STATUS_FILE,
            check_interval=policy.reload_check_seconds,
        )
        return cls(
            live,
            authentication=settings.gateway.authentication == "required",
            tasks=tasks,
            owner=owner,
        )

    def start(
        self, catalog: Callable[[], Catalog], registry: CollectorRegistry | None = None
    ) -> PolicySnapshot:
        """Load the policies for the catalog's tools, reporting to `registry`.

        Raises:
            PolicyLoadError: the policies do not load (the gateway must not start).
        """
        return self.live.start(catalog, tools_of, registry)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, ask or deny, as the policies say; deny whenever they cannot say."""
        snapshot = await self.live.current()
        if snapshot is None:
            return _deny("no policy set is loaded")
        try:
            facts = self.facts(call, ctx, snapshot)
        except FactError as exc:
            return _deny(f"{exc} (fail closed)")
        evaluation = engine.decide(snapshot, facts)
        return Verdict(
            NAME,
            evaluation.outcome,
            evaluation.reason,
            {
                "policy.version": snapshot.version,
                "policy.decided_by": [rule.id for rule in evaluation.deciding],
            },
        )

    def facts(self, call: ToolCall, ctx: CallContext, snapshot: PolicySnapshot) -> CallFacts:
        """What the policies can see about `call`.

        Raises:
            FactError: a fact is missing or has the wrong type, or the task cannot be read.
        """
        found = ctx.facts
        agent: AgentFacts | None = None
        in_scope = True
        task: TaskFacts | None = None
        if self._authentication:
            agent = self._agent(found)
            in_scope = found.get("scope.within") is True
            if wants(snapshot.needs, "task") is not None and "task.id" in found:
                task = self._task(found, ctx.clock.now())
        return CallFacts(
            tool=call.tool,
            arguments=call.arguments,
            now=ctx.clock.now(),
            justification=call.justification,
            cost=_number(found, "call.cost") if wants(snapshot.needs, "cost") else 0.0,
            agent=agent,
            in_scope=in_scope,
            task=task,
            guards=guard_facts(found) if self._reads_guards(snapshot) else NO_FINDINGS,
        )

    @staticmethod
    def _reads_guards(snapshot: PolicySnapshot) -> bool:
        needs = snapshot.needs
        return wants(needs, "guards") is not None or wants(needs, "hosts") is not None

    def _agent(self, found: Mapping[str, Any]) -> AgentFacts:
        spiffe_id = found.get("principal.spiffe_id")
        if not isinstance(spiffe_id, str):
            raise FactError("the caller is not authenticated")
        trust_domain = _typed(found, "principal.trust_domain", str, "")
        local = _typed(found, "principal.local", bool, False)
        owner = ""
        if self._owner is not None and local:
            owner = self._owner(spiffe_id)
        return AgentFacts(spiffe_id, trust_domain, local, owner)

    def _task(self, found: Mapping[str, Any], now: float) -> TaskFacts:
        task_id = _typed(found, "task.id", str, "")
        task = self._task_cache.get(task_id)
        if task is None:
            if self._tasks is None:
                raise FactError("tasks cannot be read here")
            try:
                task = self._tasks(task_id)
            except GatewayError as exc:
                raise FactError(f"task {task_id} cannot be read: {exc.message}") from exc
            self._task_cache[task_id] = task
            while len(self._task_cache) > TASK_CACHE_SIZE:
                self._task_cache.popitem(last=False)
        delegated = _strings(found, "warrant.delegated_by")
        return TaskFacts(
            id=task.id,
            intent=task.intent,
            principal=task.principal,
            age_seconds=max(0, int(now - task.created_at)),
            calls=_typed(found, "task.calls", int, 0),
            spend=_number(found, "task.spend"),
            depth=_typed(found, "warrant.depth", int, 0),
            delegated_by=delegated,
        )


def tools_of(catalog: object) -> Sequence[Tool]:
    """The tools of a `Catalog`."""
    if not isinstance(catalog, Catalog):
        return ()
    return [entry.spec for name in catalog.names() if (entry := catalog.get(name)) is not None]


def guard_facts(found: Mapping[str, Any]) -> GuardFacts:
    """The guards' findings among the facts (absent: nothing found; see `guards.facts`).

    Raises:
        FactError: a finding has the wrong type.
    """
    if found.keys().isdisjoint(_GUARD_FACTS):
        return NO_FINDINGS
    sources = found.get(found_by_guards.TAINT_SOURCES, {})
    if not isinstance(sources, Mapping):
        raise FactError(f"fact {found_by_guards.TAINT_SOURCES} is not a mapping")
    tainted_from: set[str] = set()
    for tools in sources.values():
        if isinstance(tools, str) or not isinstance(tools, (list, tuple)):
            raise FactError(f"fact {found_by_guards.TAINT_SOURCES} does not map to lists of tools")
        tainted_from.update(str(tool) for tool in tools)
    return GuardFacts(
        tainted_arguments=_strings(found, found_by_guards.TAINTED_ARGUMENTS),
        tainted_from=tuple(sorted(tainted_from)),
        secrets=_strings(found, found_by_guards.SECRETS_LEAVING),
        pii=_strings(found, found_by_guards.PII_LEAVING),
        encoded=_strings(found, found_by_guards.ENCODED_LEAVING),
        injection=_typed(found, found_by_guards.INJECTION_SEEN, bool, False),
        hosts=_strings(found, found_by_guards.DESTINATION_HOSTS),
    )


def _typed(found: Mapping[str, Any], name: str, kind: type[Any], default: Any) -> Any:
    value = found.get(name, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FactError(f"fact {name} is not a {kind.__name__}")
    return value


def _number(found: Mapping[str, Any], name: str) -> float:
    value = found.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FactError(f"fact {name} is not a number")
    return value


# Tuples of types, not unions: `isinstance` checks them several times faster.
_COLLECTIONS = (list, tuple, set, frozenset)
_UNORDERED = (set, frozenset)


def _strings(found: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = found.get(name, ())
    if type(value) in _COLLECTIONS and not value:
        return ()  # the usual case: nothing found
    if isinstance(value, str) or not isinstance(value, _COLLECTIONS):
        raise FactError(f"fact {name} is not a list of strings")
    for item in value:
        if not isinstance(item, str):
            raise FactError(f"fact {name} is not a list of strings")
    return tuple(sorted(value)) if isinstance(value, _UNORDERED) else tuple(value)


def _deny(reason: str) -> Verdict:
    return Verdict(NAME, Outcome.DENY, reason[:500])
