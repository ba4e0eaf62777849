"""The console's routes under /console: login, overview, approvals and the live feed.

    GET  /console/                      overview: charts, counts
    GET  /console/login                 the login form; POST: log in
    POST /console/logout                end the session
    GET  /console/approvals             pending requests (the list refreshes itself)
    GET  /console/approvals/rows        the list's rows (polled every 2 s by the page)
    GET  /console/approvals/{id}        one request: intent, call, reasons, the diff
    POST /console/approvals/{id}/decide approve or reject, signed with the session key
    GET  /console/feed                  the decision feed (filters: outcome, agent, tool)
    GET  /console/feed/events           its server-sent events
    GET  /console/static/...            CSS and the few scripts (no inline script)

Agents, tasks, the audit log and the policy pages are in `operations.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ztgate.approvals.registry import MAX_COMMENT_CHARS, PENDING, Approval, ForbiddenError
from ztgate.console import charts, queries
from ztgate.console.auth import ConsoleAuth, Viewer
from ztgate.console.intent import compare
from ztgate.console.operations import operation_routes
from ztgate.console.signatures import (
    DECISIONS,
    STATEMENT_TYPE,
    SignatureError,
    statement,
    verify,
)
from ztgate.console.web import (
    PREFIX,
    ConsoleError,
    LoginRequired,
    SecurityHeaders,
    error_page,
    field,
    render,
)
from ztgate.errors import (
    ConflictError,
    GatewayError,
    InvalidInputError,
    NotFoundError,
    StoreError,
)
from ztgate.gateway import Gateway

logger = logging.getLogger(__name__)
Handler = Callable[[Request, Viewer], Awaitable[Response]]
FEED_POLL_SECONDS = 0.5
FEED_RECHECK_SECONDS = 10.0
FEED_PING_SECONDS = 15.0
FEED_MAX_SECONDS = 300.0  # then the browser's EventSource reconnects (Last-Event-ID)


def guarded(auth: ConsoleAuth, handler: Handler, *, fragment: bool = False) -> Any:
    """An endpoint running `handler` for a logged-in approver or admin; errors as pages."""

    async def endpoint(request: Request) -> Response:
        viewer = None
        try:
            viewer = await auth.viewer(request)
            return await handler(request, viewer)
        except LoginRequired:
            if fragment:
                return Response("log in again", 401, media_type="text/plain")
            return RedirectResponse(f"{PREFIX}/login", 303)
        except ConsoleError as exc:
            return error_page(exc, viewer)
        except GatewayError as exc:
            return error_page(_failure(exc), viewer)

    return endpoint


def open_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Any:
    """An endpoint without a session (login), its errors as pages."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except LoginRequired:
            return RedirectResponse(f"{PREFIX}/login", 303)
        except ConsoleError as exc:
            return error_page(exc)
        except GatewayError as exc:
            return error_page(_failure(exc))

    return endpoint


def _failure(exc: GatewayError) -> ConsoleError:
    """A failure to complete a request (fail closed), as an error page."""
    logger.error("console: request failed: %r", exc)
    if isinstance(exc, StoreError):
        return ConsoleError(503, "the store is unavailable; nothing was done, try again")
    return ConsoleError(500, "the request could not be completed; nothing was done")


def create_console(gateway: Gateway) -> SecurityHeaders:
    """The console as an ASGI app, to be mounted at /console."""
    auth = ConsoleAuth(gateway)
    chain = gateway.settings.audit.chain
    database = gateway.database
    approvals = gateway.approvals

    async def overview(request: Request, viewer: Viewer) -> Response:
        now = gateway.clock.now()
        buckets = await asyncio.to_thread(queries.calls_per_minute, database, chain, now)
        denials = await asyncio.to_thread(queries.top_denials, database, chain, now - 86400)
        pending = await asyncio.to_thread(approvals.list, PENDING)
        start = (int(now) // 60 - len(buckets) + 1) * 60
        totals = {o: sum(b[o] for b in buckets) for o in queries.OUTCOMES}
        return render(
            "overview.html",
            page="overview",
            viewer=viewer,
            calls_chart=charts.calls_per_minute(buckets, start),
            denials_chart=charts.top_reasons(denials),
            totals=totals,
            pending=len(pending),
        )

    async def approvals_page(request: Request, viewer: Viewer) -> Response:
        pending = await asyncio.to_thread(approvals.list, PENDING)
        recent = await asyncio.to_thread(approvals.list, None, 30)
        decided = [a for a in recent if a.status(gateway.clock.now()) != PENDING]
        return render(
            "approvals.html",
            page="approvals",
            viewer=viewer,
            pending=pending,
            decided=decided,
            now=gateway.clock.now(),
        )

    async def approval_rows(request: Request, viewer: Viewer) -> Response:
        pending = await asyncio.to_thread(approvals.list, PENDING)
        return render("approval_rows.html", pending=pending)

    async def _approval(approval_id: str) -> Approval:
        try:
            return await asyncio.to_thread(approvals.get, approval_id[:64])
        except NotFoundError as exc:
            raise ConsoleError(404, exc.message) from exc

    async def approval_page(request: Request, viewer: Viewer) -> Response:
        approval = await _approval(request.path_params["approval_id"])
        shown = approval.request
        now = gateway.clock.now()
        return render(
            "approval.html",
            page="approvals",
            viewer=viewer,
            approval=approval,
            status=approval.status(now),
            request=shown,
            matches=compare(str(shown.get("arguments_preview", "")), str(shown.get("intent", ""))),
            own_task=approval.second_person and approval.principal == viewer.name,
            may_decide=viewer.principal.may_approve(approval.agent, approval.tool),
            statement_type=STATEMENT_TYPE,
        )

    async def decide(request: Request, viewer: Viewer) -> Response:
        form = await auth.form(request, viewer)
        approval = await _approval(request.path_params["approval_id"])
        decision = form.get("decision", "")
        if decision not in DECISIONS:
            raise ConsoleError(422, "the decision is approve or reject")
        # Browsers send a textarea's newlines as CRLF; the page signs LF.
        comment = field(form, "comment", 4 * MAX_COMMENT_CHARS).replace("\r\n", "\n")
        comment = comment.replace("\r", "\n")
        if len(comment) > MAX_COMMENT_CHARS:
            raise ConsoleError(422, f"a comment is at most {MAX_COMMENT_CHARS} characters")
        signature = field(form, "signature", 200)
        signed = statement(
            approval_id=approval.id,
            decision=decision,
            comment=comment,
            request_sha256=approval.request_sha256,
            session_id=viewer.session.id,
        )
        try:
            verify(viewer.session.public_jwk, signed, signature)
        except SignatureError as exc:
            logger.warning("console: %s refused: %s", viewer.name, exc.message)
            raise ConsoleError(403, f"decision refused: {exc.message}") from exc
        attestation = {
            "via": "console",
            "session": viewer.session.id,
            "session_key_thumbprint": viewer.session.key_thumbprint,
            "signed_statement": signed.decode(),
            "signature": signature,
        }
        try:
            await asyncio.to_thread(
                approvals.decide,
                approval.id,
                decision == "approve",
                principal=viewer.principal,
                comment=comment,
                attestation=attestation,
            )
        except ForbiddenError as exc:
            raise ConsoleError(403, exc.message) from exc
        except ConflictError as exc:
            raise ConsoleError(409, exc.message) from exc
        except InvalidInputError as exc:
            raise ConsoleError(422, exc.message) from exc
        return RedirectResponse(f"{PREFIX}/approvals/{approval.id}", 303)

    def _filters(request: Request) -> queries.Filters:
        params = request.query_params
        outcome = params.get("outcome") or None
        if outcome is not None and outcome not in queries.OUTCOMES:
            raise ConsoleError(422, "outcome is allow, ask or deny")
        agent = (params.get("agent") or "").strip()[:2048] or None
        tool = (params.get("tool") or "").strip()[:128] or None
        return queries.Filters(outcome=outcome, agent=agent, tool=tool)

    async def feed_page(request: Request, viewer: Viewer) -> Response:
        filters = _filters(request)
        after = await asyncio.to_thread(queries.latest_seq, database, chain)
        rows = await asyncio.to_thread(queries.feed, database, chain, filters, limit=50)
        return render(
            "feed.html",
            page="feed",
            viewer=viewer,
            rows=rows,
            after=after,
            filters=filters,
            outcomes=queries.OUTCOMES,
        )

    async def feed_events(request: Request, viewer: Viewer) -> Response:
        filters = _filters(request)
        try:
            after = int(request.headers.get("last-event-id") or request.query_params["after"])
        except (KeyError, ValueError):
            after = await asyncio.to_thread(queries.latest_seq, database, chain)
        return StreamingResponse(
            _events(request, viewer, after, filters),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _events(
        request: Request, viewer: Viewer, after: int, filters: queries.Filters
    ) -> AsyncIterator[bytes]:
        clock = gateway.clock
        started = last_check = last_ping = clock.monotonic()
        yield b"retry: 2000\n\n"
        while clock.monotonic() - started < FEED_MAX_SECONDS:
            rows = await asyncio.to_thread(
                queries.feed, database, chain, filters, after=after, limit=200
            )
            for row in rows:
                after = row.seq
                data = orjson.dumps(row.describe()).decode()
                yield f"id: {row.seq}\nevent: decision\ndata: {data}\n\n".encode()
            now = clock.monotonic()
            if now - last_ping >= FEED_PING_SECONDS:
                last_ping = now
                yield b": ping\n\n"
            if now - last_check >= FEED_RECHECK_SECONDS:
                last_check = now
                try:  # the session ended or the role was taken away: the stream ends
                    await auth.viewer(request)
                except (LoginRequired, ConsoleError):
                    return
            if await request.is_disconnected():
                return
            await asyncio.sleep(FEED_POLL_SECONDS)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        message = "no such page" if status == 404 else "the request failed"
        return error_page(ConsoleError(status, message))

    routes = [
        Route("/", guarded(auth, overview)),
        Route("/overview", guarded(auth, overview)),
        Route("/login", open_endpoint(auth.login_page), methods=["GET"]),
        Route("/login", open_endpoint(auth.login), methods=["POST"]),
        Route("/logout", open_endpoint(auth.logout), methods=["POST"]),
        Route("/approvals", guarded(auth, approvals_page)),
        Route("/approvals/rows", guarded(auth, approval_rows, fragment=True)),
        Route("/approvals/{approval_id}", guarded(auth, approval_page)),
        Route("/approvals/{approval_id}/decide", guarded(auth, decide), methods=["POST"]),
        Route("/feed", guarded(auth, feed_page)),
        Route("/feed/events", guarded(auth, feed_events, fragment=True)),
        *(
            Route(path, guarded(auth, handler), methods=methods)
            for path, handler, methods in operation_routes(gateway, auth)
        ),
        Mount("/static", StaticFiles(packages=[("ztgate.console", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    return SecurityHeaders(app)
