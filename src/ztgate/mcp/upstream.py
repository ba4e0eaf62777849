"""MCP upstreams: one open session per upstream server, its tools in the registry, calls over it.

At start the gateway connects to every server `ztgate mcp add` stored — a
stdio command inside an execution enclave (`ztgate.enclave`: its only way
out is the egress proxy), or a Streamable HTTP URL — and keeps the session
open (no new session per call). Each server's `tools/list` is imported into
the tool registry as `<server>.<tool>` at `mcp://<server>/<tool>`, pinned
when its description and schemas hide nothing (`guards.pinning`). When the
server says `notifications/tools/list_changed`, the list is imported again:
a tool whose description or schema changed keeps its old pin, so it is
refused until a principal approves it again (a rug pull disables it).

A call the pipeline allowed to such a tool is sent over the server's
session by the forwarder; the MCP result comes back as the tool's result
(`structuredContent`, else the content blocks), so the result checks
(schema, injection scan, provenance) see it like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError

from ztgate.errors import InvalidInputError, UpstreamError
from ztgate.mcp.http_calls import (
    MCP_SESSION_ID_HEADER,
    HeaderMismatch,
    HttpToolCaller,
    Post,
    tool_result_of,
)
from ztgate.mcp.servers import McpServer
from ztgate.mcp.stdio_calls import StdioPipes, StdioToolCaller
from ztgate.mcp.task_instances import TaskBinding, TaskInstances
from ztgate.models import ToolCall, ToolResult
from ztgate.tools.flow import UNTRACKED, ToolFlow
from ztgate.tools.model import RiskTier, Tool

logger = logging.getLogger(__name__)

SCHEME = "mcp"
# `enclave(server, stack, task)`: a stdio server's wrapped command, in an
# enclave kept until `stack` closes (`task`: whom a per-task instance is for).
Enclaves = Callable[[McpServer, contextlib.AsyncExitStack, TaskBinding | None], Awaitable[Any]]
_CONNECT_SECONDS = 30.0
# A server's resources and prompts are reached through two tools of its own,
# so that reading a resource or getting a prompt is a call like any other:
# in the task's scope, proven, checked by policy, scanned and audited.
READ_RESOURCE = "resources.read"
GET_PROMPT = "prompts.get"
_RESERVED = (READ_RESOURCE, GET_PROMPT)
_READ_RESOURCE_SCHEMA = {
    "type": "object",
    "properties": {"uri": {"type": "string", "minLength": 1, "maxLength": 4096}},
    "required": ["uri"],
    "additionalProperties": False,
}
_GET_PROMPT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "arguments": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def tool_name(server: str, tool: str) -> str:
    """The registry name of an upstream server's tool."""
    return f"{server}.{tool}"


def resource_uri(server: str, uri: str) -> str:
    """How the front door names an upstream server's resource: `ztgate://<server>/<uri, quoted>`."""
    return f"ztgate://{server}/{quote(uri, safe='')}"


def parse_resource_uri(uri: str) -> tuple[str, str]:
    """The server and its own URI of a `resource_uri`.

    Raises:
        ValueError: not a resource URI the front door gave out.
    """
    parts = urlsplit(uri)
    original = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if parts.scheme != "ztgate" or not parts.hostname or not original:
        raise ValueError(f"not a resource of an upstream server: {uri!r}")
    return parts.hostname, original


def imported_tools(server: McpServer, listed: Sequence[types.Tool]) -> list[Tool]:
    """The registry's view of a server's `tools/list`.

    A tool is `read` only when the server marks it read-only and the operator
    listed it in `read_only_tools`; every other tool is `write`.
    """
    found = []
    for tool in listed:
        if tool.name in _RESERVED:
            logger.warning("MCP server %s: tool %r has a reserved name", server.name, tool.name)
            continue
        hint = tool.annotations is not None and tool.annotations.read_only_hint is True
        risk = RiskTier.READ if hint and tool.name in server.read_only_tools else RiskTier.WRITE
        try:
            found.append(
                Tool(
                    name=tool_name(server.name, tool.name),
                    upstream_url=f"{SCHEME}://{server.name}/{tool.name}",
                    input_schema=dict(tool.input_schema or {"type": "object"}),
                    output_schema=dict(tool.output_schema) if tool.output_schema else None,
                    risk=risk,
                    description=tool.description or "",
                    source="mcp",
                )
            )
        except (InvalidInputError, ValueError) as exc:  # the registry cannot take it: said
            logger.warning("MCP server %s: tool %r not imported: %s", server.name, tool.name, exc)
    return found


def access_tools(server: McpServer, *, resources: bool, prompts: bool) -> list[Tool]:
    """The tools through which a server's resources are read and its prompts got (both `read`)."""
    found = []
    if resources:
        found.append(
            Tool(
                name=tool_name(server.name, READ_RESOURCE),
                upstream_url=f"{SCHEME}://{server.name}/{READ_RESOURCE}",
                input_schema=_READ_RESOURCE_SCHEMA,
                risk=RiskTier.READ,
                # The URI names a resource within the server, not a host to reach.
                flow=ToolFlow(arguments=MappingProxyType({"/uri": UNTRACKED})),
                description=f"Read a resource of the MCP server {server.name}.",
                source="mcp",
            )
        )
    if prompts:
        found.append(
            Tool(
                name=tool_name(server.name, GET_PROMPT),
                upstream_url=f"{SCHEME}://{server.name}/{GET_PROMPT}",
                input_schema=_GET_PROMPT_SCHEMA,
                risk=RiskTier.READ,
                description=f"Get a prompt of the MCP server {server.name}.",
                source="mcp",
            )
        )
    return found


@functools.lru_cache(maxsize=4096)  # the registered tools' URLs, the same few on every call
def _server_and_tool(url: str) -> tuple[str, str]:
    """The server and the tool an `mcp://<server>/<tool>` URL names."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.path.lstrip("/")


def _dump(items: Sequence[Any]) -> list[Any]:
    return [item.model_dump(mode="json", exclude_none=True, by_alias=True) for item in items]


def result_of(result: types.CallToolResult, elapsed: float) -> ToolResult:
    """A tool result for an MCP `tools/call` result (its tool errors included, flagged)."""
    wire = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return tool_result_of("", wire, elapsed)


async def _every(seconds: float, action: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(seconds)
        await action()


class _Connection:
    """One upstream server's session, kept open by its own task."""

    def __init__(
        self, server: McpServer, opener_for: Callable[[_Connection], Callable[..., Any]]
    ) -> None:
        """`opener_for(connection)` opens the session (it records the pipes on `connection`)."""
        self.server = server
        self._opener = opener_for(self)
        self.client: Client | None = None
        # Calls to a Streamable HTTP server (ztgate.mcp.http_calls) and the id
        # of the SDK client's session with it (handshake-era servers), or to a
        # stdio server over its pipes (ztgate.mcp.stdio_calls).
        self.caller: HttpToolCaller | StdioToolCaller | None = None
        self.session_id: str | None = None
        self.pipes: StdioPipes | None = None
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        # A task's instance: its own listing of the tools, by registry name.
        self.definitions: dict[str, Tool] = {}
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def current_session_id(self) -> str | None:
        """The id of the SDK client's session (a handshake-era HTTP server's), if any."""
        return self.session_id

    async def run(
        self, on_message: Callable[[Any], Any], on_change: Callable[[], Any], relist: float
    ) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._opener(stack, on_message))
                self.client = client
                self.ready.set()
                watcher = asyncio.create_task(self._watch(client, on_change, relist))
                try:
                    await self._stop.wait()
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await watcher
        except Exception as exc:  # the server failed: calls to it fail, the gateway runs on
            self.error = exc
            logger.error("MCP server %s: %s", self.server.name, exc)
        finally:
            self.client = None
            self.caller = None
            self.pipes = None
            self.ready.set()

    async def _watch(self, client: Client, on_change: Callable[[], Any], relist: float) -> None:
        """Re-import on the server's tool-list changes, and every `relist` seconds regardless.

        On a 2026-07-28 connection changes arrive on a `subscriptions/listen`
        stream; older servers send `notifications/tools/list_changed` (the
        message handler). Re-listing on a timer catches a server that says
        nothing.
        """
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                relisting = asyncio.create_task(_every(relist, on_change))
                try:
                    async for _event in subscription:
                        await on_change()
                finally:
                    relisting.cancel()
        except (ListenNotSupportedError, SubscriptionLost, MCPError, TimeoutError) as exc:
            logger.info("MCP server %s: no change stream (%s); re-listing", self.server.name, exc)
        await _every(relist, on_change)

    async def stop(self) -> None:
        self._stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, 10)


class McpUpstreams:
    """The gateway's upstream MCP sessions."""

    def __init__(
        self,
        servers: Sequence[McpServer],
        *,
        sync: Callable[[McpServer, list[Tool]], None],
        enclave: Enclaves | None = None,
        post: Post | None = None,
        timeout: float = 30.0,
        relist_seconds: float = 60.0,
        max_result_bytes: int | None = None,
        task_instances_per_server: int = 16,
        task_instance_idle_seconds: float = 300.0,
    ) -> None:
        """Connect to `servers`; `sync(server, tools)` stores imported tools (in a thread);
        `enclave(server, stack, binding)` gives a stdio server's wrapped command (binding:
        the task of a per-task instance, else None; no `enclave`: refuse stdio);
        `post` makes the HTTP requests of calls to Streamable HTTP servers (None: the SDK's);
        a stdio server's call results larger than `max_result_bytes` are refused."""
        self.servers = {server.name: server for server in servers}
        self._sync = sync
        self._enclave = enclave
        self._post = post
        self._timeout = timeout
        self._relist = relist_seconds
        self._max_result_bytes = max_result_bytes
        self.connections: dict[str, _Connection] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._refreshing: set[str] = set()
        self._again: set[str] = set()
        self.task_instances: TaskInstances[_Connection] = TaskInstances(
            self._start_task_instance,
            per_server=task_instances_per_server,
            idle_seconds=task_instance_idle_seconds,
            alive=lambda connection: connection.client is not None,
            current=lambda name: self.servers.get(name),
        )
        self._reaper: asyncio.Task[None] | None = None

    def use_enclaves(self, enclave: Enclaves) -> None:
        """Start stdio servers in enclaves made by `enclave` from now on."""
        self._enclave = enclave

    async def start(self) -> None:
        """Open every server's session and import its tools (a server that fails is logged)."""
        await self._open(list(self.servers.values()))

    async def reconcile(self, servers: Sequence[McpServer]) -> None:
        """Follow the stored servers: open the new and the changed, close the removed."""
        wanted = {server.name: server for server in servers}
        changed = [n for n in self.connections if wanted.get(n) != self.servers.get(n)]
        # Out of service at once, before any await: a call from now on finds no server.
        closing = []
        for name in changed:
            self.servers.pop(name, None)
            closing.append((name, self.connections.pop(name)))
        for name, connection in closing:
            await self.task_instances.stop(name)
            await connection.stop()
            logger.info("MCP server %s closed", name)
        added = [server for name, server in wanted.items() if name not in self.connections]
        self.servers.update({server.name: server for server in added})
        await self._open(added)

    async def _open(self, servers: Sequence[McpServer]) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle_instances())
        for server in servers:
            connection = _Connection(server, functools.partial(self._opener, server))
            self.connections[server.name] = connection
            connection.task = asyncio.create_task(
                connection.run(self._handler(server), self._on_change(server), self._relist)
            )
        for server in servers:
            connection = self.connections[server.name]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.ready.wait(), _CONNECT_SECONDS)
            if connection.client is not None:
                self._attach_caller(connection)
                try:
                    await self.refresh(server.name)
                except UpstreamError as exc:
                    logger.error("%s", exc)

    def _attach_caller(self, connection: _Connection) -> None:
        """Calls straight to the server (HTTP POSTs, its stdio pipes), beside the SDK session."""
        client = _client_of(connection)
        if connection.server.transport == "http" and self._post is not None:
            connection.caller = HttpToolCaller(
                connection.server.url,
                client.protocol_version,
                self._post,
                connection.current_session_id,
            )
        elif connection.pipes is not None:
            connection.caller = StdioToolCaller(connection.pipes, client.protocol_version)

    async def stop(self) -> None:
        """Close every session (and the enclaves their servers run in)."""
        for task in list(self._pending):
            task.cancel()
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        await self.task_instances.stop()
        for connection in self.connections.values():
            await connection.stop()

    async def refresh(self, name: str) -> list[Tool]:
        """Import the server's current tools into the registry.

        Raises:
            UpstreamError: the server is not connected or does not answer.
        """
        client = self._client(name)
        try:
            listed = await asyncio.wait_for(client.list_tools(cache_mode="bypass"), self._timeout)
        except (TimeoutError, Exception) as exc:
            raise UpstreamError(f"MCP server {name}: tools/list failed: {exc}") from exc
        server = self.servers[name]
        tools = imported_tools(server, listed.tools)
        capabilities = client.server_capabilities
        tools += access_tools(
            server,
            resources=capabilities.resources is not None,
            prompts=capabilities.prompts is not None,
        )
        await asyncio.to_thread(self._sync, server, tools)
        caller = self.connections[name].caller
        if caller is not None:
            caller.forget()
        return tools

    async def listing(self, name: str, what: str) -> list[Any]:
        """The `resources` or the `prompts` server `name` lists (first page).

        Raises:
            UpstreamError: not connected, or it fails.
        """
        client = self._client(name)
        fetch = client.list_resources if what == "resources" else client.list_prompts
        try:
            listed = await asyncio.wait_for(fetch(), self._timeout)
        except Exception as exc:
            raise UpstreamError(f"MCP server {name}: {what}/list failed: {exc}") from exc
        return list(getattr(listed, what))

    async def call(self, tool: Tool, call: ToolCall, task: TaskBinding | None = None) -> ToolResult:
        """Run `call` on the tool's server, over its open session (`task`'s own instance
        of a per-task server).

        Raises:
            UpstreamError: the server is not connected, fails, or times out; a per-task
                server without a task, or whose instance describes the tool otherwise.
        """
        server, name = _server_and_tool(tool.upstream_url)
        spec = self.servers.get(server)
        if spec is None or not spec.per_task:
            connection = self.connections.get(server)
            if connection is None:
                raise UpstreamError(f"MCP server {server} is not connected")
            return await self._call_on(connection, tool, call, name)
        if task is None:
            raise UpstreamError(
                f"MCP server {server} runs an instance per task: a call without a task "
                "cannot reach it"
            )
        async with self.task_instances.use(spec, task) as instance:
            if name not in _RESERVED and not _same_definition(instance.definitions, tool):
                raise UpstreamError(
                    f"MCP server {server}: the task's instance describes {tool.name} otherwise "
                    "than the tool approved: refused"
                )
            return await self._call_on(instance, tool, call, name)

    async def _call_on(
        self, connection: _Connection, tool: Tool, call: ToolCall, name: str
    ) -> ToolResult:
        client = _client_of(connection)
        timeout = tool.timeout_seconds or self._timeout
        arguments = dict(call.arguments)
        caller = connection.caller
        if caller is not None and name not in _RESERVED:
            try:
                return await caller.call(name, arguments, tool.input_schema, timeout)
            except HeaderMismatch as exc:  # it did not run: once more by the SDK, which re-lists
                logger.info("%s; retrying through the SDK's client", exc)
        started = time.perf_counter()
        try:
            if name == READ_RESOURCE:
                read = await asyncio.wait_for(client.read_resource(str(arguments["uri"])), timeout)
                body: Any = {"contents": _dump(read.contents)}
            elif name == GET_PROMPT:
                given = arguments.get("arguments") or {}
                got = await asyncio.wait_for(
                    client.get_prompt(str(arguments["name"]), dict(given)), timeout
                )
                body = {"messages": _dump(got.messages)}
                if got.description:
                    body["description"] = got.description
            else:
                result = await asyncio.wait_for(client.call_tool(name, arguments), timeout)
                return result_of(result, time.perf_counter() - started)
        except TimeoutError as exc:
            raise UpstreamError(f"MCP tool {tool.name} timed out", timeout=True) from exc
        except Exception as exc:
            raise UpstreamError(f"MCP tool {tool.name} failed: {exc}") from exc
        return ToolResult(200, body, elapsed_seconds=time.perf_counter() - started)

    async def _start_task_instance(self, server: McpServer, task: TaskBinding) -> _Connection:
        """A new instance of `server` for `task`, connected, its tools listed.

        Raises:
            UpstreamError: it could not be started or listed.
        """
        connection = _Connection(server, functools.partial(self._opener, server, task=task))

        async def relist() -> None:
            with contextlib.suppress(UpstreamError):
                await self._list_instance(connection)

        async def on_message(message: Any) -> None:
            if isinstance(getattr(message, "root", message), types.ToolListChangedNotification):
                await relist()

        connection.task = asyncio.create_task(connection.run(on_message, relist, self._relist))
        try:  # whatever happens from here (a cancellation too), no instance is left behind
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.ready.wait(), _CONNECT_SECONDS)
            if connection.client is None:
                why = connection.error or "no session in time"
                raise UpstreamError(f"MCP server {server.name}: the task's instance: {why}")
            self._attach_caller(connection)
            await self._list_instance(connection)
        except BaseException:
            await connection.stop()
            raise
        return connection

    async def _list_instance(self, connection: _Connection) -> None:
        """Keep what a task's instance lists now (its calls are held to the approved tools)."""
        client = _client_of(connection)
        try:
            listed = await asyncio.wait_for(client.list_tools(cache_mode="bypass"), self._timeout)
        except Exception as exc:
            raise UpstreamError(
                f"MCP server {connection.server.name}: the task's instance's tools/list "
                f"failed: {exc}"
            ) from exc
        tools = imported_tools(connection.server, listed.tools)
        connection.definitions = {tool.name: tool for tool in tools}
        if connection.caller is not None:
            connection.caller.forget()

    async def _reap_idle_instances(self) -> None:
        every = max(1.0, min(30.0, self.task_instances.idle_seconds / 2))
        while True:
            await asyncio.sleep(every)
            try:
                await self.task_instances.reap()
            except Exception:  # the reaper must live on
                logger.exception("stopping idle MCP task instances failed")

    def _client(self, name: str) -> Client:
        connection = self.connections.get(name)
        if connection is None:
            raise UpstreamError(f"MCP server {name} is not connected")
        return _client_of(connection)

    def _opener(
        self, server: McpServer, connection: _Connection, task: TaskBinding | None = None
    ) -> Callable[..., Any]:
        async def open_session(stack: contextlib.AsyncExitStack, on_message: Any) -> Client:
            if server.transport == "http":

                async def session_of(response: httpx2.Response) -> None:
                    # The handshake-era session the SDK's client opened: calls
                    # on the pooled client (ztgate.mcp.http_calls) present it.
                    if found := response.headers.get(MCP_SESSION_ID_HEADER):
                        connection.session_id = found

                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        timeout=self._timeout, event_hooks={"response": [session_of]}
                    )
                )
                transport: Any = streamable_http_client(server.url, http_client=http)
            else:
                if self._enclave is None:
                    raise UpstreamError("stdio MCP servers need the egress proxy and enclaves")
                wrapped = await self._enclave(server, stack, task)  # a per-task instance: its task
                params = StdioServerParameters(
                    command=wrapped.command,
                    args=list(wrapped.args),
                    env=dict(wrapped.env),
                    cwd=str(Path(server.cwd)) if server.cwd else None,
                )
                # ztgate holds the server's pipes: the SDK's session runs over
                # them, and calls are written to them directly.
                transport = StdioPipes(params, max_result_bytes=self._max_result_bytes)
                connection.pipes = transport
            return Client(transport, message_handler=on_message)

        return open_session

    def _on_change(self, server: McpServer) -> Callable[[], Any]:
        async def changed() -> None:
            await self._changed(server.name)

        return changed

    def _handler(self, server: McpServer) -> Callable[[Any], Any]:
        async def handle(message: Any) -> None:
            await self._on_message(server, message)

        return handle

    async def _on_message(self, server: McpServer, message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            task = asyncio.create_task(self._changed(server.name))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _changed(self, name: str) -> None:
        # A server that says "changed" in a burst is listed once more after
        # the import under way, not once per message.
        if name in self._refreshing:
            self._again.add(name)
            return
        self._refreshing.add(name)
        try:
            while True:
                self._again.discard(name)
                try:
                    tools = await self.refresh(name)
                except UpstreamError as exc:
                    logger.error("%s", exc)
                    return
                logger.info("MCP server %s changed its tools: %d imported", name, len(tools))
                if name not in self._again:
                    return
        finally:
            self._refreshing.discard(name)


def _client_of(connection: _Connection) -> Client:
    """The connection's open session.

    Raises:
        UpstreamError: it is not connected (and why, if it failed).
    """
    if connection.client is None:
        why = f": {connection.error}" if connection.error else ""
        raise UpstreamError(f"MCP server {connection.server.name} is not connected{why}")
    return connection.client


def _same_definition(definitions: dict[str, Tool], tool: Tool) -> bool:
    """Whether an instance lists `tool` as the registry holds it (description and schemas)."""
    listed = definitions.get(tool.name)
    return (
        listed is not None
        and listed.description == tool.description
        and listed.input_schema == tool.input_schema
        and listed.output_schema == tool.output_schema
    )
