"""A stdio MCP server for the enclave tests (the `mcp` SDK's low-level server).

Tools: `fetch(url)` through the proxy the environment names (urllib reads
HTTP_PROXY), answering the status and body; `connect(host, port)` straight
to an address, answering whether the socket opened; `read(path)` a file;
`env()` the names of the environment variables it sees.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(name=name, description=f"{name} (enclave test)", input_schema=schema)
    for name, schema in [
        ("fetch", {"type": "object", "properties": {"url": {"type": "string"}}}),
        (
            "connect",
            {
                "type": "object",
                "properties": {"host": {"type": "string"}, "port": {"type": "integer"}},
            },
        ),
        ("read", {"type": "object", "properties": {"path": {"type": "string"}}}),
        ("env", {"type": "object"}),
    ]
]


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the test's URL
            return f"{answer.status} {answer.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode().strip()}"
    except OSError as exc:
        return f"error {exc}"


def connect(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            return "connected"
    except OSError as exc:
        return f"refused {exc}"


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        return f"error {exc}"


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    if params.name == "fetch":
        text = await anyio.to_thread.run_sync(fetch, arguments["url"])
    elif params.name == "connect":
        text = await anyio.to_thread.run_sync(connect, arguments["host"], arguments["port"])
    elif params.name == "read":
        text = read(arguments["path"])
    else:
        text = " ".join(sorted(os.environ))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def main() -> None:
    server = Server("enclave-test", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
