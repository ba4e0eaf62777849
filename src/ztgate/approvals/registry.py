"""Approval requests: stored, decided by principals, used once.

When policy asks about a call, the gateway stores an approval request: who
(agent, task, the task's principal), what (tool, risk tier, a redacted
arguments preview, the canonical arguments hash), why (the justification,
the asking verdicts' reasons) and the task's intent, with an expiry. A
principal with the approver role approves or rejects it; the decision is
recorded in the audit chain in the same transaction, naming the principal,
the API key used, the comment and the hash of the request as shown.

An approval is bound to the call: the agent re-sends the identical call
(same tool, same canonical arguments, same task, same agent) with a fresh
proof and the approval's id, and the gateway `consume`s it (once). A
changed argument, another task or agent, a second use, a rejected or an
expired request is refused.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import RowMapping

from ztgate.audit import AuditEntry, AuditLog
from ztgate.audit.redact import preview, preview_text
from ztgate.canonical import canonical_json
from ztgate.clock import Clock
from ztgate.errors import ConflictError, GatewayError, InvalidInputError, NotFoundError
from ztgate.ids import time_ordered_id
from ztgate.models import ToolCall
from ztgate.principals.registry import APPROVER, Principal
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import approvals as table

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
USED = "used"
EXPIRED = "expired"  # read, never stored: pending or approved past expires_at
STATES = (PENDING, APPROVED, REJECTED, USED, EXPIRED)
CRITICAL = "critical"
MAX_COMMENT_CHARS = 1000
POLL_SECONDS = 0.2
# Bumped by every decision: with change broadcasts, a replica's waiters wake
# on the message instead of at their next poll.
GENERATION = "approvals"
# An approval given near the end of a request's life stays usable this long.
USE_WINDOW_SECONDS = 60.0


class ForbiddenError(GatewayError):
    """The principal may not decide this request."""


@dataclass(frozen=True, slots=True)
class Approval:
    """One stored approval request and its decision."""

    id: str
    state: str
    tool: str
    risk: str
    arguments_sha256: str
    agent: str
    task_id: str
    principal: str
    request: Mapping[str, Any]
    request_sha256: str
    second_person: bool
    created_at: float
    expires_at: float
    decided_by: str | None = None
    decided_key: str | None = None
    decided_at: float | None = None
    comment: str | None = None
    used_at: float | None = None
    used_call_id: str | None = None

    def status(self, now: float) -> str:
        """The state as of `now`: a pending or approved request past its expiry is expired."""
        if self.state in (PENDING, APPROVED) and now >= self.expires_at:
            return EXPIRED
        return self.state

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON-ready description (what approvers see, and the decision)."""
        return {
            "id": self.id,
            "state": self.status(now),
            "request": dict(self.request),
            "request_sha256": self.request_sha256,
            "second_person": self.second_person,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "decided_by": self.decided_by,
            "decided_key": self.decided_key,
            "decided_at": self.decided_at,
            "comment": self.comment,
            "used_at": self.used_at,
            "used_call_id": self.used_call_id,
        }

    def refusal(self, now: float) -> str:
        """Why the call this request was for is denied (rejected or expired), or ""."""
        status = self.status(now)
        if status == REJECTED:
            note = f": {self.comment}" if self.comment else ""
            return f"approval {self.id} was rejected by {self.decided_by}{note}"
        if status == EXPIRED:
            return f"approval {self.id} expired without a decision"
        return ""


class ApprovalRegistry:
    """The approvals table, behind methods that validate, bind and audit."""

    def __init__(self, database: Database, clock: Clock, *, audit: AuditLog | None = None) -> None:
        """Decisions are audited to `audit` when given."""
        self._database = database
        self._clock = clock
        self._audit = audit
        # How `wait` pauses between reads: `asyncio.sleep`, or (with change
        # broadcasts) until the next change message, whichever comes first.
        self.pause: Callable[[float], Awaitable[object]] = asyncio.sleep

    def create(
        self,
        call: ToolCall,
        *,
        risk: str,
        principal: str,
        intent: str,
        reasons: Sequence[Mapping[str, str]],
        ttl: float,
        second_person: bool = False,
    ) -> Approval:
        """Store a pending request for `call` (its agent and task set), expiring in `ttl` seconds.

        The same call (tool, arguments, task, agent) asked again while a
        request for it is pending gets that request (`request["call_id"]`
        names the call that made it).

        Raises:
            InvalidInputError: the call names no agent or task.
        """
        if call.agent is None or call.task_id is None:
            raise InvalidInputError("an approval needs an authenticated agent and a task")
        now = self._clock.now()
        request: dict[str, Any] = {
            "tool": call.tool,
            "risk": risk,
            "arguments_preview": preview(call.arguments),
            "arguments_sha256": call.arguments_sha256,
            "agent": call.agent,
            "task_id": call.task_id,
            "principal": principal,
            "intent": preview_text(intent, 4000),
            "justification": preview_text(call.justification),
            "reasons": [dict(r) for r in reasons],
            "call_id": call.call_id,
        }
        approval = Approval(
            id=time_ordered_id(),
            state=PENDING,
            tool=call.tool,
            risk=risk,
            arguments_sha256=call.arguments_sha256,
            agent=call.agent,
            task_id=call.task_id,
            principal=principal,
            request=request,
            request_sha256=hashlib.sha256(canonical_json(request)).hexdigest(),
            second_person=second_person and risk == CRITICAL,
            created_at=now,
            expires_at=now + ttl,
        )
        with self._database.write() as conn:
            # The same call asked again while its request is pending: that request.
            same = conn.execute(
                select(table)
                .where(
                    table.c.state == PENDING,
                    table.c.tool == call.tool,
                    table.c.arguments_sha256 == approval.arguments_sha256,
                    table.c.task_id == call.task_id,
                    table.c.agent == call.agent,
                    table.c.expires_at > now,
                )
                .order_by(table.c.created_at.desc())
                .limit(1)
            ).mappings()
            found = same.first()
            if found is not None:
                return _approval(found)
            conn.execute(
                insert(table).values(
                    id=approval.id,
                    state=approval.state,
                    tool=approval.tool,
                    risk=approval.risk,
                    arguments_sha256=approval.arguments_sha256,
                    agent=approval.agent,
                    task_id=approval.task_id,
                    principal=approval.principal,
                    request=orjson.dumps(request, option=orjson.OPT_SORT_KEYS).decode(),
                    request_sha256=approval.request_sha256,
                    second_person=approval.second_person,
                    created_at=approval.created_at,
                    expires_at=approval.expires_at,
                )
            )
        return approval

    def get(self, approval_id: str) -> Approval:
        """The request with this id.

        Raises:
            NotFoundError: no such request.
        """
        with self._database.read() as conn:
            found = _get(conn, approval_id)
        if found is None:
            raise NotFoundError("approval", approval_id[:80])
        return found

    def list(self, state: str | None = None, limit: int = 200) -> builtins.list[Approval]:
        """Requests, newest first; `state` filters on `status(now)` (e.g. "pending").

        Raises:
            InvalidInputError: an unknown state.
        """
        if state is not None and state not in STATES:
            raise InvalidInputError(f"state is one of {', '.join(STATES)}")
        query = select(table).order_by(table.c.created_at.desc())
        if state in (PENDING, APPROVED):
            query = query.where(table.c.state == state)
        elif state == EXPIRED:
            query = query.where(table.c.state.in_((PENDING, APPROVED)))
        elif state is not None:
            query = query.where(table.c.state == state)
        with self._database.read() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        now = self._clock.now()
        found = [_approval(row) for row in rows]
        return [a for a in found if state is None or a.status(now) == state]

    def decide(
        self,
        approval_id: str,
        approve: bool,
        *,
        principal: Principal,
        key_id: str | None = None,
        comment: str = "",
        attestation: Mapping[str, Any] | None = None,
    ) -> Approval:
        """Approve or reject a pending request, recording the decision in the audit chain.

        `attestation` is added to the audit record's detail: the web console's
        signed statement, its signature and the session key's thumbprint.

        Raises:
            ForbiddenError: the principal lacks the approver role, the call is
                outside its approver scope (agents, tools), or the request
                needs a second person and this is its task's principal.
            NotFoundError: no such request.
            ConflictError: the request was decided already, or expired.
            InvalidInputError: the comment is too long.
        """
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidInputError(f"a comment is at most {MAX_COMMENT_CHARS} characters")
        if not principal.has(APPROVER):
            raise ForbiddenError(f"principal {principal.name!r} lacks the 'approver' role")
        now = self._clock.now()
        with self._database.write() as conn:
            found = _get(conn, approval_id)
            if found is None:
                raise NotFoundError("approval", approval_id[:80])
            status = found.status(now)
            if status != PENDING:
                raise ConflictError(f"approval {found.id} is {status}, not pending")
            if not principal.may_approve(found.agent, found.tool):
                raise ForbiddenError(
                    f"principal {principal.name!r} may not decide calls of {found.agent} "
                    f"to {found.tool}: outside its approver scope"
                )
            if found.second_person and principal.name == found.principal:
                raise ForbiddenError(
                    f"approval {found.id} needs a second person: {principal.name!r} "
                    "owns the task and may not decide its critical call"
                )
            state = APPROVED if approve else REJECTED
            expires_at = max(found.expires_at, now + USE_WINDOW_SECONDS) if approve else None
            generations.bump(conn, GENERATION)
            conn.execute(
                update(table)
                .where(table.c.id == found.id, table.c.state == PENDING)
                .values(
                    state=state,
                    decided_by=principal.name,
                    decided_key=key_id,
                    decided_at=now,
                    comment=comment or None,
                    expires_at=expires_at or found.expires_at,
                )
            )
            if self._audit is not None:
                entry = AuditEntry(
                    kind="approval",
                    outcome="allow" if approve else "deny",
                    agent=found.agent,
                    task_id=found.task_id,
                    tool=found.tool,
                    arguments_sha256=found.arguments_sha256,
                    detail={
                        **(attestation or {}),  # never overriding the fields below
                        "action": "approval.approve" if approve else "approval.reject",
                        "approval": found.id,
                        "principal": principal.name,
                        "api_key": key_id,
                        "decision": state,
                        "comment": comment,
                        "request_sha256": found.request_sha256,
                    },
                )
                self._audit.append_within(conn, [entry])
            decided = _get(conn, found.id)
        if decided is None:  # pragma: no cover - the row was just updated
            raise NotFoundError("approval", found.id)
        return decided

    def consume(self, approval_id: str, call: ToolCall) -> tuple[Approval | None, str]:
        """Use an approval for `call` (once): the approval, or None and why not.

        The call must be the one approved: same tool, same canonical
        arguments, same task, same agent.
        """
        now = self._clock.now()
        with self._database.write() as conn:
            found = _get(conn, approval_id)
            if found is None:
                return None, f"approval {approval_id[:80]!r} not found"
            why = _mismatch(found, call)
            if why:
                return None, f"approval {found.id} does not match this call: {why}"
            status = found.status(now)
            if status != APPROVED:
                return None, found.refusal(now) or f"approval {found.id} is {status}"
            done = conn.execute(
                update(table)
                .where(table.c.id == found.id, table.c.state == APPROVED)
                .values(state=USED, used_at=now, used_call_id=call.call_id)
            )
            if done.rowcount != 1:
                return None, f"approval {found.id} was used already"
            used = _get(conn, found.id)
        return used, ""

    async def wait(self, approval_id: str, timeout: float) -> Approval:
        """The request once it is no longer pending, or as it is after `timeout` seconds.

        Raises:
            NotFoundError: no such request.
        """
        deadline = self._clock.monotonic() + max(0.0, timeout)
        while True:
            found = await asyncio.to_thread(self.get, approval_id)
            now = self._clock.now()
            left = deadline - self._clock.monotonic()
            if found.status(now) != PENDING or left <= 0:
                return found
            await self.pause(min(POLL_SECONDS, left, max(found.expires_at - now, 0.01)))


def _mismatch(found: Approval, call: ToolCall) -> str:
    if found.tool != call.tool:
        return "another tool"
    if found.arguments_sha256 != call.arguments_sha256:
        return "the arguments changed"
    if found.task_id != call.task_id:
        return "another task"
    if found.agent != call.agent:
        return "another agent"
    return ""


def _get(conn: Connection, approval_id: str) -> Approval | None:
    row = conn.execute(select(table).where(table.c.id == approval_id)).mappings().first()
    return None if row is None else _approval(row)


def _approval(row: RowMapping) -> Approval:
    return Approval(
        id=row["id"],
        state=row["state"],
        tool=row["tool"],
        risk=row["risk"],
        arguments_sha256=row["arguments_sha256"],
        agent=row["agent"],
        task_id=row["task_id"],
        principal=row["principal"],
        request=orjson.loads(row["request"]),
        request_sha256=row["request_sha256"],
        second_person=bool(row["second_person"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        decided_by=row["decided_by"],
        decided_key=row["decided_key"],
        decided_at=row["decided_at"],
        comment=row["comment"],
        used_at=row["used_at"],
        used_call_id=row["used_call_id"],
    )
