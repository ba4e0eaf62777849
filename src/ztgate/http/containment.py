"""The kill switch over HTTP: kill, resume and list what is stopped (admin principals only).

    POST /v1/containment/kill         {"scope": "agent" | "task" | "all", "target", "reason"}
    POST /v1/containment/resume       the same: lifts kills and burst suspensions of the target
    GET  /v1/containment/suspensions  every hold: kills and suspensions

Like `ztgate kill` / `ztgate resume`, a change holds from the next call of
every gateway process on, and is audited naming the principal.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures,
# whose `Caller` is local to `containment_router`.
import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ztgate.containment.holds import HoldRegistry
from ztgate.errors import InvalidInputError, NotFoundError
from ztgate.gateway import Gateway
from ztgate.http.management import principal_dependency, require
from ztgate.http.problems import Problem
from ztgate.principals.registry import ADMIN, Principal


class HoldRequest(BaseModel):
    """The body of `POST /v1/containment/kill` and `/resume`."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["agent", "task", "all"]
    target: str | None = Field(
        None, max_length=2048, description="The SPIFFE ID or the task id (none for all)."
    )
    reason: str = Field("", max_length=500)


def containment_router(gateway: Gateway) -> APIRouter:
    """The routes, bound to `gateway`'s store."""
    router = APIRouter()
    Caller = Annotated[Principal, Depends(principal_dependency(gateway))]
    holds = HoldRegistry(gateway.database, gateway.clock, audit=gateway.audit)

    @router.post(
        "/v1/containment/kill",
        status_code=201,
        tags=["containment"],
        summary="Stop every call of an agent, a task, or everything",
    )
    async def kill(body: HoldRequest, caller: Caller) -> dict[str, Any]:
        require(caller, ADMIN)
        try:
            hold = await asyncio.to_thread(
                holds.kill, body.scope, body.target or "*", actor=caller.name, reason=body.reason
            )
        except NotFoundError as exc:
            raise Problem(404, "not-found", exc.message) from exc
        except InvalidInputError as exc:
            raise Problem(422, "invalid-hold", exc.message) from exc
        return {"hold": hold.describe()}

    @router.post(
        "/v1/containment/resume",
        tags=["containment"],
        summary="Lift the kill and the burst suspension of an agent, a task, or kill all",
    )
    async def resume(body: HoldRequest, caller: Caller) -> dict[str, Any]:
        require(caller, ADMIN)
        try:
            lifted = await asyncio.to_thread(
                holds.resume, body.scope, body.target or "*", actor=caller.name, reason=body.reason
            )
        except NotFoundError as exc:
            raise Problem(404, "not-held", exc.message) from exc
        except InvalidInputError as exc:
            raise Problem(422, "invalid-hold", exc.message) from exc
        return {"lifted": [hold.describe() for hold in lifted]}

    @router.get(
        "/v1/containment/suspensions",
        tags=["containment"],
        summary="What is stopped: kills and burst suspensions",
    )
    async def suspensions(caller: Caller) -> dict[str, Any]:
        require(caller, ADMIN)
        found = await asyncio.to_thread(holds.list)
        return {"suspensions": [hold.describe() for hold in found]}

    return router
