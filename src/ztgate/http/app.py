"""The HTTP front door: FastAPI routes over the `Gateway`.

`POST /v1/calls` decides a call and, when allowed, forwards it and returns the
tool's result; denied calls get 403 with every deciding reason. Every error is
RFC 9457 problem+json; no stack trace ever reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from ztgate import __version__
from ztgate.approvals.registry import Approval
from ztgate.errors import GatewayError, InvalidInputError, StoreError, StoreUnavailableError
from ztgate.gateway import CallReport, Failure, Gateway, unauthenticated
from ztgate.http.agents import agents_router
from ztgate.http.approvals import approvals_router
from ztgate.http.body import CallRequest, parse_call_request, read_body
from ztgate.http.containment import containment_router
from ztgate.http.credentials import CHALLENGE as _CHALLENGE
from ztgate.http.credentials import read_client_chain, read_credentials
from ztgate.http.management import management_router
from ztgate.http.problems import MEDIA_TYPE, Problem
from ztgate.identity.bundle import bundle_document
from ztgate.identity.providers import LocalBundles
from ztgate.identity.verify import TrustBundle
from ztgate.metrics import CONTENT_TYPE
from ztgate.models import Decision

logger = logging.getLogger(__name__)

_FAILURE_STATUS = {
    Failure.STORE_UNAVAILABLE: (503, "store-unavailable"),
    Failure.UPSTREAM_FAILED: (502, "upstream-failed"),
    Failure.UPSTREAM_TIMEOUT: (504, "upstream-timeout"),
    Failure.RESULT_WITHHELD: (502, "result-withheld"),
}
_PROBLEM_SCHEMA = {"content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> FastAPI:
    """The ASGI application serving `gateway`."""

    mcp_front = None
    if gateway.settings.mcp.enabled:
        from ztgate.mcp.front import McpFrontDoor

        mcp_front = McpFrontDoor(gateway)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await gateway.start()
        try:
            if mcp_front is None:
                yield
            else:
                async with mcp_front.running():
                    yield
        finally:
            if manage_lifecycle:
                await gateway.stop()

    app = FastAPI(
        title="ztgate",
        version=__version__,
        summary="A zero-trust gateway for autonomous AI agents.",
        lifespan=lifespan,
        redoc_url=None,
    )
    _install_error_handlers(app)
    app.state.mcp = mcp_front

    @app.post(
        "/v1/calls",
        tags=["calls"],
        summary="Decide a tool call and, when allowed, run it",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": CallRequest.model_json_schema()}},
            }
        },
        responses={
            200: {"description": "Allowed: the tool ran; its result is in `result`."},
            202: {
                "description": "Asked: a principal must approve; `approval.id` names the request."
            },
            401: {
                "description": "Not authenticated: no valid, registered, unrevoked SVID.",
                **_PROBLEM_SCHEMA,
            },
            403: {"description": "Denied, with every deciding reason.", **_PROBLEM_SCHEMA},
            429: {
                "description": "Rate limited: retry after `Retry-After` seconds.",
                **_PROBLEM_SCHEMA,
            },
            413: {"description": "Body too large.", **_PROBLEM_SCHEMA},
            415: {"description": "Not JSON.", **_PROBLEM_SCHEMA},
            400: {"description": "Malformed JSON.", **_PROBLEM_SCHEMA},
            422: {"description": "Body does not fit the schema.", **_PROBLEM_SCHEMA},
            502: {"description": "The tool failed or its result was withheld.", **_PROBLEM_SCHEMA},
            503: {"description": "The store is unavailable: fail closed.", **_PROBLEM_SCHEMA},
            504: {"description": "The tool timed out.", **_PROBLEM_SCHEMA},
        },
    )
    async def post_call(request: Request) -> Response:
        return await handle_call_request(gateway, request)

    @app.get("/healthz", tags=["operations"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the store takes writes")
    async def readyz() -> dict[str, str]:
        try:
            # A write transaction, not just a read: every call needs an audit
            # write, and WAL readers still succeed while writes are blocked.
            await asyncio.to_thread(gateway.database.probe_write)
        except StoreError as exc:
            raise Problem(503, "not-ready", f"store unavailable: {exc.message}") from exc
        broadcasts = gateway.broadcasts
        if broadcasts is not None and not broadcasts.ready:
            # A load balancer's health check takes the replica out while it
            # cannot know what other replicas changed (its calls get 503).
            raise Problem(503, "not-ready", f"change broadcasts unavailable: {broadcasts.problem}")
        return {"status": "ready"}

    bundle_cache: dict[str, Any] = {}

    @app.get(
        "/v1/bundle",
        tags=["identity"],
        summary="The trust domain's SPIFFE bundle (JWK set), for relying parties and federation",
    )
    async def bundle() -> Response:
        local = await asyncio.to_thread(_local_trust_bundle, gateway, bundle_cache)
        document = bundle_document(local, sequence=int(bundle_cache.get("sequence", 1)))
        if gateway.warrants is not None:
            # The key warrants are signed with, under its own `use`: SPIFFE
            # consumers ignore it, and it never verifies a JWT-SVID.
            document["keys"].append(gateway.warrants.registry.key.jwk())
        return Response(orjson.dumps(document), media_type="application/json")

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(management_router(gateway))
    app.include_router(agents_router(gateway))
    app.include_router(containment_router(gateway))
    app.include_router(approvals_router(gateway))
    if gateway.settings.console.enabled:
        # The web console (server-rendered pages; docs/console.md).
        from ztgate.console.app import create_console

        @app.get("/console", include_in_schema=False)
        async def console_root() -> Response:
            return RedirectResponse("/console/", 307)

        app.mount("/console", create_console(gateway))
    _add_problem_schema(app)
    return app


def _local_trust_bundle(gateway: Gateway, cache: dict[str, Any]) -> TrustBundle:
    # With authentication on, the gateway already keeps the bundle fresh;
    # otherwise one is kept here, reloaded when the CA changes.
    if gateway.identity is not None:
        cache["sequence"] = gateway.identity.bundles.sequence
        return gateway.identity.local_bundle()
    bundles = cache.get("provider")
    if bundles is None:
        identity = gateway.settings.identity
        bundles = cache["provider"] = LocalBundles(
            gateway.settings.path(identity.ca_dir), gateway.clock, passphrase=identity.passphrase()
        )
    local: TrustBundle = bundles()[gateway.settings.identity.trust_domain]
    cache["sequence"] = bundles.sequence
    return local


async def handle_call_request(gateway: Gateway, request: Request) -> Response:
    """Parse a `POST /v1/calls` request, run the call and build the answer."""
    started = time.perf_counter()
    call_id = gateway.ids()
    settings = gateway.settings.gateway
    try:
        body = await read_body(request, settings.max_body_bytes)
    except ClientDisconnect:
        # Nothing was asked and nobody is listening: no decision, no record.
        logger.debug("client left before sending the whole body (call %s)", call_id)
        return Problem(400, "incomplete-body", "the client disconnected mid-body").response()
    except Problem as refused:
        return await _reject(gateway, call_id, refused)
    credentials = None
    approval_id = request.headers.get("ztgate-approval")
    if settings.authentication == "required":
        try:
            headers = request.headers
            credentials = read_credentials(
                headers.get("authorization"),
                read_client_chain(request.scope),
                warrant=headers.get("ztgate-warrant"),
                proof=headers.get("ztgate-proof"),
            )
        except Problem as refused:
            return await _reject(gateway, call_id, refused)
    try:
        parsed = parse_call_request(body, settings.max_json_depth)
        call = gateway.new_call(
            parsed.tool,
            parsed.arguments,
            justification=parsed.justification,
            credentials=credentials,
            call_id=call_id,
            approval_id=approval_id[:64] if approval_id else None,
        )
    except InvalidInputError as exc:
        return await _reject(gateway, call_id, Problem(400, "invalid-arguments", exc.message))
    except Problem as problem:
        return await _reject(gateway, call_id, problem)
    try:
        report = await gateway.handle(call)
    except StoreError as exc:
        logger.error("audit unavailable, call %s refused: %s", call_id, exc)
        report = CallReport(call, None, failure=Failure.STORE_UNAVAILABLE, detail=str(exc))
    response = _answer(report)
    gateway.metrics.call_seconds.labels(report.outcome.value).observe(time.perf_counter() - started)
    return response


class CallsFastPath:
    """ASGI: `POST /v1/calls` answered directly; everything else by the FastAPI app.

    The call route is the gateway's hot path. FastAPI's routing, dependency
    and middleware layers cost about 0.15 ms per request, more than the
    checks themselves, so the call route skips them here. The FastAPI route
    of the same path runs the very same `handle_call_request` and is what
    the OpenAPI description documents. Like Starlette's
    `ServerErrorMiddleware`, this layer turns any crash into a problem, never a
    stack trace.
    """

    def __init__(self, app: FastAPI, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        front = getattr(app.state, "mcp", None)
        # The MCP front door (`ztgate.mcp.front`), served at /mcp beside the
        # API, its common tools/call answered by `ztgate.mcp.fastpath`.
        self.mcp: Any = None
        if front is not None:
            from ztgate.mcp.fastpath import McpCallFastPath

            self.mcp = McpCallFastPath(front)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI event."""
        if scope["type"] == "http" and scope["path"] == "/mcp" and self.mcp is not None:
            await self.mcp(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] != "/v1/calls" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            response = await handle_call_request(self.gateway, Request(scope, receive))
        except Exception:
            logger.exception("unhandled error in POST /v1/calls")
            response = Problem(
                500, "internal-error", "the gateway could not complete the request"
            ).response()
        await response(scope, receive, send)


def create_asgi(gateway: Gateway) -> CallsFastPath:
    """The ASGI application the server runs: the fast call path over the FastAPI app."""
    return CallsFastPath(create_app(gateway), gateway)


async def _reject(gateway: Gateway, call_id: str, problem: Problem) -> Response:
    gateway.metrics.rejected.labels(problem.slug).inc()
    try:
        await gateway.record_rejection(call_id, problem.status, problem.detail)
    except StoreError:
        return Problem(
            503,
            "store-unavailable",
            "the audit log is unavailable; nothing was done",
            extensions={"call_id": call_id},
        ).response(call_id)
    problem.extensions.setdefault("call_id", call_id)
    return problem.response(call_id)


def _answer(report: CallReport) -> Response:
    call_id = report.call.call_id
    if report.failure is not None:
        status, slug = _FAILURE_STATUS[report.failure]
        detail = report.detail
        if report.failure is Failure.STORE_UNAVAILABLE:
            detail = "the store is unavailable; the call was refused (fail closed)"
        return Problem(status, slug, detail, extensions={"call_id": call_id}).response(call_id)
    decision = report.decision
    if report.approval is not None and report.result is None and decision is not None:
        return _pending(report, report.approval, decision)
    if report.result is None or decision is None:
        reasons = decision.reasons() if decision is not None else []
        detail = "; ".join(f"{r['check']}: {r['reason']}" for r in reasons) or "denied"
        retry_after = decision.retry_after if decision is not None else None
        if retry_after is not None:
            # A refusal that passes with time (a rate limit): when to retry.
            return Problem(
                429,
                "rate-limited",
                detail,
                extensions={
                    "call_id": call_id,
                    "outcome": "deny",
                    "reasons": reasons,
                    "retry_after": round(retry_after, 3),
                },
                headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
            ).response(call_id)
        if decision is not None and unauthenticated(decision):
            return Problem(
                401,
                "unauthenticated",
                detail,
                extensions={"call_id": call_id, "outcome": "deny", "reasons": reasons},
                headers={"WWW-Authenticate": _CHALLENGE + ', error="invalid_token"'},
            ).response(call_id)
        return Problem(
            403,
            "call-denied",
            detail,
            extensions={"call_id": call_id, "outcome": "deny", "reasons": reasons},
        ).response(call_id)
    verdicts = [
        {"check": v.check, "outcome": v.outcome.value, "reason": v.reason}
        for v in decision.verdicts + (report.review.verdicts if report.review else ())
    ]
    payload: dict[str, Any] = {
        "call_id": call_id,
        "outcome": "allow",
        "result": report.result.body,
        "verdicts": verdicts,
    }
    return Response(orjson.dumps(payload), media_type="application/json")


def _pending(report: CallReport, approval: Approval, decision: Decision) -> Response:
    """202: the call waits for a principal's decision on the approval named in the body."""
    location = f"/v1/approvals/{approval.id}"
    payload: dict[str, Any] = {
        "call_id": report.call.call_id,
        "outcome": "ask",
        "detail": "a principal must approve this call; wait, then re-send it with "
        "'Ztgate-Approval: <id>' and a fresh proof",
        "reasons": decision.reasons(),
        "approval": {
            "id": approval.id,
            "state": approval.state,
            "expires_at": approval.expires_at,
            "wait": f"{location}/wait",
        },
    }
    headers = {"Location": location}
    return Response(orjson.dumps(payload), 202, headers, media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)  # noqa: S101 - registered for Problem only
        return exc.response()

    async def on_http(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        headers = dict(exc.headers or {})  # e.g. Allow on a 405 (RFC 9110 section 15.5.6)
        return Problem(exc.status_code, "http-error", str(exc.detail), headers=headers).response()

    async def on_validation(_request: Request, exc: Exception) -> Response:
        return Problem(422, "invalid-request", "the request does not fit the API").response()

    async def on_store_unavailable(_request: Request, exc: Exception) -> Response:
        # Nothing was done; the client may try again (RFC 9110 section 15.6.4).
        logger.error("request refused, store unavailable: %s", exc)
        return Problem(
            503, "store-unavailable", "the store is unavailable; nothing was done"
        ).response()

    async def on_gateway_error(_request: Request, exc: Exception) -> Response:
        logger.error("request failed: %r", exc)
        return Problem(
            500, "internal-error", "the gateway could not complete the request"
        ).response()

    async def on_crash(_request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error", exc_info=exc)
        return Problem(
            500, "internal-error", "the gateway could not complete the request"
        ).response()

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StoreUnavailableError, on_store_unavailable)
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(Exception, on_crash)


def _add_problem_schema(app: FastAPI) -> None:
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base_openapi()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {
            "type": "object",
            "description": "RFC 9457 problem details.",
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "call_id": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["type", "title", "status", "detail"],
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
