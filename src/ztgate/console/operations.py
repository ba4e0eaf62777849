"""Operators' pages: agents, tasks, the audit log and the policy set.

    GET  /console/agents                   identities, registrations, holds, recent calls
    POST /console/agents/suspend|resume    the kill switch for one agent (admin)
    POST /console/agents/revoke            revoke every SVID of a SPIFFE ID (admin)
    GET  /console/tasks                    scope, budget used, calls
    POST /console/tasks/{id}/complete|revoke   (tasks role: own tasks; admin: any)
    GET  /console/audit                    recent records, chain verification
    GET  /console/policy                   the set in force, the last reload

Approvers see every page; the actions need the roles their API routes need,
checked on the server for every request, and are audited the same way (the
registries record them, naming the principal).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ztgate.audit.checkpoint import load_public_key
from ztgate.audit.reader import AuditReader
from ztgate.audit.verify import VerifyReport
from ztgate.console import queries
from ztgate.console.auth import ConsoleAuth, Viewer
from ztgate.console.web import PREFIX, ConsoleError, field, render
from ztgate.containment.holds import AGENT, HoldRegistry
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.gateway import Gateway
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import SPIFFE_ID, RevocationRegistry, retention_for
from ztgate.policy.status import STATUS_FILE, read_status
from ztgate.principals.registry import ADMIN, TASKS
from ztgate.store.tables import task_usage
from ztgate.tasks.registry import Task, TaskRegistry

Handler = Callable[[Request, Viewer], Awaitable[Response]]
VERIFY_CACHE_SECONDS = 30.0
DONE = {
    "suspended": "The agent is suspended: its calls are refused until it is resumed.",
    "resumed": "The agent is resumed.",
    "revoked-agent": "Every SVID of the agent is revoked.",
    "completed": "The task is completed: its warrants stop working.",
    "revoked-task": "The task is revoked: its warrants stop working.",
}


def _require(viewer: Viewer, role: str) -> None:
    if not viewer.principal.has(role):
        raise ConsoleError(403, f"principal {viewer.name!r} lacks the {role!r} role")


def _done(request: Request) -> str:
    return DONE.get(request.query_params.get("done", ""), "")


def operation_routes(gateway: Gateway, auth: ConsoleAuth) -> list[tuple[str, Handler, list[str]]]:
    """The routes (path, handler, methods), bound to `gateway`."""
    database, clock, audit = gateway.database, gateway.clock, gateway.audit
    chain = gateway.settings.audit.chain
    holds = HoldRegistry(database, clock, audit=audit)
    revocations = RevocationRegistry(
        database, clock, retention=retention_for(gateway.settings.identity), audit=audit
    )
    entries = EntryRegistry(database, clock, gateway.settings.identity.trust_domain)
    verified: dict[str, Any] = {}

    def tasks() -> TaskRegistry | None:
        return gateway.warrants.registry if gateway.warrants is not None else None

    async def agents_page(request: Request, viewer: Viewer) -> Response:
        registered = await asyncio.to_thread(entries.list)
        held = await asyncio.to_thread(holds.list)
        revoked = await asyncio.to_thread(revocations.list)
        registry = tasks()
        recent_tasks = await asyncio.to_thread(registry.list, limit=200) if registry else []
        names = sorted(
            {e.spiffe_id for e in registered}
            | {t.agent for t in recent_tasks}
            | {h.target for h in held if h.scope == AGENT}
            | {r.value for r in revoked if r.kind == SPIFFE_ID}
        )[:100]
        calls = {}
        for name in names:
            calls[name] = await asyncio.to_thread(
                queries.feed, database, chain, queries.Filters(agent=name), limit=5
            )
        return render(
            "agents.html",
            page="agents",
            viewer=viewer,
            agents=names,
            entries=registered,
            holds={h.target: h for h in held if h.scope == AGENT},
            all_holds=held,
            revoked={r.value for r in revoked if r.kind == SPIFFE_ID},
            revocations=revoked,
            calls=calls,
            done=_done(request),
        )

    async def agent_action(request: Request, viewer: Viewer) -> Response:
        form = await auth.form(request, viewer)
        _require(viewer, ADMIN)
        action = request.path_params["action"]
        spiffe_id = field(form, "spiffe_id", 2048).strip()
        reason = field(form, "reason", 500).strip()
        try:
            if action == "suspend":
                await asyncio.to_thread(
                    holds.kill, AGENT, spiffe_id, actor=viewer.name, reason=reason
                )
                done = "suspended"
            elif action == "resume":
                await asyncio.to_thread(
                    holds.resume, AGENT, spiffe_id, actor=viewer.name, reason=reason
                )
                done = "resumed"
            elif action == "revoke":
                await asyncio.to_thread(
                    revocations.revoke, SPIFFE_ID, spiffe_id, reason=reason, actor=viewer.name
                )
                done = "revoked-agent"
            else:
                raise ConsoleError(404, "no such action")
        except NotFoundError as exc:
            raise ConsoleError(404, exc.message) from exc
        except InvalidInputError as exc:
            raise ConsoleError(422, exc.message) from exc
        return RedirectResponse(f"{PREFIX}/agents?done={done}", 303)

    async def tasks_page(request: Request, viewer: Viewer) -> Response:
        registry = tasks()
        found: list[Task] = []
        if registry is not None:
            found = await asyncio.to_thread(registry.list, limit=100)
        ids = [t.id for t in found]
        calls = await asyncio.to_thread(queries.calls_per_task, database, chain, ids)
        used = await asyncio.to_thread(_usage, ids)
        return render(
            "tasks.html",
            page="tasks",
            viewer=viewer,
            enabled=registry is not None,
            tasks=found,
            now=clock.now(),
            calls=calls,
            used=used,
            may_end=lambda task: _may_end(viewer, task),
            done=_done(request),
        )

    def _usage(ids: list[str]) -> dict[str, tuple[int, float]]:
        if not ids:
            return {}
        query = select(task_usage.c.task_id, task_usage.c.calls, task_usage.c.spend).where(
            task_usage.c.task_id.in_(ids)
        )
        with database.read() as conn:
            return {row[0]: (int(row[1]), float(row[2])) for row in conn.execute(query)}

    async def task_action(request: Request, viewer: Viewer) -> Response:
        form = await auth.form(request, viewer)
        registry = tasks()
        if registry is None:
            raise ConsoleError(409, 'tasks need [gateway] authentication = "required"')
        task_id = request.path_params["task_id"][:64]
        try:
            task = await asyncio.to_thread(registry.get, task_id)
        except NotFoundError as exc:
            raise ConsoleError(404, exc.message) from exc
        if not _may_end(viewer, task):
            raise ConsoleError(403, f"principal {viewer.name!r} may not end task {task.id}")
        action = request.path_params["action"]
        try:
            if action == "complete":
                await asyncio.to_thread(registry.complete, task.id, actor=viewer.name)
                done = "completed"
            elif action == "revoke":
                reason = field(form, "reason", 500).strip()
                await asyncio.to_thread(registry.revoke, task.id, actor=viewer.name, reason=reason)
                done = "revoked-task"
            else:
                raise ConsoleError(404, "no such action")
        except ConflictError as exc:
            raise ConsoleError(409, exc.message) from exc
        except InvalidInputError as exc:
            raise ConsoleError(422, exc.message) from exc
        return RedirectResponse(f"{PREFIX}/tasks?done={done}", 303)

    async def audit_page(request: Request, viewer: Viewer) -> Response:
        reader = AuditReader(database)
        recent = await asyncio.to_thread(reader.tail, 100, chain)
        report = await asyncio.to_thread(_verification, reader)
        return render(
            "audit.html",
            page="audit",
            viewer=viewer,
            records=list(reversed(recent)),
            report=report,
            verified_at=verified.get("wall"),
            signed=verified.get("signed", False),
        )

    def _verification(reader: AuditReader) -> VerifyReport:
        head = reader.head_seq(chain)
        fresh = time.monotonic() - verified.get("at", -1e9) < VERIFY_CACHE_SECONDS
        if verified.get("head") == head and fresh:
            report: VerifyReport = verified["report"]
            return report
        path = gateway.settings.path(gateway.settings.audit.public_key)
        key = load_public_key(path) if path.exists() else None
        report = reader.verify(key)
        verified.update(
            head=head, at=time.monotonic(), wall=clock.now(), report=report, signed=key is not None
        )
        return report

    async def policy_page(request: Request, viewer: Viewer) -> Response:
        settings = gateway.settings
        status = await asyncio.to_thread(
            read_status, settings.path(settings.data_dir) / STATUS_FILE
        )
        return render(
            "policy.html",
            page="policy",
            viewer=viewer,
            status=status,
            directory=str(settings.path(settings.policy.dir)),
        )

    return [
        ("/agents", agents_page, ["GET"]),
        ("/agents/{action}", agent_action, ["POST"]),
        ("/tasks", tasks_page, ["GET"]),
        ("/tasks/{task_id}/{action}", task_action, ["POST"]),
        ("/audit", audit_page, ["GET"]),
        ("/policy", policy_page, ["GET"]),
    ]


def _may_end(viewer: Viewer, task: Task) -> bool:
    """Complete or revoke: the task's own principal with the tasks role, or an admin."""
    principal = viewer.principal
    return principal.has(ADMIN) or (principal.has(TASKS) and task.principal == principal.name)
