"""Tasks and their warrants, in the store: create, bind, delegate, complete, revoke.

A task is created by a principal for one agent, with an intent, a scope, a
budget and an expiry, all fixed at creation. Its root warrant is created with
it; the agent binds a warrant to its SVID key (`bind`) to receive the signed
token, and binds again after each SVID rotation. A warrant holder can
delegate a narrower warrant to a sub-agent (`delegate`), which binds it with
its own SVID. Completing or revoking a task ends every warrant of it;
revoking a warrant ends every warrant delegated below it.

Every change is audited in the same transaction and bumps the "tasks"
generation, so a running gateway sees it on its very next call.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import RowMapping

from ztgate.audit import AuditEntry, AuditLog
from ztgate.canonical import canonical_json
from ztgate.clock import Clock
from ztgate.config import Settings
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.identity.spiffe_id import parse_spiffe_id
from ztgate.ids import time_ordered_id
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import tasks as tasks_table
from ztgate.store.tables import warrants as warrants_table
from ztgate.tasks.scope import Scope, narrow, parse_scope
from ztgate.warrants import token as warrant_token
from ztgate.warrants.keys import WarrantKey

GENERATION = "tasks"
ACTIVE = "active"
COMPLETED = "completed"
REVOKED = "revoked"
EXPIRED = "expired"  # never stored: an active task past its expiry reads as expired
MAX_INTENT_CHARS = 4000
MAX_REASON_CHARS = 500
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256


@dataclass(frozen=True, slots=True)
class Task:
    """One job for one agent."""

    id: str
    principal: str
    agent: str
    intent: str
    scope: Scope
    budget_calls: int | None
    budget_spend: float | None
    state: str
    created_at: float
    expires_at: float
    ended_at: float | None = None
    end_reason: str | None = None

    def status(self, now: float) -> str:
        """The state as of `now`: active, expired, completed or revoked."""
        if self.state == ACTIVE and now >= self.expires_at:
            return EXPIRED
        return self.state

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "id": self.id,
            "principal": self.principal,
            "agent": self.agent,
            "intent": self.intent,
            "scope": self.scope.to_json(),
            "budget": {"calls": self.budget_calls, "spend": self.budget_spend},
            "state": self.status(now),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        }


@dataclass(frozen=True, slots=True)
class WarrantRecord:
    """A warrant as stored: who holds it, what it allows, what it is bound to."""

    id: str
    task_id: str
    parent_id: str | None
    agent: str
    jkt: str | None
    scope: Scope
    depth: int
    issued_at: float
    expires_at: float
    revoked_at: float | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "id": self.id,
            "task_id": self.task_id,
            "parent_id": self.parent_id,
            "agent": self.agent,
            "jkt": self.jkt,
            "scope": self.scope.to_json(),
            "depth": self.depth,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True, slots=True)
class Issued:
    """A signed warrant and its record."""

    record: WarrantRecord
    token: str


class TaskRegistry:
    """The tasks and warrants tables, behind methods that validate, audit and bump."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        *,
        key: WarrantKey,
        issuer: str,
        audience: str,
        max_depth: int = 3,
        default_ttl: float = 3600.0,
        max_ttl: float = 7 * 86400.0,
        audit: AuditLog | None = None,
    ) -> None:
        """Warrants are signed with `key`, name `issuer` and are for `audience`."""
        self._database = database
        self._clock = clock
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.max_depth = max_depth
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self._audit = audit

    @classmethod
    def from_settings(
        cls, settings: Settings, database: Database, clock: Clock, audit: AuditLog | None = None
    ) -> TaskRegistry:
        """The registry the settings describe (the warrant key is created if missing).

        Raises:
            ConfigError: the warrant key is unusable.
        """
        from ztgate.warrants.keys import load_or_create

        warrants = settings.warrants
        key = load_or_create(
            settings.path(warrants.signing_key), passphrase=settings.identity.passphrase()
        )
        return cls(
            database,
            clock,
            key=key,
            issuer=issuer_for(settings.identity.trust_domain),
            audience=settings.gateway.audience,
            max_depth=warrants.max_delegation_depth,
            default_ttl=float(warrants.default_task_ttl_seconds),
            max_ttl=float(warrants.max_task_ttl_seconds),
            audit=audit,
        )

    # -- tasks -------------------------------------------------------------------

    def create(
        self,
        *,
        principal: str,
        agent: str,
        intent: str,
        scope: Scope | Mapping[str, Any],
        budget_calls: int | None = None,
        budget_spend: float | None = None,
        ttl: float | None = None,
        agent_jkt: str | None = None,
    ) -> tuple[Task, WarrantRecord, str | None]:
        """Create a task and its root warrant; signed at once when the agent's key is given.

        Raises:
            InvalidInputError: a malformed agent, intent, scope, budget, lifetime or key.
        """
        agent = str(parse_spiffe_id(agent))
        if not isinstance(intent, str) or not intent.strip():
            raise InvalidInputError("a task needs an intent: the user's request, as text")
        if len(intent) > MAX_INTENT_CHARS:
            raise InvalidInputError(f"an intent has at most {MAX_INTENT_CHARS} characters")
        parsed = scope if isinstance(scope, Scope) else parse_scope(scope)
        if budget_calls is not None and (isinstance(budget_calls, bool) or budget_calls < 1):
            raise InvalidInputError("a call budget is a positive whole number")
        if budget_spend is not None and not budget_spend > 0:
            raise InvalidInputError("a spend budget is a positive number")
        lifetime = self.default_ttl if ttl is None else float(ttl)
        if not 0 < lifetime <= self.max_ttl:
            raise InvalidInputError(
                f"a task's lifetime is more than 0 and at most {self.max_ttl:g} seconds"
            )
        jkt = None if agent_jkt is None else _jkt(agent_jkt)
        now = self._clock.now()
        task = Task(
            id=time_ordered_id(),
            principal=principal,
            agent=agent,
            intent=intent,
            scope=parsed,
            budget_calls=budget_calls,
            budget_spend=budget_spend,
            state=ACTIVE,
            created_at=now,
            expires_at=now + lifetime,
        )
        record = WarrantRecord(
            time_ordered_id(), task.id, None, agent, jkt, parsed, 0, now, task.expires_at
        )
        with self._database.write() as conn:
            conn.execute(
                insert(tasks_table).values(
                    id=task.id,
                    principal=task.principal,
                    agent=task.agent,
                    intent=task.intent,
                    scope=canonical_json(parsed.to_json()).decode(),
                    budget_calls=budget_calls,
                    budget_spend=budget_spend,
                    state=ACTIVE,
                    created_at=now,
                    expires_at=task.expires_at,
                    ended_at=None,
                    end_reason=None,
                )
            )
            self._insert_warrant(conn, record)
            generations.bump(conn, GENERATION)
            self._record(
                conn,
                "task.create",
                principal,
                task,
                {"warrant": record.id, "scope": parsed.to_json(), "expires_at": task.expires_at},
            )
        token = None if jkt is None else self._sign(record, (), ())
        return task, record, token

    def get(self, task_id: str) -> Task:
        """The task `task_id`.

        Raises:
            NotFoundError: no such task.
        """
        with self._database.read() as conn:
            return self._task(conn, task_id)

    def list(
        self,
        *,
        principal: str | None = None,
        agent: str | None = None,
        state: str | None = None,
        limit: int = 1000,
    ) -> builtins.list[Task]:
        """Tasks, newest first, optionally filtered (`state` as `Task.status` reports it)."""
        query = select(tasks_table).order_by(tasks_table.c.created_at.desc())
        if principal is not None:
            query = query.where(tasks_table.c.principal == principal)
        if agent is not None:
            query = query.where(tasks_table.c.agent == agent)
        now = self._clock.now()
        if state in (ACTIVE, EXPIRED):
            query = query.where(tasks_table.c.state == ACTIVE)
            query = query.where(
                tasks_table.c.expires_at > now
                if state == ACTIVE
                else tasks_table.c.expires_at <= now
            )
        elif state is not None:
            query = query.where(tasks_table.c.state == state)
        with self._database.read() as conn:
            rows = conn.execute(query.limit(limit)).mappings()
            return [_task(row) for row in rows]

    def complete(self, task_id: str, *, actor: str) -> Task:
        """Mark an active task completed; its warrants stop working at once.

        Raises:
            NotFoundError: no such task.
            ConflictError: the task is not active (ended or expired).
        """
        return self._end(task_id, COMPLETED, actor, "")

    def revoke(self, task_id: str, *, actor: str, reason: str = "") -> Task:
        """Revoke a task; its warrants stop working at once.

        Raises:
            NotFoundError: no such task.
            ConflictError: the task has already ended.
        """
        return self._end(task_id, REVOKED, actor, reason)

    def _end(self, task_id: str, state: str, actor: str, reason: str) -> Task:
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInputError(f"a reason has at most {MAX_REASON_CHARS} characters")
        now = self._clock.now()
        with self._database.write() as conn:
            task = self._task(conn, task_id)
            status = task.status(now)
            if task.state != ACTIVE or (state == COMPLETED and status == EXPIRED):
                raise ConflictError(f"task {task_id} is {status}, not active")
            conn.execute(
                update(tasks_table)
                .where(tasks_table.c.id == task_id)
                .values(state=state, ended_at=now, end_reason=reason or None)
            )
            generations.bump(conn, GENERATION)
            action = "task.complete" if state == COMPLETED else "task.revoke"
            self._record(conn, action, actor, task, {"reason": reason} if reason else {})
            return self._task(conn, task_id)

    # -- warrants ----------------------------------------------------------------

    def warrant(self, warrant_id: str) -> WarrantRecord:
        """The warrant `warrant_id`.

        Raises:
            NotFoundError: no such warrant.
        """
        with self._database.read() as conn:
            return self._warrant(conn, warrant_id)

    def warrants(self, task_id: str) -> builtins.list[WarrantRecord]:
        """A task's warrants, root first."""
        with self._database.read() as conn:
            rows = conn.execute(
                select(warrants_table)
                .where(warrants_table.c.task_id == task_id)
                .order_by(warrants_table.c.depth, warrants_table.c.issued_at)
            ).mappings()
            return [_warrant(row) for row in rows]

    def bind(
        self,
        *,
        agent: str,
        jkt: str,
        task_id: str,
        warrant_id: str | None = None,
    ) -> Issued:
        """Bind a warrant to the key `jkt` of the authenticated `agent` and sign it.

        `warrant_id` None means the task's own (root) warrant. An agent binds
        again after each SVID rotation; the warrant keeps its id, scope and
        expiry, and only the key changes.

        Raises:
            NotFoundError: no such task or warrant (or not of that task).
            ConflictError: the task is not active, the warrant is revoked or
                expired, or it is not for `agent`.
        """
        jkt = _jkt(jkt)
        now = self._clock.now()
        with self._database.write() as conn:
            task = self._task(conn, task_id)
            if task.status(now) != ACTIVE:
                raise ConflictError(f"task {task_id} is {task.status(now)}, not active")
            if warrant_id is None:
                found = conn.execute(
                    select(warrants_table.c.id).where(
                        warrants_table.c.task_id == task_id, warrants_table.c.depth == 0
                    )
                ).first()
                if found is None:
                    raise NotFoundError("warrant of task", task_id)
                warrant_id = str(found[0])
            record = self._warrant(conn, warrant_id)
            if record.task_id != task_id:
                raise NotFoundError("warrant", f"{warrant_id} of task {task_id}")
            if record.agent != agent:
                raise ConflictError(f"warrant {warrant_id} is not for {agent}")
            lineage = self._lineage(conn, record)
            self._usable(lineage, now)
            conn.execute(
                update(warrants_table).where(warrants_table.c.id == record.id).values(jkt=jkt)
            )
            record = self._warrant(conn, record.id)
            self._record(conn, "warrant.bind", agent, task, {"warrant": record.id, "jkt": jkt})
        ancestors = lineage[:-1]
        return Issued(
            record,
            self._sign(record, [a.id for a in ancestors], [a.agent for a in reversed(ancestors)]),
        )

    def delegate(
        self,
        parent: warrant_token.Warrant,
        *,
        agent: str,
        scope: Scope | Mapping[str, Any] | None = None,
        ttl: float | None = None,
        jkt: str | None = None,
    ) -> tuple[WarrantRecord, str | None]:
        """A narrower warrant of the same task for sub-agent `agent`.

        `parent` is a verified warrant presented with a valid proof. The new
        scope is `scope` narrowed against the parent's; the expiry is the
        parent's, or sooner with `ttl`.

        Raises:
            InvalidInputError: the delegation widens the scope, outlives the
                parent, or passes the depth limit (says which).
            ConflictError: the task is not active or the parent is revoked.
        """
        agent = str(parse_spiffe_id(agent))
        requested = None
        if scope is not None:
            requested = scope if isinstance(scope, Scope) else parse_scope(scope)
        child_scope = narrow(parent.scope, requested)
        depth = parent.depth + 1
        if depth > self.max_depth:
            raise InvalidInputError(
                f"delegation depth {depth} is beyond the limit of {self.max_depth}"
            )
        now = self._clock.now()
        expires_at = parent.expires_at
        if ttl is not None:
            if not ttl > 0:
                raise InvalidInputError("a delegated warrant's lifetime must be positive")
            if now + ttl > parent.expires_at:
                raise InvalidInputError(
                    "delegation would outlive the parent warrant (it expires at "
                    f"{parent.expires_at:.0f})"
                )
            expires_at = now + ttl
        bound = None if jkt is None else _jkt(jkt)
        record = WarrantRecord(
            time_ordered_id(),
            parent.task_id,
            parent.id,
            agent,
            bound,
            child_scope,
            depth,
            now,
            expires_at,
        )
        with self._database.write() as conn:
            task = self._task(conn, parent.task_id)
            if task.status(now) != ACTIVE:
                raise ConflictError(f"task {task.id} is {task.status(now)}, not active")
            parent_record = self._warrant(conn, parent.id)
            lineage = self._lineage(conn, parent_record)
            self._usable(lineage, now)
            self._insert_warrant(conn, record)
            self._record(
                conn,
                "warrant.delegate",
                parent.agent,
                task,
                {
                    "warrant": record.id,
                    "parent": parent.id,
                    "to": agent,
                    "depth": depth,
                    "scope": child_scope.to_json(),
                    "expires_at": expires_at,
                },
            )
        token = None
        if bound is not None:
            token = self._sign(record, [*parent.chain, parent.id], [parent.agent, *parent.actors])
        return record, token

    def revoke_warrant(
        self, warrant_id: str, *, actor: str, reason: str = ""
    ) -> builtins.list[str]:
        """Revoke a warrant and every warrant delegated below it; the ids revoked.

        Raises:
            NotFoundError: no such warrant.
        """
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInputError(f"a reason has at most {MAX_REASON_CHARS} characters")
        now = self._clock.now()
        with self._database.write() as conn:
            record = self._warrant(conn, warrant_id)
            task = self._task(conn, record.task_id)
            revoked: builtins.list[str] = []
            frontier: builtins.list[str] = [warrant_id]
            while frontier:
                revoked.extend(frontier)
                rows = conn.execute(
                    select(warrants_table.c.id).where(warrants_table.c.parent_id.in_(frontier))
                )
                frontier = [str(row[0]) for row in rows]
            conn.execute(
                update(warrants_table)
                .where(warrants_table.c.id.in_(revoked), warrants_table.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            generations.bump(conn, GENERATION)
            self._record(
                conn, "warrant.revoke", actor, task, {"warrants": revoked, "reason": reason}
            )
        return revoked

    # -- internals -----------------------------------------------------------------

    def _sign(self, record: WarrantRecord, chain: Any, actors: Any) -> str:
        assert record.jkt is not None  # noqa: S101 - only bound warrants are signed
        return warrant_token.issue(
            self.key,
            issuer=self.issuer,
            audience=self.audience,
            warrant_id=record.id,
            task_id=record.task_id,
            agent=record.agent,
            scope=record.scope,
            jkt=record.jkt,
            issued_at=self._clock.now(),
            expires_at=record.expires_at,
            chain=tuple(chain),
            actors=tuple(actors),
        )

    @staticmethod
    def _insert_warrant(conn: Connection, record: WarrantRecord) -> None:
        conn.execute(
            insert(warrants_table).values(
                **{
                    **record.describe(),
                    "scope": canonical_json(record.scope.to_json()).decode(),
                }
            )
        )

    def _lineage(self, conn: Connection, record: WarrantRecord) -> builtins.list[WarrantRecord]:
        """`record` and the warrants above it, root first."""
        lineage = [record]
        while lineage[0].parent_id is not None and len(lineage) <= self.max_depth + 16:
            lineage.insert(0, self._warrant(conn, lineage[0].parent_id))
        return lineage

    @staticmethod
    def _usable(lineage: builtins.list[WarrantRecord], now: float) -> None:
        for record in lineage:
            if record.revoked_at is not None:
                raise ConflictError(f"warrant {record.id} is revoked")
        if now >= lineage[-1].expires_at:
            raise ConflictError(f"warrant {lineage[-1].id} has expired")

    @staticmethod
    def _task(conn: Connection, task_id: str) -> Task:
        row = conn.execute(select(tasks_table).where(tasks_table.c.id == task_id)).mappings()
        found = row.first()
        if found is None:
            raise NotFoundError("task", str(task_id)[:80])
        return _task(found)

    @staticmethod
    def _warrant(conn: Connection, warrant_id: str) -> WarrantRecord:
        row = conn.execute(
            select(warrants_table).where(warrants_table.c.id == warrant_id)
        ).mappings()
        found = row.first()
        if found is None:
            raise NotFoundError("warrant", str(warrant_id)[:80])
        return _warrant(found)

    def _record(
        self, conn: Connection, action: str, actor: str, task: Task, detail: Mapping[str, Any]
    ) -> None:
        if self._audit is None:
            return
        entry = AuditEntry(
            kind="admin",
            outcome="allow",
            agent=task.agent,
            task_id=task.id,
            detail={"action": action, "principal": actor, **detail},
        )
        self._audit.append_within(conn, [entry])


def issuer_for(trust_domain: str) -> str:
    """The `iss` of the warrants a gateway of `trust_domain` signs."""
    return f"spiffe://{trust_domain}/ztgate"


def _jkt(value: Any) -> str:
    if not isinstance(value, str) or not _JKT.fullmatch(value):
        raise InvalidInputError("a key thumbprint (jkt) is 43 base64url characters (RFC 7638)")
    return value


def _task(row: RowMapping) -> Task:
    return Task(
        id=row["id"],
        principal=row["principal"],
        agent=row["agent"],
        intent=row["intent"],
        scope=parse_scope(orjson.loads(row["scope"])),
        budget_calls=row["budget_calls"],
        budget_spend=row["budget_spend"],
        state=row["state"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"],
    )


def _warrant(row: RowMapping) -> WarrantRecord:
    return WarrantRecord(
        id=row["id"],
        task_id=row["task_id"],
        parent_id=row["parent_id"],
        agent=row["agent"],
        jkt=row["jkt"],
        scope=parse_scope(orjson.loads(row["scope"])),
        depth=row["depth"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )
