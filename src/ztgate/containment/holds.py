"""Holds: the kill switch and burst suspensions, durable, with a generation.

A hold refuses calls, from the next call on, until it is lifted:

    agent   every call of one agent (its SPIFFE ID), and of the sub-agents
            it delegated to
    task    every call of one task
    all     every call

Its `cause` is `kill` (a principal: `ztgate kill`, `POST
/v1/containment/kill`) or `burst` (the gateway suspended an agent that made
too many calls too fast). Resuming a target deletes its holds, whatever
their cause. Holds are rows of the `suspensions` table, so they survive a
restart; every change bumps the "containment" generation (so every gateway
process reloads them on its next call, and the multi-node store can
broadcast it) and appends an audit record in the same transaction.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.engine import RowMapping

from ztgate.audit import AuditEntry, AuditLog
from ztgate.clock import Clock
from ztgate.errors import InvalidInputError, NotFoundError
from ztgate.identity.spiffe_id import parse_spiffe_id
from ztgate.ids import time_ordered_id
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import suspensions as holds_table
from ztgate.store.tables import tasks as tasks_table

GENERATION = "containment"
AGENT = "agent"
TASK = "task"
ALL = "all"
SCOPES = (AGENT, TASK, ALL)
KILL = "kill"
BURST = "burst"
EVERYTHING = "*"
GATEWAY_ACTOR = "gateway"  # who suspends a runaway agent
MAX_REASON_CHARS = 500
_EMPTY: Mapping[str, Hold] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Hold:
    """One stored hold."""

    id: str
    scope: str  # AGENT, TASK or ALL
    target: str  # the SPIFFE ID, the task id, or EVERYTHING
    cause: str  # KILL or BURST
    reason: str
    actor: str
    created_at: float

    def describe(self) -> dict[str, Any]:
        """The hold as plain JSON."""
        return {
            "id": self.id,
            "scope": self.scope,
            "target": self.target,
            "cause": self.cause,
            "reason": self.reason,
            "actor": self.actor,
            "created_at": self.created_at,
        }

    def why(self) -> str:
        """What the refused caller is told (never the operator's note)."""
        if self.scope == ALL:
            return "the kill switch is on: every call is stopped"
        if self.cause == BURST:
            return (
                f"agent {self.target} is suspended after a burst of calls; "
                "a principal must resume it"
            )
        return f"{self.scope} {self.target} is stopped by the kill switch"


@dataclass(frozen=True, slots=True)
class HoldSet:
    """An in-memory snapshot of the holds, for the hot path (immutable)."""

    everything: Hold | None = None
    agents: Mapping[str, Hold] = field(default_factory=lambda: _EMPTY)
    tasks: Mapping[str, Hold] = field(default_factory=lambda: _EMPTY)

    @classmethod
    def of(cls, holds: Iterable[Hold]) -> HoldSet:
        """The set of `holds` (the first of each target wins; kills before bursts)."""
        everything = None
        agents: dict[str, Hold] = {}
        tasks: dict[str, Hold] = {}
        for hold in sorted(holds, key=lambda h: (h.cause != KILL, h.created_at)):
            if hold.scope == ALL:
                everything = everything or hold
            elif hold.scope == AGENT:
                agents.setdefault(hold.target, hold)
            elif hold.scope == TASK:
                tasks.setdefault(hold.target, hold)
        return cls(everything, MappingProxyType(agents), MappingProxyType(tasks))

    def __len__(self) -> int:
        return (self.everything is not None) + len(self.agents) + len(self.tasks)

    def holds(self) -> builtins.list[Hold]:
        """Every hold in the set."""
        found = [] if self.everything is None else [self.everything]
        return [*found, *self.agents.values(), *self.tasks.values()]

    def holding(
        self, agent: str | None, task: str | None, delegators: Sequence[str] = ()
    ) -> Hold | None:
        """The hold that stops a call of `agent` in `task` (delegated by `delegators`), or None."""
        if self.everything is not None:
            return self.everything
        if agent is not None and self.agents:
            hold = self.agents.get(agent)
            if hold is not None:
                return hold
            for delegator in delegators:
                hold = self.agents.get(delegator)
                if hold is not None:
                    return hold
        if task is not None and self.tasks:
            return self.tasks.get(task)
        return None

    def burst_agents(self) -> frozenset[str]:
        """The agents suspended after a burst."""
        return frozenset(a for a, hold in self.agents.items() if hold.cause == BURST)


class HoldRegistry:
    """The suspensions table, behind methods that validate, audit and bump."""

    def __init__(self, database: Database, clock: Clock, *, audit: AuditLog | None = None) -> None:
        """Changes are audited to `audit` when given."""
        self._database = database
        self._clock = clock
        self._audit = audit

    def kill(self, scope: str, target: str = EVERYTHING, *, actor: str, reason: str = "") -> Hold:
        """Stop every call of an agent, a task or everything; the hold (an existing one if any).

        Raises:
            InvalidInputError: an unknown scope, a malformed SPIFFE ID, a long reason.
            NotFoundError: no such task.
        """
        scope, target = normalise(scope, target)
        _check_reason(reason)
        with self._database.write() as conn:
            if scope == TASK and _task_agent(conn, target) is None:
                raise NotFoundError("task", target[:80])
            for hold in _rows(conn, scope, target):
                if hold.cause == KILL:
                    return hold
            hold = Hold(time_ordered_id(), scope, target, KILL, reason, actor, self._clock.now())
            _insert(conn, hold)
            generations.bump(conn, GENERATION)
            self._record(conn, "containment.kill", hold, {"hold": hold.id})
        return hold

    def suspend(self, hold: Hold, detail: Mapping[str, Any]) -> bool:
        """Store a burst suspension made by the gateway (unless the agent is already held).

        The audit record (kind `containment`, action `agent.suspend`) carries `detail`.
        """
        with self._database.write() as conn:
            if _rows(conn, hold.scope, hold.target):
                return False
            _insert(conn, hold)
            generations.bump(conn, GENERATION)
            if self._audit is not None:
                entry = AuditEntry(
                    kind="containment",
                    outcome="deny",
                    agent=hold.target,
                    detail={
                        "action": "agent.suspend",
                        "principal": hold.actor,
                        "cause": hold.cause,
                        "hold": hold.id,
                        "reason": hold.reason,
                        **detail,
                    },
                )
                self._audit.append_within(conn, [entry])
        return True

    def resume(
        self, scope: str, target: str = EVERYTHING, *, actor: str, reason: str = ""
    ) -> builtins.list[Hold]:
        """Lift every hold of the target (killed or suspended); the holds lifted.

        `resume all` lifts `kill all` only; agents and tasks held one by one stay held.

        Raises:
            InvalidInputError: an unknown scope or a malformed SPIFFE ID.
            NotFoundError: nothing holds that target.
        """
        scope, target = normalise(scope, target)
        _check_reason(reason)
        with self._database.write() as conn:
            lifted = _rows(conn, scope, target)
            if not lifted:
                raise NotFoundError("hold", f"{scope} {target}"[:120])
            conn.execute(
                delete(holds_table).where(
                    holds_table.c.scope == scope, holds_table.c.target == target
                )
            )
            generations.bump(conn, GENERATION)
            self._record(
                conn,
                "containment.resume",
                lifted[0],
                {"lifted": [h.id for h in lifted], "causes": sorted({h.cause for h in lifted})},
                actor=actor,
                reason=reason,
            )
        return lifted

    def list(self) -> builtins.list[Hold]:
        """Every hold, oldest first."""
        with self._database.read() as conn:
            rows = conn.execute(select(holds_table).order_by(holds_table.c.created_at))
            return [_hold(row) for row in rows.mappings()]

    def snapshot(self) -> HoldSet:
        """The holds as a `HoldSet`.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        return HoldSet.of(self.list())

    def _record(
        self,
        conn: Connection,
        action: str,
        hold: Hold,
        detail: Mapping[str, Any],
        *,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        if self._audit is None:
            return
        entry = AuditEntry(
            kind="admin",
            outcome="allow",
            agent=hold.target if hold.scope == AGENT else None,
            task_id=hold.target if hold.scope == TASK else None,
            detail={
                "action": action,
                "principal": actor or hold.actor,
                "scope": hold.scope,
                "target": hold.target,
                "reason": hold.reason if reason is None else reason,
                **detail,
            },
        )
        self._audit.append_within(conn, [entry])


def normalise(scope: str, target: str | None) -> tuple[str, str]:
    """A valid (scope, target): a SPIFFE ID for an agent, a task id, `*` for all.

    Raises:
        InvalidInputError: an unknown scope, a malformed SPIFFE ID or task id.
    """
    if scope not in SCOPES:
        raise InvalidInputError(f"hold what? one of {', '.join(SCOPES)}, not {scope!r}")
    if scope == ALL:
        if target not in (None, "", EVERYTHING):
            raise InvalidInputError("'all' takes no target")
        return ALL, EVERYTHING
    if not isinstance(target, str) or not target:
        raise InvalidInputError(f"name the {scope} to hold")
    if scope == AGENT:
        return AGENT, str(parse_spiffe_id(target))
    if len(target) > 64 or not target.isascii() or not target.isprintable():
        raise InvalidInputError("a task id is at most 64 printable ASCII characters")
    return TASK, target


def _check_reason(reason: str) -> None:
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInputError(f"a reason has at most {MAX_REASON_CHARS} characters")


def _task_agent(conn: Connection, task_id: str) -> str | None:
    row = conn.execute(select(tasks_table.c.agent).where(tasks_table.c.id == task_id)).first()
    return None if row is None else str(row[0])


def _rows(conn: Connection, scope: str, target: str) -> builtins.list[Hold]:
    rows = conn.execute(
        select(holds_table)
        .where(holds_table.c.scope == scope, holds_table.c.target == target)
        .order_by(holds_table.c.created_at)
    )
    return [_hold(row) for row in rows.mappings()]


def _insert(conn: Connection, hold: Hold) -> None:
    conn.execute(insert(holds_table).values(**hold.describe()))


def _hold(row: RowMapping) -> Hold:
    return Hold(
        id=row["id"],
        scope=row["scope"],
        target=row["target"],
        cause=row["cause"],
        reason=row["reason"],
        actor=row["actor"],
        created_at=row["created_at"],
    )
