"""A stdio MCP server for the per-task instance tests (the `mcp` SDK's low-level server).

Tools: `whoami` answers the task and agent labels its environment holds (the
secrets its instance was given) and its process id; `ping` fetches the URL
in `PING_URL` (its configured environment) through the proxy the
environment names, answering the status.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS = [
    types.Tool(
        name="whoami", description="Who this instance is for.", input_schema={"type": "object"}
    ),
    types.Tool(
        name="ping", description="Ping the configured host.", input_schema={"type": "object"}
    ),
]


def ping() -> str:
    try:
        with urllib.request.urlopen(os.environ["PING_URL"], timeout=10) as answer:  # noqa: S310
            return f"{answer.status} {answer.read().decode()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode().strip()}"
    except OSError as exc:
        return f"error {exc}"


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name == "ping":
        found: dict[str, Any] = {"ping": await anyio.to_thread.run_sync(ping)}
    else:
        found = {
            "task": os.environ.get("TASK_LABEL"),
            "agent": os.environ.get("AGENT_LABEL"),
            "pid": os.getpid(),
        }
    return types.CallToolResult(content=[], structured_content=found)


async def main() -> None:
    server = Server("per-task-test", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
