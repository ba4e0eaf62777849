"""The MCP front door: ztgate as the one MCP server an agent talks to (Streamable HTTP at /mcp).

Built with the official `mcp` SDK's low-level `Server`. Each agent sees one
virtual server: `tools/list` shows only the tools its warrant's scope
allows (and the catalog has); every `tools/call` becomes a `ToolCall` that
`Gateway.handle` decides, runs, reviews and audits — the very code path of
`POST /v1/calls`, with `front_door = "mcp"`. The agent's identity is the
HTTP request's (bearer JWT-SVID or mTLS); the warrant, proof,
justification and approval travel in the params' `_meta` (`ztgate.mcp.meta`).

Answers: an allowed call's result as JSON text and `structuredContent`;
a denied call an MCP tool error (`isError`) naming each deciding check and
reason; an asked call a tool error naming the approval request, which the
agent waits for and then re-sends with `ztgate/approval` and a fresh proof
(the SDK's `McpAgent` and `ztgate mcp connect` do that).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import orjson
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request

from ztgate import __version__
from ztgate.errors import InvalidInputError, StoreError
from ztgate.gateway import CallReport, Failure, Gateway
from ztgate.http.credentials import read_client_chain, read_credentials
from ztgate.http.problems import Problem
from ztgate.jsonlimits import json_depth_exceeds
from ztgate.mcp.meta import MetaError, read_meta
from ztgate.models import Credentials
from ztgate.warrants.service import OperationRefused

logger = logging.getLogger(__name__)

PATH = "/mcp"
_INVALID_PARAMS = -32602
_UNAUTHENTICATED = -32001
_FORBIDDEN = -32003


class McpFrontDoor:
    """The MCP server over a `Gateway`: its ASGI app and the session manager's lifetime."""

    def __init__(self, gateway: Gateway) -> None:
        """Serve `gateway`'s tools to agents over MCP."""
        self.gateway = gateway
        self.server: Server[Any] = Server(
            "ztgate",
            version=__version__,
            instructions=(
                "Tools behind ztgate: every call is checked against your task's warrant "
                "and policy, and may be refused or wait for a person's approval."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        settings = gateway.settings.gateway
        hosts = [f"{settings.host}:*", "127.0.0.1:*", "localhost:*", "[::1]:*"]
        self.app: Starlette = self.server.streamable_http_app(
            streamable_http_path=PATH,
            json_response=True,
            max_request_body_size=settings.max_body_bytes,
            host=settings.host,
            transport_security=TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=hosts,
                allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
            ),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Keep the MCP sessions' task group running for the gateway's lifetime."""
        async with self.server.session_manager.run():
            yield

    # -- handlers ------------------------------------------------------------------

    async def list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """The tools the caller's warrant allows (all of them with authentication off)."""
        allowed: set[str] | None = None
        if self.gateway.settings.gateway.authentication == "required":
            allowed = await self._scope(ctx, params)  # refreshes the gateway's view first
        catalog = self.gateway.catalog
        names = [name for name in catalog.names() if allowed is None or name in allowed]
        tools = []
        for name in sorted(names):
            entry = catalog.get(name)
            if entry is None or not entry.spec.enabled:
                continue
            spec = entry.spec
            tools.append(
                types.Tool(
                    name=spec.name,
                    description=spec.description or None,
                    input_schema=dict(spec.input_schema),
                    annotations=types.ToolAnnotations(read_only_hint=spec.risk.value == "read"),
                )
            )
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """Decide and run one call through the gateway's pipeline."""
        gateway = self.gateway
        try:
            meta = read_meta(_meta_of(params))
        except MetaError as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from exc
        arguments = dict(params.arguments or {})
        if json_depth_exceeds(arguments, gateway.settings.gateway.max_json_depth):
            raise MCPError(_INVALID_PARAMS, "arguments nest too deep")
        credentials = None
        if gateway.settings.gateway.authentication == "required":
            warrant = meta.warrant or _header(ctx, "ztgate-warrant")
            credentials = self._credentials(ctx, warrant, meta.proof)
        try:
            call = gateway.new_call(
                params.name,
                arguments,
                justification=meta.justification,
                credentials=credentials,
                front_door="mcp",
                approval_id=meta.approval,
            )
        except InvalidInputError as exc:
            raise MCPError(_INVALID_PARAMS, exc.message) from exc
        try:
            report = await gateway.handle(call)
        except StoreError as exc:
            logger.error("audit unavailable, MCP call %s refused: %s", call.call_id, exc)
            report = CallReport(call, None, failure=Failure.STORE_UNAVAILABLE, detail=str(exc))
        return tool_result(report)

    # -- helpers -------------------------------------------------------------------

    async def _scope(self, ctx: Any, params: types.PaginatedRequestParams | None) -> set[str]:
        warrants, identity = self.gateway.warrants, self.gateway.identity
        if warrants is None or identity is None:
            raise MCPError(_FORBIDDEN, "warrants are not available")
        try:
            meta = read_meta(_meta_of(params))
        except MetaError as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from exc
        warrant_token = meta.warrant or _header(ctx, "ztgate-warrant")
        if warrant_token is None:
            # Nothing to show without a warrant (an MCP client may re-list on
            # its own, without the _meta: it gets an empty list, not an error).
            return set()
        credentials = self._credentials(ctx, warrant_token, None)
        try:
            self.gateway.refresh()
            warrant = await warrants.warrant_of(identity.check, credentials)
        except OperationRefused as refused:
            code = _UNAUTHENTICATED if refused.status == 401 else _FORBIDDEN
            raise MCPError(code, refused.message) from refused
        except StoreError as exc:
            raise MCPError(_FORBIDDEN, "the store is unavailable") from exc
        return set(warrant.scope.tools)

    @staticmethod
    def _credentials(ctx: Any, warrant: str | None, proof: str | None) -> Credentials:
        request = getattr(ctx, "request", None)
        if not isinstance(request, Request):
            # No HTTP request to read an identity from: nobody is authenticated.
            return Credentials(warrant=warrant, proof=proof)
        try:
            return read_credentials(
                request.headers.get("authorization"),
                read_client_chain(request.scope),
                warrant=warrant,
                proof=proof,
            )
        except Problem as refused:
            raise MCPError(_UNAUTHENTICATED, refused.detail) from refused


def tool_result(report: CallReport) -> types.CallToolResult:
    """An MCP tool result for what happened to a call (allowed, denied, asked or failed)."""
    call_id = report.call.call_id
    decision = report.decision
    if report.failure is not None:
        detail = report.detail
        if report.failure is Failure.STORE_UNAVAILABLE:
            detail = "the store is unavailable; the call was refused (fail closed)"
        return _error(
            f"ztgate: the call failed ({report.failure.value}): {detail}",
            {"call_id": call_id, "outcome": "deny", "failure": report.failure.value},
        )
    if report.approval is not None and report.result is None and decision is not None:
        approval = report.approval
        reasons = decision.reasons()
        return _error(
            "ztgate: a person must approve this call ("
            + "; ".join(f"{r['check']}: {r['reason']}" for r in reasons)
            + f"). Approval request {approval.id}: wait for it, then re-send the same call "
            "with _meta 'ztgate/approval' and a fresh proof.",
            {
                "call_id": call_id,
                "outcome": "ask",
                "reasons": reasons,
                "approval": {
                    "id": approval.id,
                    "state": approval.state,
                    "expires_at": approval.expires_at,
                    "wait": f"/v1/approvals/{approval.id}/wait",
                },
            },
        )
    if report.result is None or decision is None:
        reasons = decision.reasons() if decision is not None else []
        detail = "; ".join(f"{r['check']}: {r['reason']}" for r in reasons) or "denied"
        extra: dict[str, Any] = {"call_id": call_id, "outcome": "deny", "reasons": reasons}
        if decision is not None and decision.retry_after is not None:
            extra["retry_after"] = round(decision.retry_after, 3)
        return _error(f"ztgate denied the call: {detail}", extra)
    body = report.result.body
    text = orjson.dumps(body).decode() if not isinstance(body, str) else body
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=body if isinstance(body, dict) else {"result": body},
        is_error=False,
        meta={"ztgate/call_id": call_id},
    )


def _error(text: str, detail: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"ztgate": detail},
        is_error=True,
    )


def _header(ctx: Any, name: str) -> str | None:
    """A header of the HTTP request behind an MCP request, if any."""
    request = getattr(ctx, "request", None)
    value = request.headers.get(name) if isinstance(request, Request) else None
    return value if value else None


def _meta_of(params: Any) -> dict[str, Any] | None:
    meta = getattr(params, "meta", None)
    return dict(meta) if meta else None
