"""`ztgate mcp connect`: a stdio MCP server for desktop clients, relaying to ztgate's /mcp.

Desktop and IDE agents often speak MCP only over stdio, to a command they
start. This is that command. It runs as the agent: it gets its SVIDs from
the SPIFFE Workload API (attested like any agent process), binds the
task's warrant to its key, and relays `tools/list` and `tools/call` to the
gateway's MCP front door through an `McpSession` — which adds the JWT-SVID,
the warrant and a fresh proof per call. The client sees exactly the tools
the task allows; every call goes through the full pipeline; a call that
waits for a person's approval is held here until decided (or the timeout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from ztgate import __version__
from ztgate.mcp.meta import MetaError, read_meta
from ztgate.sdk.aio import AsyncAgent
from ztgate.sdk.errors import CallDenied
from ztgate.sdk.mcp import McpSession


@dataclass(frozen=True)
class BridgeOptions:
    """Where the gateway is, who the agent is, and for which task it acts."""

    url: str
    socket_path: str
    task_id: str
    spiffe_id: str | None = None
    justification: str = ""
    approval_timeout: float = 600.0


class Bridge:
    """The stdio server's handlers, relaying through one `McpSession`."""

    def __init__(self, session: McpSession, options: BridgeOptions) -> None:
        """Relay through `session`, as `options` say."""
        self.session = session
        self.options = options
        self.server: Server[Any] = Server(
            "ztgate",
            version=__version__,
            instructions="Tools behind ztgate, limited to this task's scope.",
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_read_resource=self.read_resource,
            on_list_prompts=self.list_prompts,
            on_get_prompt=self.get_prompt,
        )

    async def list_tools(
        self, _ctx: Any, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """The task's tools, as the gateway lists them for this agent."""
        return await self.session.list_tools()

    async def call_tool(
        self, _ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """One call through the gateway (held while a person decides, if policy asks)."""
        try:
            given = read_meta(dict(params.meta) if params.meta else None).justification
        except MetaError:
            given = ""
        try:
            return await self.session.call_tool(
                params.name,
                params.arguments or {},
                justification=given or self.options.justification or None,
                approval_timeout=self.options.approval_timeout,
            )
        except CallDenied as refused:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"ztgate: {refused.message}")],
                is_error=True,
            )

    async def list_resources(
        self, _ctx: Any, _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The upstream servers' resources the task may read."""
        return await self.session.list_resources()

    async def read_resource(
        self, _ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        """Read one, as a proven call (refusals come back as MCP errors)."""
        return await self.session.read_resource(
            str(params.uri), justification=self.options.justification or None
        )

    async def list_prompts(
        self, _ctx: Any, _params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        """The upstream servers' prompts the task may get."""
        return await self.session.list_prompts()

    async def get_prompt(
        self, _ctx: Any, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        """Get one, as a proven call."""
        return await self.session.get_prompt(
            params.name, params.arguments, justification=self.options.justification or None
        )

    async def serve_stdio(self) -> None:
        """Serve the MCP client on this process's stdin and stdout until it goes away."""
        async with stdio_server() as (read_stream, write_stream):
            await self.server.run(
                read_stream, write_stream, self.server.create_initialization_options()
            )


async def run_bridge(options: BridgeOptions) -> None:
    """Become the agent, bind the task's warrant, and serve stdio until the client leaves."""
    agent = await AsyncAgent.connect(
        options.url, socket_path=options.socket_path, spiffe_id=options.spiffe_id
    )
    async with agent:
        await agent.bind(task_id=options.task_id)
        async with McpSession(agent) as session:
            await Bridge(session, options).serve_stdio()
