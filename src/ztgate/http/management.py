"""The management API: what principals do over HTTP (tasks, revocations).

Every route here needs `Authorization: Bearer ztg_...`, a principal's API
key, and checks the principal's role on the server for each request. Agents
never use these routes; their warrant operations are in `ztgate.http.agents`.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.gateway import Gateway
from ztgate.http.problems import Problem
from ztgate.identity.revocation import KINDS as REVOCATION_KINDS
from ztgate.identity.revocation import RevocationRegistry, retention_for
from ztgate.principals.registry import ADMIN, TASKS, Principal, PrincipalRegistry
from ztgate.tasks.registry import Task, TaskRegistry

logger = logging.getLogger(__name__)
_CHALLENGE = 'Bearer realm="ztgate-management"'


class Budget(BaseModel):
    """A task's budget."""

    model_config = ConfigDict(extra="forbid")

    calls: int | None = Field(None, ge=1, description="How many calls the task may make.")
    spend: float | None = Field(None, gt=0, description="Spend units (tools declare costs).")


class TaskCreate(BaseModel):
    """The body of `POST /v1/tasks`."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(max_length=2048, description="The agent's SPIFFE ID.")
    intent: str = Field(min_length=1, max_length=4000, description="The user's request, as text.")
    scope: dict[str, Any] = Field(description='{"tools": {name: {"limits": {...}}}}')
    budget: Budget = Budget()
    expires_in_seconds: int | None = Field(None, ge=1, description="Lifetime (default: config).")
    agent_jkt: str | None = Field(
        None,
        description="RFC 7638 thumbprint of the agent's SVID key: the warrant is signed now.",
    )


class TaskEnd(BaseModel):
    """The body of `POST /v1/tasks/{id}/revoke`."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=500)


class RevocationCreate(BaseModel):
    """The body of `POST /v1/revocations`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["spiffe_id", "serial", "entry"]
    value: str = Field(min_length=1, max_length=2048)
    reason: str = Field("", max_length=500)


def principal_dependency(gateway: Gateway) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the principal whose API key the request carries (else 401)."""
    principals = PrincipalRegistry(gateway.database, gateway.clock, audit=gateway.audit)

    async def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Problem(
                401,
                "unauthenticated",
                "send a principal's API key as 'Authorization: Bearer ztg_...'",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        found = await asyncio.to_thread(principals.authenticate, key.strip())
        if found is None:
            logger.warning("management API: refused an unknown, revoked or expired API key")
            raise Problem(
                401,
                "unauthenticated",
                "the API key is unknown, revoked or expired, or its principal is disabled",
                headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
            )
        return found

    return principal


def require(caller: Principal, role: str) -> None:
    """Raise a 403 problem unless `caller` has `role`."""
    _require(caller, role)


def management_router(gateway: Gateway) -> APIRouter:
    """The routes, bound to `gateway`'s store."""
    router = APIRouter()
    Caller = Annotated[Principal, Depends(principal_dependency(gateway))]

    def tasks() -> TaskRegistry:
        if gateway.warrants is None:
            raise Problem(
                409,
                "tasks-disabled",
                'tasks need authentication: set [gateway] authentication = "required"',
            )
        return gateway.warrants.registry

    def revocations() -> RevocationRegistry:
        return RevocationRegistry(
            gateway.database,
            gateway.clock,
            retention=retention_for(gateway.settings.identity),
            audit=gateway.audit,
        )

    @router.post("/v1/tasks", status_code=201, tags=["tasks"], summary="Create a task")
    async def create_task(body: TaskCreate, caller: Caller) -> dict[str, Any]:
        _require(caller, TASKS)
        registry = tasks()
        try:
            task, record, token = await asyncio.to_thread(
                registry.create,
                principal=caller.name,
                agent=body.agent,
                intent=body.intent,
                scope=body.scope,
                budget_calls=body.budget.calls,
                budget_spend=body.budget.spend,
                ttl=body.expires_in_seconds,
                agent_jkt=body.agent_jkt,
            )
        except InvalidInputError as exc:
            raise Problem(422, "invalid-task", exc.message) from exc
        return {
            "task": task.describe(gateway.clock.now()),
            "warrant_id": record.id,
            "warrant": token,
        }

    @router.get("/v1/tasks", tags=["tasks"], summary="List tasks")
    async def list_tasks(
        caller: Caller,
        state: Literal["active", "expired", "completed", "revoked"] | None = None,
        agent: str | None = None,
    ) -> dict[str, Any]:
        _require(caller, TASKS)
        owner = None if caller.has(ADMIN) else caller.name
        found = await asyncio.to_thread(tasks().list, principal=owner, agent=agent, state=state)
        now = gateway.clock.now()
        return {"tasks": [task.describe(now) for task in found]}

    @router.get("/v1/tasks/{task_id}", tags=["tasks"], summary="Show a task and its warrants")
    async def show_task(task_id: str, caller: Caller) -> dict[str, Any]:
        registry = tasks()
        task = await _owned(registry, task_id, caller)
        warrants = await asyncio.to_thread(registry.warrants, task_id)
        return {
            "task": task.describe(gateway.clock.now()),
            "warrants": [w.describe() for w in warrants],
        }

    @router.post("/v1/tasks/{task_id}/complete", tags=["tasks"], summary="Complete a task")
    async def complete_task(task_id: str, caller: Caller) -> dict[str, Any]:
        registry = tasks()
        await _owned(registry, task_id, caller)
        try:
            task = await asyncio.to_thread(registry.complete, task_id, actor=caller.name)
        except ConflictError as exc:
            raise Problem(409, "task-not-active", exc.message) from exc
        return {"task": task.describe(gateway.clock.now())}

    @router.post("/v1/tasks/{task_id}/revoke", tags=["tasks"], summary="Revoke a task")
    async def revoke_task(
        task_id: str, caller: Caller, body: TaskEnd | None = None
    ) -> dict[str, Any]:
        registry = tasks()
        await _owned(registry, task_id, caller)
        reason = body.reason if body else ""
        try:
            task = await asyncio.to_thread(
                registry.revoke, task_id, actor=caller.name, reason=reason
            )
        except ConflictError as exc:
            raise Problem(409, "task-not-active", exc.message) from exc
        return {"task": task.describe(gateway.clock.now())}

    @router.post(
        "/v1/warrants/{warrant_id}/revoke",
        tags=["tasks"],
        summary="Revoke a warrant and every warrant delegated below it",
    )
    async def revoke_warrant(
        warrant_id: str, caller: Caller, body: TaskEnd | None = None
    ) -> dict[str, Any]:
        registry = tasks()
        try:
            record = await asyncio.to_thread(registry.warrant, warrant_id)
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        await _owned(registry, record.task_id, caller)
        revoked = await asyncio.to_thread(
            registry.revoke_warrant,
            warrant_id,
            actor=caller.name,
            reason=body.reason if body else "",
        )
        return {"revoked": revoked}

    @router.post(
        "/v1/revocations",
        status_code=201,
        tags=["identity"],
        summary="Revoke an agent (SPIFFE ID), a certificate (serial) or a registration entry",
    )
    async def revoke(body: RevocationCreate, caller: Caller) -> dict[str, Any]:
        _require(caller, ADMIN)
        try:
            rows = await asyncio.to_thread(
                revocations().revoke, body.kind, body.value, reason=body.reason, actor=caller.name
            )
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        except InvalidInputError as exc:
            raise Problem(422, "invalid-revocation", exc.message) from exc
        return {"revocations": [row.describe() for row in rows]}

    @router.get("/v1/revocations", tags=["identity"], summary="List the active revocations")
    async def list_revocations(caller: Caller) -> dict[str, Any]:
        _require(caller, ADMIN)
        rows = await asyncio.to_thread(revocations().list)
        return {"revocations": [row.describe() for row in rows], "kinds": list(REVOCATION_KINDS)}

    async def _owned(registry: TaskRegistry, task_id: str, caller: Principal) -> Task:
        _require(caller, TASKS)
        try:
            task = await asyncio.to_thread(registry.get, task_id)
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        if task.principal != caller.name and not caller.has(ADMIN):
            # Not yours: indistinguishable from absent.
            raise Problem(404, "not-found", f"task {task_id!r} not found")
        return task

    return router


def _require(caller: Principal, role: str) -> None:
    if not caller.has(role):
        raise Problem(
            403,
            "forbidden",
            f"principal {caller.name!r} lacks the {role!r} role",
            title="Forbidden",
        )
