"""An agent's MCP session with ztgate: the official SDK's client, with ztgate's credentials added.

    async with await AsyncAgent.connect(url, socket_path=sock, spiffe_id=me) as agent:
        await agent.bind(task_id=task)
        async with McpSession(agent) as session:
            tools = await session.list_tools()
            result = await session.call_tool("get_weather", {"city": "Lisbon"},
                                             justification="the user asked")

Every HTTP request carries the agent's current JWT-SVID (`Authorization`)
and its warrant (`Ztgate-Warrant`); every `tools/call` carries a fresh proof
over its arguments in `_meta` (see `ztgate.mcp.meta`). A call policy asks
about comes back as a tool error naming the approval request; with
`approval_timeout`, the session waits for the decision and re-sends the
approved call once, with a new proof.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from contextlib import AsyncExitStack
from typing import Any, cast

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from ztgate.mcp.meta import WARRANT, call_meta
from ztgate.mcp.upstream import GET_PROMPT, READ_RESOURCE, parse_resource_uri, tool_name
from ztgate.sdk import requests
from ztgate.sdk.aio import AsyncAgent
from ztgate.sdk.errors import CallDenied, ZtgateError
from ztgate.warrants import proof


class _AgentCredentials(httpx2.Auth):
    """Adds the agent's current JWT-SVID and warrant to each HTTP request of the session."""

    def __init__(self, agent: AsyncAgent) -> None:
        self.agent = agent

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, Any, None]:
        identity = self.agent.identity
        token = identity.cached_jwt_svid() or identity.jwt_svid()
        request.headers["Authorization"] = f"Bearer {token}"
        warrant = self.agent.warrant
        if warrant is not None:
            request.headers["Ztgate-Warrant"] = warrant.token
        yield request


class McpSession:
    """An `AsyncAgent`'s MCP session with the gateway's front door (`<url>/mcp`)."""

    def __init__(self, agent: AsyncAgent, url: str | None = None, *, timeout: float = 60.0) -> None:
        """Talk MCP as `agent`, to `url` (default: the agent's gateway, path /mcp)."""
        self.agent = agent
        self.url = url or f"{str(agent.base_url).rstrip('/')}/mcp"
        self.timeout = timeout
        self._stack = AsyncExitStack()
        self._client: Client | None = None

    async def __aenter__(self) -> McpSession:
        """Open the session (the MCP handshake)."""
        http = httpx2.AsyncClient(
            auth=_AgentCredentials(self.agent), timeout=self.timeout, verify=self.agent.verify
        )
        await self._stack.enter_async_context(http)
        self._client = await self._stack.enter_async_context(
            Client(streamable_http_client(self.url, http_client=http))
        )
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        """Close the session."""
        self._client = None
        await self._stack.aclose()

    @property
    def client(self) -> Client:
        """The underlying MCP client (the SDK's `Client`)."""
        if self._client is None:
            raise ZtgateError("the MCP session is not open: use `async with McpSession(...)`")
        return self._client

    async def list_tools(self) -> types.ListToolsResult:
        """The tools the agent's warrant allows."""
        return await self.client.list_tools(meta=_typed(self._warrant_meta()), cache_mode="bypass")

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        justification: str | None = None,
        approval_timeout: float = 0.0,
    ) -> types.CallToolResult:
        """Call `name` through the gateway; wait `approval_timeout` s if a person must approve.

        Returns the MCP result: `is_error` with ztgate's reasons when refused
        (`structured_content["ztgate"]`), or when still waiting for approval.
        """
        args = dict(arguments or {})
        result = await self._call(name, args, justification, None)
        approval = asked(result)
        if approval is None or approval_timeout <= 0:
            return result
        await self.wait(approval, approval_timeout)
        return await self._call(name, args, justification, approval)

    async def wait(self, approval_id: str, timeout: float) -> None:
        """Wait until `approval_id` is approved.

        Raises:
            CallDenied: rejected, expired, used, or still pending after `timeout` seconds.
        """
        state, reason = await self.agent.decision(approval_id, timeout)
        if state != "approved":
            raise CallDenied(reason or f"approval {approval_id} is {state}")

    async def read_resource(
        self, uri: str, *, justification: str | None = None
    ) -> types.ReadResourceResult:
        """Read an upstream server's resource (a URI `list_resources` gave): a proven call.

        Raises:
            ValueError: not a resource URI of the gateway.
            MCPError: the gateway refused it (the message says why).
        """
        server, original = parse_resource_uri(uri)
        tool = tool_name(server, READ_RESOURCE)
        meta = await self._meta(tool, {"uri": original}, justification, None)
        return await self.client.read_resource(uri, meta=_typed(meta))

    async def get_prompt(
        self,
        name: str,
        arguments: Mapping[str, str] | None = None,
        *,
        justification: str | None = None,
    ) -> types.GetPromptResult:
        """Get an upstream server's prompt (`<server>.<prompt>`): a proven call.

        Raises:
            MCPError: the gateway refused it (the message says why).
        """
        server, _, prompt = name.partition(".")
        signed: dict[str, Any] = {"name": prompt}
        if arguments:
            signed["arguments"] = dict(arguments)
        meta = await self._meta(tool_name(server, GET_PROMPT), signed, justification, None)
        return await self.client.get_prompt(name, dict(arguments or {}), meta=_typed(meta))

    async def list_resources(self) -> types.ListResourcesResult:
        """The upstream servers' resources the warrant lets the agent read."""
        return await self.client.list_resources(
            meta=_typed(self._warrant_meta()), cache_mode="bypass"
        )

    async def list_prompts(self) -> types.ListPromptsResult:
        """The upstream servers' prompts the warrant lets the agent get."""
        return await self.client.list_prompts(
            meta=_typed(self._warrant_meta()), cache_mode="bypass"
        )

    def _warrant_meta(self) -> dict[str, str] | None:
        warrant = self.agent.warrant
        return {WARRANT: warrant.token} if warrant is not None else None

    async def _call(
        self, name: str, arguments: dict[str, Any], justification: str | None, approval: str | None
    ) -> types.CallToolResult:
        meta = await self._meta(name, arguments, justification, approval)
        return await self.client.call_tool(name, arguments, meta=_typed(meta))

    async def _meta(
        self, name: str, arguments: dict[str, Any], justification: str | None, approval: str | None
    ) -> dict[str, str]:
        svid, warrant = await self.agent.ready()
        signed = proof.sign(
            svid.private_key,
            audience=self.agent.audience,
            task_id=warrant.task_id,
            warrant=warrant.token,
            canonical=requests.canonical_arguments(arguments),
            tool=name,
            issued_at=time.time(),
            jwk=svid.jwk,
        )
        return call_meta(warrant.token, signed, justification=justification, approval=approval)


def _typed(meta: dict[str, str] | None) -> types.RequestParamsMeta | None:
    # `_meta` is an open map; the SDK types it as a TypedDict with extra items.
    return cast("types.RequestParamsMeta | None", meta)


def asked(result: types.CallToolResult) -> str | None:
    """The approval request a tool result says the call waits for, if any."""
    detail = (result.structured_content or {}).get("ztgate")
    if not result.is_error or not isinstance(detail, dict) or detail.get("outcome") != "ask":
        return None
    approval = detail.get("approval")
    found = approval.get("id") if isinstance(approval, dict) else None
    return found if isinstance(found, str) else None
