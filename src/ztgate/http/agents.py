"""Agents' warrant operations over HTTP: bind a warrant to the SVID key, delegate one.

Both are proven like a call: the `Ztgate-Proof` header signs the request
body's RFC 8785 form (`op` "bind" or "delegate"). Refusals are problem
details and are recorded in the audit log like refused calls.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ztgate.canonical import canonical_json
from ztgate.errors import InvalidInputError, StoreError
from ztgate.gateway import Gateway
from ztgate.http.body import read_body
from ztgate.http.credentials import read_client_chain, read_credentials
from ztgate.http.problems import Problem
from ztgate.identity.check import MAX_CHAIN_LENGTH
from ztgate.jsonlimits import JsonTooDeepError, parse_json
from ztgate.warrants.service import BindRequest, OperationRefused, WarrantService

_SLUGS = {401: "unauthenticated", 403: "forbidden", 404: "not-found", 422: "invalid-request"}
_TITLES = {403: "Forbidden"}
_BIND_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "task_id": {"type": "string"},
        "warrant_id": {"type": "string"},
        "x5c": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_CHAIN_LENGTH},
    },
    "required": ["task_id"],
}
_DELEGATE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "agent": {"type": "string"},
        "scope": {"type": "object"},
        "expires_in_seconds": {"type": "number"},
        "jkt": {"type": "string"},
    },
    "required": ["agent"],
}


def agents_router(gateway: Gateway) -> APIRouter:
    """The agents' warrant routes, bound to `gateway`."""
    router = APIRouter()

    def service() -> WarrantService:
        if gateway.warrants is None or gateway.identity is None:
            raise Problem(
                409,
                "tasks-disabled",
                'warrants need authentication: set [gateway] authentication = "required"',
            )
        try:
            # New registrations, revocations and tasks count from the very next request.
            gateway.refresh()
        except StoreError as exc:
            raise Problem(503, "store-unavailable", "the store is unavailable") from exc
        return gateway.warrants

    @router.post(
        "/v1/warrants/bind",
        tags=["warrants"],
        summary="Receive a warrant bound to the caller's X.509-SVID key",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _BIND_SCHEMA}},
            }
        },
    )
    async def bind(request: Request) -> Response:
        warrants = service()
        body, canonical = await _json_body(gateway, request)
        task_id = body.get("task_id")
        warrant_id = body.get("warrant_id")
        if set(body) - {"task_id", "warrant_id", "x5c"}:
            raise Problem(422, "invalid-request", "unknown field in the body")
        if not isinstance(task_id, str) or not isinstance(warrant_id, str | None):
            raise Problem(422, "invalid-request", "task_id (and optionally warrant_id) are strings")
        chain = _chain(body.get("x5c"), request)
        assert gateway.identity is not None  # noqa: S101 - checked by service()
        try:
            agent, issued = await warrants.bind(
                gateway.identity.check,
                BindRequest(task_id, warrant_id, chain, canonical),
                request.headers.get("ztgate-proof"),
            )
        except OperationRefused as refused:
            raise await _refused(gateway, refused) from refused
        return _json(
            {
                "warrant": issued.token,
                "warrant_id": issued.record.id,
                "task_id": issued.record.task_id,
                "agent": agent,
                "expires_at": issued.record.expires_at,
            }
        )

    @router.post(
        "/v1/warrants/delegate",
        status_code=201,
        tags=["warrants"],
        summary="Give a sub-agent a narrower warrant of the same task",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _DELEGATE_SCHEMA}},
            }
        },
    )
    async def delegate(request: Request) -> Response:
        warrants = service()
        body, canonical = await _json_body(gateway, request)
        credentials = read_credentials(
            request.headers.get("authorization"),
            read_client_chain(request.scope),
            warrant=request.headers.get("ztgate-warrant"),
            proof=request.headers.get("ztgate-proof"),
        )
        assert gateway.identity is not None  # noqa: S101 - checked by service()
        try:
            parent, record, token = await warrants.delegate(
                gateway.identity.check, credentials, body, canonical
            )
        except OperationRefused as refused:
            raise await _refused(gateway, refused) from refused
        return _json(
            {
                "warrant_id": record.id,
                "task_id": record.task_id,
                "agent": record.agent,
                "parent_id": parent.id,
                "depth": record.depth,
                "scope": record.scope.to_json(),
                "expires_at": record.expires_at,
                "warrant": token,
            },
            status=201,
        )

    return router


async def _json_body(gateway: Gateway, request: Request) -> tuple[dict[str, Any], bytes]:
    settings = gateway.settings.gateway
    raw = await read_body(request, settings.max_body_bytes)
    try:
        body = parse_json(raw, max_depth=settings.max_json_depth)
        if not isinstance(body, dict):
            raise Problem(422, "invalid-request", "the body must be a JSON object")
        return body, canonical_json(body)
    except JsonTooDeepError as exc:
        raise Problem(400, "json-too-deep", exc.message) from exc
    except InvalidInputError as exc:
        raise Problem(400, "malformed-json", exc.message) from exc


def _chain(x5c: Any, request: Request) -> bytes:
    if x5c is None:
        chain = read_client_chain(request.scope)
        if not chain:
            raise Problem(
                401,
                "unauthenticated",
                "send the X.509-SVID chain as x5c (base64 DER, leaf first) or connect with mTLS",
            )
        return chain
    if not isinstance(x5c, list) or not 0 < len(x5c) <= MAX_CHAIN_LENGTH:
        raise Problem(422, "invalid-request", f"x5c is a list of 1-{MAX_CHAIN_LENGTH} certificates")
    try:
        return b"".join(base64.b64decode(item, validate=True) for item in x5c)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise Problem(422, "invalid-request", "x5c holds standard base64 DER certificates") from exc


async def _refused(gateway: Gateway, refused: OperationRefused) -> Problem:
    call_id = gateway.ids()
    try:
        await gateway.record_rejection(call_id, refused.status, refused.message)
    except StoreError:
        return Problem(503, "store-unavailable", "the audit log is unavailable; nothing was done")
    return Problem(
        refused.status,
        _SLUGS.get(refused.status, "refused"),
        refused.message,
        title=_TITLES.get(refused.status),
        extensions={"call_id": call_id},
    )


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")
