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
from ztgate.errors import InvalidInputError, StoreError, UpstreamError
from ztgate.gateway import CallReport, Failure, Gateway
from ztgate.guards.pinning import description_findings
from ztgate.http.credentials import read_client_chain, read_credentials
from ztgate.http.problems import Problem
from ztgate.jsonlimits import json_depth_exceeds
from ztgate.mcp.meta import MetaError, read_meta
from ztgate.mcp.upstream import (
    GET_PROMPT,
    READ_RESOURCE,
    parse_resource_uri,
    resource_uri,
    tool_name,
)
from ztgate.models import Credentials
from ztgate.tasks.scope import Scope
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
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
            # The SDK checks a call's Mcp-Param-* headers against the tool's
            # input schema; without this lookup it would run tools/list (a
            # warrant check) on every tools/call to find it.
            get_tool_input_schema=self.input_schema,
        )
        settings = gateway.settings.gateway
        hosts = [
            f"{settings.host}:*",
            "127.0.0.1:*",
            "localhost:*",
            "[::1]:*",
            *gateway.settings.mcp.allowed_hosts,
        ]
        self.transport_security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=hosts,
            allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
        )
        self.app: Starlette = self.server.streamable_http_app(
            streamable_http_path=PATH,
            json_response=True,
            max_request_body_size=settings.max_body_bytes,
            host=settings.host,
            transport_security=self.transport_security,
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
            scope = await self._warrant_scope(ctx, params)  # refreshes the gateway's view first
            allowed = set(scope.tools) if scope is not None else set()
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

    def input_schema(self, name: str) -> dict[str, Any] | None:
        """The catalog's input schema of tool `name` (None for a tool it does not have)."""
        entry = self.gateway.catalog.get(name)
        return dict(entry.spec.input_schema) if entry is not None else None

    async def call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """Decide and run one call through the gateway's pipeline."""
        report = await self._run(ctx, params, params.name, dict(params.arguments or {}))
        return tool_result(report)

    # -- resources and prompts of upstream servers ------------------------------------

    async def list_resources(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The resources of the upstream servers whose resource reads the warrant allows."""
        found: list[types.Resource] = []
        scope, servers = await self._servers_with(ctx, params, READ_RESOURCE)
        for server in servers:
            tool = tool_name(server, READ_RESOURCE)
            for resource in await self._upstream_list(server, "resources"):
                uri = str(resource.uri)
                if scope is not None and scope.violation(tool, {"uri": uri}) is not None:
                    continue  # outside the task's limits on that tool: not even listed
                found.append(
                    resource.model_copy(
                        update={"uri": resource_uri(server, uri), **_plain(resource.description)}
                    )
                )
        return types.ListResourcesResult(resources=found)

    async def read_resource(
        self, ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read an upstream server's resource: a call to its `resources.read` tool."""
        try:
            server, original = parse_resource_uri(str(params.uri))
        except ValueError as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from exc
        tool = tool_name(server, READ_RESOURCE)
        report = await self._run(ctx, params, tool, {"uri": original})
        body = _allowed_body(report)
        contents = body.get("contents") if isinstance(body, dict) else None
        try:
            if isinstance(contents, list) and "ztgate" not in body:
                return types.ReadResourceResult.model_validate({"contents": contents})
        except ValueError:
            pass
        # Flagged (spotlighted or quarantined) or of another shape: the JSON, as data.
        text = orjson.dumps(body).decode()
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=str(params.uri), mime_type="application/json", text=text
                )
            ]
        )

    async def list_prompts(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        """The prompts of the upstream servers whose prompts the warrant allows getting."""
        found: list[types.Prompt] = []
        scope, servers = await self._servers_with(ctx, params, GET_PROMPT)
        for server in servers:
            tool = tool_name(server, GET_PROMPT)
            for prompt in await self._upstream_list(server, "prompts"):
                if scope is not None and scope.violation(tool, {"name": prompt.name}) is not None:
                    continue
                found.append(
                    prompt.model_copy(
                        update={
                            "name": tool_name(server, prompt.name),
                            **_plain(prompt.description),
                        }
                    )
                )
        return types.ListPromptsResult(prompts=found)

    async def get_prompt(
        self, ctx: Any, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        """Get an upstream server's prompt: a call to its `prompts.get` tool."""
        server, _, name = params.name.partition(".")
        if not name:
            raise MCPError(_INVALID_PARAMS, "a prompt is named <server>.<prompt>")
        arguments: dict[str, Any] = {"name": name}
        if params.arguments:
            arguments["arguments"] = dict(params.arguments)
        report = await self._run(ctx, params, tool_name(server, GET_PROMPT), arguments)
        body = _allowed_body(report)
        try:
            if isinstance(body, dict) and "ztgate" not in body:
                return types.GetPromptResult.model_validate(body)
        except ValueError:
            pass
        text = orjson.dumps(body).decode()
        return types.GetPromptResult(
            messages=[
                types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))
            ]
        )

    async def _servers_with(
        self, ctx: Any, params: Any, access: str
    ) -> tuple[Scope | None, list[str]]:
        """The caller's scope (None with authentication off) and the servers it may `access`."""
        upstreams = self.gateway.mcp_upstreams
        if upstreams is None:
            return None, []
        if self.gateway.settings.gateway.authentication != "required":
            return None, sorted(upstreams.servers)
        scope = await self._warrant_scope(ctx, params)
        if scope is None:
            return None, []
        names = [n for n in sorted(upstreams.servers) if tool_name(n, access) in scope.tools]
        return scope, names

    async def _upstream_list(self, server: str, what: str) -> list[Any]:
        upstreams = self.gateway.mcp_upstreams
        try:
            return list(await upstreams.listing(server, what))
        except UpstreamError as exc:
            logger.warning("%s", exc)
            return []

    # -- the shared call path ---------------------------------------------------------

    async def _run(self, ctx: Any, params: Any, tool: str, arguments: dict[str, Any]) -> CallReport:
        return await self.run_call(_request_of(ctx), _meta_of(params), tool, arguments)

    async def run_call(
        self,
        request: Request | None,
        meta_values: dict[str, Any] | None,
        tool: str,
        arguments: dict[str, Any],
    ) -> CallReport:
        """One call through `Gateway.handle`, as `POST /v1/calls` makes it.

        `request` is the HTTP request the MCP request came in (its identity,
        its `Ztgate-Warrant` header); `meta_values` the params' `_meta`.

        Raises:
            MCPError: the `_meta` or the arguments are malformed, or the
                caller is not authenticated (nothing was run or recorded).
        """
        gateway = self.gateway
        try:
            meta = read_meta(meta_values)
        except MetaError as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from exc
        if json_depth_exceeds(arguments, gateway.settings.gateway.max_json_depth):
            raise MCPError(_INVALID_PARAMS, "arguments nest too deep")
        credentials = None
        if gateway.settings.gateway.authentication == "required":
            warrant = meta.warrant or _header(request, "ztgate-warrant")
            credentials = self._credentials(request, warrant, meta.proof)
        try:
            call = gateway.new_call(
                tool,
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
        return report

    # -- helpers -------------------------------------------------------------------

    async def _warrant_scope(self, ctx: Any, params: Any) -> Scope | None:
        """The scope of the caller's warrant; None without a warrant.

        Raises:
            MCPError: not authenticated, or the warrant is not valid for this agent.
        """
        warrants, identity = self.gateway.warrants, self.gateway.identity
        if warrants is None or identity is None:
            raise MCPError(_FORBIDDEN, "warrants are not available")
        try:
            meta = read_meta(_meta_of(params))
        except MetaError as exc:
            raise MCPError(_INVALID_PARAMS, str(exc)) from exc
        request = _request_of(ctx)
        warrant_token = meta.warrant or _header(request, "ztgate-warrant")
        if warrant_token is None:
            # Nothing to show without a warrant (an MCP client may re-list on
            # its own, without the _meta: it gets an empty list, not an error).
            return None
        credentials = self._credentials(request, warrant_token, None)
        try:
            self.gateway.refresh()
            warrant = await warrants.warrant_of(identity.check, credentials)
        except OperationRefused as refused:
            code = _UNAUTHENTICATED if refused.status == 401 else _FORBIDDEN
            raise MCPError(code, refused.message) from refused
        except StoreError as exc:
            raise MCPError(_FORBIDDEN, "the store is unavailable") from exc
        return warrant.scope

    @staticmethod
    def _credentials(
        request: Request | None, warrant: str | None, proof: str | None
    ) -> Credentials:
        if request is None:
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
    return types.CallToolResult.model_validate(tool_result_wire(report))


def tool_result_wire(report: CallReport) -> dict[str, Any]:
    """`tool_result` as it goes on the wire (a `CallToolResult`'s JSON)."""
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
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": body if isinstance(body, dict) else {"result": body},
        "isError": False,
        "_meta": {"ztgate/call_id": call_id},
    }


def _plain(description: str | None) -> dict[str, Any]:
    """A listed item's description, unless it reads like instructions (then none).

    Upstream servers write these, and they reach the agent without a call:
    held to the same detector as tool descriptions (`guards.pinning`).
    """
    if description and description_findings(description):
        return {"description": None}
    return {}


def _allowed_body(report: CallReport) -> Any:
    """The result of an allowed call; an MCP error naming why for any other outcome."""
    if report.failure is None and report.result is not None and report.decision is not None:
        return report.result.body
    answer = tool_result_wire(report)
    raise MCPError(_FORBIDDEN, answer["content"][0]["text"], answer["structuredContent"])


def _error(text: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": {"ztgate": detail},
        "isError": True,
    }


def _request_of(ctx: Any) -> Request | None:
    """The HTTP request behind an MCP request (None over another transport)."""
    request = getattr(ctx, "request", None)
    return request if isinstance(request, Request) else None


def _header(request: Request | None, name: str) -> str | None:
    """A header of the HTTP request behind an MCP request, if any."""
    value = request.headers.get(name) if request is not None else None
    return value if value else None


def _meta_of(params: Any) -> dict[str, Any] | None:
    meta = getattr(params, "meta", None)
    return dict(meta) if meta else None
