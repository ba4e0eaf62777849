"""MCP upstreams: how a server's tools are imported, and how an MCP result becomes a tool result."""

from __future__ import annotations

import asyncio

import mcp_types as types
import pytest

from ztgate.errors import UpstreamError
from ztgate.mcp.servers import McpServer
from ztgate.mcp.upstream import (
    McpUpstreams,
    access_tools,
    imported_tools,
    parse_resource_uri,
    resource_uri,
    result_of,
    tool_name,
)
from ztgate.testing import make_call
from ztgate.tools.model import RiskTier, Tool

SERVER = McpServer(
    name="files", transport="http", url="http://127.0.0.1:1/mcp", read_only_tools=("notes",)
)


def _tool(name: str, *, read_only: bool | None = None, **fields: object) -> types.Tool:
    annotations = None if read_only is None else types.ToolAnnotations(read_only_hint=read_only)
    return types.Tool(name=name, input_schema={"type": "object"}, annotations=annotations, **fields)  # type: ignore[arg-type]


def test_tools_are_named_and_addressed_by_their_server() -> None:
    (tool,) = imported_tools(SERVER, [_tool("send", description="Send it.")])
    assert tool.name == tool_name("files", "send") == "files.send"
    assert tool.upstream_url == "mcp://files/send"
    assert tool.description == "Send it." and tool.source == "mcp"


def test_read_only_needs_the_servers_word_and_the_operators() -> None:
    tools = imported_tools(
        SERVER,
        [
            _tool("notes", read_only=True),  # both: read
            _tool("log", read_only=True),  # the server only: write
            _tool("notes2", read_only=False),
        ],
    )
    assert {t.name: t.risk for t in tools} == {
        "files.notes": RiskTier.READ,
        "files.log": RiskTier.WRITE,
        "files.notes2": RiskTier.WRITE,
    }


def test_a_tool_the_registry_cannot_take_is_skipped() -> None:
    bad = types.Tool(name="bad name!", input_schema={"type": "object"})
    assert imported_tools(SERVER, [bad, _tool("ok")])[0].name == "files.ok"
    assert len(imported_tools(SERVER, [bad])) == 0


def test_structured_content_is_the_result() -> None:
    result = result_of(types.CallToolResult(content=[], structured_content={"a": 1}), 0.01)
    assert (result.status, result.body, result.elapsed_seconds) == (200, {"a": 1}, 0.01)


def test_content_blocks_are_the_result_without_structured_content() -> None:
    text = types.CallToolResult(content=[types.TextContent(type="text", text="hi")])
    assert result_of(text, 0).body == {"content": [{"type": "text", "text": "hi"}]}


def test_a_tool_error_is_flagged_in_the_result() -> None:
    failed = types.CallToolResult(
        content=[types.TextContent(type="text", text="no such file")], is_error=True
    )
    assert result_of(failed, 0).body["is_error"] is True


async def test_a_call_to_a_server_that_is_not_connected_fails_clearly() -> None:
    upstreams = McpUpstreams([SERVER], sync=lambda _s, _t: None)
    tool = Tool(name="files.send", upstream_url="mcp://files/send", input_schema={"type": "object"})
    with pytest.raises(UpstreamError, match="MCP server files is not connected"):
        await upstreams.call(tool, make_call("files.send", {}))


async def test_a_stdio_server_without_enclaves_is_refused() -> None:
    stdio = McpServer(name="local", transport="stdio", command="/bin/true")
    upstreams = McpUpstreams([stdio], sync=lambda _s, _t: None)
    await upstreams.start()
    connection = upstreams.connections["local"]
    assert connection.client is None
    assert "enclaves" in str(connection.error)
    await upstreams.stop()


def test_resources_and_prompts_have_their_own_read_tools() -> None:
    read, get = access_tools(SERVER, resources=True, prompts=True)
    assert (read.name, read.upstream_url, read.risk) == (
        "files.resources.read",
        "mcp://files/resources.read",
        RiskTier.READ,
    )
    assert read.flow is not None and read.flow.arguments == {"/uri": "untracked"}
    assert get.name == "files.prompts.get" and get.risk is RiskTier.READ
    assert access_tools(SERVER, resources=False, prompts=False) == []


def test_a_server_tool_with_a_reserved_name_is_not_imported() -> None:
    assert [t.name for t in imported_tools(SERVER, [_tool("resources.read"), _tool("ok")])] == [
        "files.ok"
    ]


@pytest.mark.parametrize("uri", ["notes://today", "https://x.example/a?b=c#d", "file:///etc/x y"])
def test_resource_uris_name_their_server_and_round_trip(uri: str) -> None:
    front = resource_uri("files", uri)
    assert front.startswith("ztgate://files/") and "/" not in front.removeprefix("ztgate://files/")
    assert parse_resource_uri(front) == ("files", uri)


@pytest.mark.parametrize(
    "bad", ["notes://today", "ztgate://files/", "ztgate:///x", "http://files/x"]
)
def test_other_uris_are_not_upstream_resources(bad: str) -> None:
    with pytest.raises(ValueError, match="not a resource of an upstream server"):
        parse_resource_uri(bad)


async def test_a_burst_of_change_messages_is_listed_once_more_not_once_each() -> None:
    upstreams = McpUpstreams([SERVER], sync=lambda _s, _t: None)
    listed: list[str] = []
    release = asyncio.Event()

    async def refresh(name: str) -> list[Tool]:
        listed.append(name)
        await release.wait()
        return []

    upstreams.refresh = refresh  # type: ignore[method-assign]
    first = asyncio.create_task(upstreams._changed("files"))
    await asyncio.sleep(0)
    for _ in range(20):
        await upstreams._changed("files")  # while the first import is under way
    release.set()
    await first
    assert listed == ["files", "files"]


@pytest.mark.parametrize(
    "url", ["mcp://web/echo", "mcp://Web/echo", "mcp://web/a/b", "mcp://web", "mcp://s/"]
)
def test_a_tools_server_and_name_are_its_urls_every_time(url: str) -> None:
    from urllib.parse import urlsplit

    from ztgate.mcp.upstream import _server_and_tool

    parts = urlsplit(url)
    expected = (parts.hostname or "", parts.path.lstrip("/"))
    assert _server_and_tool(url) == expected
    assert _server_and_tool(url) == expected  # kept
