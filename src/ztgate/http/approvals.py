"""Approvals over HTTP: approvers list, show and decide; agents wait.

    GET  /v1/approvals?state=pending       requests (approver role)
    GET  /v1/approvals/{id}                one request, as approvers see it (approver role)
    POST /v1/approvals/{id}/approve        {"comment": "..."} (approver role)
    POST /v1/approvals/{id}/reject         {"comment": "..."} (approver role)
    GET  /v1/approvals/{id}/wait?timeout=  long-poll until decided or timeout: the state only

A decision is recorded in the audit chain naming the principal and the id
of the API key the request carried. The wait route needs no API key (the
waiting agent has none): it tells only the state, the expiry and, for a
refusal, why; the approval itself is usable only by the agent and task it
is bound to, on the very call it was asked for.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures,
# whose `Caller` is local to `approvals_router`.
import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ztgate.approvals.registry import (
    MAX_COMMENT_CHARS,
    Approval,
    ForbiddenError,
)
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.gateway import Gateway
from ztgate.http.management import principal_dependency, require
from ztgate.http.problems import Problem
from ztgate.principals.registry import APPROVER, Principal

MAX_WAIT_SECONDS = 60.0
_KEY_ID = re.compile(r"ztg_([0-9a-f]{16})_")


class DecisionBody(BaseModel):
    """The body of `POST /v1/approvals/{id}/approve` and `/reject`."""

    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=MAX_COMMENT_CHARS)


def key_id(request: Request) -> str | None:
    """The id of the API key in the request's `Authorization` header (never its secret)."""
    found = _KEY_ID.search(request.headers.get("authorization", ""))
    return found.group(1) if found else None


def waiting_view(approval: Approval, now: float) -> dict[str, Any]:
    """What a waiting agent is told: the state, the expiry and, for a refusal, why."""
    state = approval.status(now)
    view: dict[str, Any] = {"id": approval.id, "state": state, "expires_at": approval.expires_at}
    reason = approval.refusal(now)
    if reason:
        view["reason"] = reason
    return view


def approvals_router(gateway: Gateway) -> APIRouter:
    """The routes, bound to `gateway`'s store."""
    router = APIRouter()
    Caller = Annotated[Principal, Depends(principal_dependency(gateway))]
    approvals = gateway.approvals

    async def _get(approval_id: str) -> Approval:
        try:
            return await asyncio.to_thread(approvals.get, approval_id)
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc

    @router.get("/v1/approvals", tags=["approvals"], summary="List approval requests")
    async def list_approvals(
        caller: Caller,
        state: Literal["pending", "approved", "rejected", "used", "expired"] | None = "pending",
    ) -> dict[str, Any]:
        require(caller, APPROVER)
        found = await asyncio.to_thread(approvals.list, state)
        now = gateway.clock.now()
        return {"approvals": [a.describe(now) for a in found]}

    @router.get("/v1/approvals/{approval_id}", tags=["approvals"], summary="Show a request")
    async def show_approval(approval_id: str, caller: Caller) -> dict[str, Any]:
        require(caller, APPROVER)
        approval = await _get(approval_id)
        return {"approval": approval.describe(gateway.clock.now())}

    async def _decide(
        approval_id: str, approve: bool, caller: Principal, request: Request, comment: str
    ) -> dict[str, Any]:
        require(caller, APPROVER)
        try:
            decided = await asyncio.to_thread(
                approvals.decide,
                approval_id,
                approve,
                principal=caller,
                key_id=key_id(request),
                comment=comment,
            )
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        except ForbiddenError as exc:
            raise Problem(403, "forbidden", exc.message, title="Forbidden") from exc
        except ConflictError as exc:
            raise Problem(409, "approval-not-pending", exc.message) from exc
        except InvalidInputError as exc:
            raise Problem(422, "invalid-decision", exc.message) from exc
        return {"approval": decided.describe(gateway.clock.now())}

    @router.post(
        "/v1/approvals/{approval_id}/approve", tags=["approvals"], summary="Approve a request"
    )
    async def approve(
        approval_id: str, caller: Caller, request: Request, body: DecisionBody | None = None
    ) -> dict[str, Any]:
        return await _decide(approval_id, True, caller, request, body.comment if body else "")

    @router.post(
        "/v1/approvals/{approval_id}/reject", tags=["approvals"], summary="Reject a request"
    )
    async def reject(
        approval_id: str, caller: Caller, request: Request, body: DecisionBody | None = None
    ) -> dict[str, Any]:
        return await _decide(approval_id, False, caller, request, body.comment if body else "")

    @router.get(
        "/v1/approvals/{approval_id}/wait",
        tags=["approvals"],
        summary="Wait (long-poll) until a request is decided or the timeout passes",
    )
    async def wait(
        approval_id: str,
        timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 30.0,
    ) -> dict[str, Any]:
        try:
            found = await approvals.wait(approval_id, timeout)
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        return {"approval": waiting_view(found, gateway.clock.now())}

    return router
