"""Calls to a stdio upstream written straight to its pipes, beside the SDK's session over them.

Against real processes: a scripted server that answers as the test says (to
see every kind of answer, and a server that dies), and the SDK's own server
(the real thing), reached through `McpUpstreams` as the gateway reaches it,
called both ways to hold the direct path to the SDK's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from mcp import StdioServerParameters

from ztgate.errors import UpstreamError
from ztgate.mcp import stdio_calls
from ztgate.mcp.servers import McpServer
from ztgate.mcp.stdio_calls import StdioPipes, StdioToolCaller
from ztgate.mcp.upstream import McpUpstreams, result_of
from ztgate.testing import make_call
from ztgate.tools.model import Tool

UPSTREAM = Path(__file__).parents[2] / "integration" / "mcp_upstream_server.py"

# A stdio server that answers each request as its first argument says, and
# notes every message it reads in the file its second argument names.
SCRIPTED = r"""
import json, sys
mode, notes = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    with open(notes, "a") as f:
        f.write(line)
    message = json.loads(line)
    if "id" not in message:
        continue
    answer = {"jsonrpc": "2.0", "id": message["id"]}
    arguments = message["params"].get("arguments", {})
    if mode == "echo":
        answer["result"] = {"content": [], "structuredContent": {"echo": arguments}}
    elif mode == "big":
        answer["result"] = {"content": [{"type": "text", "text": "x" * 20000}]}
    elif mode == "large":
        answer["result"] = {"content": [{"type": "text", "text": "y" * 300000}]}
    elif mode == "junk":
        sys.stdout.write("a log line, not JSON\n")
        answer["result"] = {"content": [{"type": "text", "text": "fine"}]}
    elif mode == "error":
        answer["error"] = {"code": -32000, "message": "the disk is full"}
    elif mode == "nothing":
        pass
    elif mode == "not-a-result":
        answer["result"] = "done"
    elif mode == "die":
        sys.exit(3)
    elif mode == "endless":
        while True:
            sys.stdout.write("z" * 65536)
            sys.stdout.flush()
    elif mode == "silent":
        continue
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
"""


@contextlib.asynccontextmanager
async def open_pipes(mode: str, tmp_path: Path, limit: int = 4096) -> AsyncIterator[StdioPipes]:
    """A scripted server's pipes, open."""
    params = StdioServerParameters(
        command=sys.executable, args=["-c", SCRIPTED, mode, str(tmp_path / "notes")]
    )
    pipes = StdioPipes(params, max_result_bytes=limit)
    async with pipes:
        yield pipes


def notes(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "notes"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def test_a_call_is_one_line_each_way(tmp_path: Path) -> None:
    async with open_pipes("echo", tmp_path) as pipes:
        caller = StdioToolCaller(pipes, "2025-06-18")
        result = await caller.call("send", {"to": "bob"}, {"type": "object"}, 5)
    assert result.status == 200 and result.body == {"echo": {"to": "bob"}}
    (request,) = notes(tmp_path)
    assert request["method"] == "tools/call" and request["id"].startswith("ztgate-")
    assert request["params"] == {"name": "send", "arguments": {"to": "bob"}}  # handshake era


async def test_at_2026_07_28_a_call_carries_its_envelope(tmp_path: Path) -> None:
    async with open_pipes("echo", tmp_path) as pipes:
        await StdioToolCaller(pipes, "2026-07-28").call("send", {}, {}, 5)
    (request,) = notes(tmp_path)
    meta = request["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "ztgate"


async def test_concurrent_calls_get_their_own_answers(tmp_path: Path) -> None:
    async with open_pipes("echo", tmp_path) as pipes:
        caller = StdioToolCaller(pipes, "2025-06-18")
        results = await asyncio.gather(*(caller.call("send", {"n": n}, {}, 5) for n in range(20)))
    assert [r.body for r in results] == [{"echo": {"n": n}} for n in range(20)]


async def test_an_answer_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    async with open_pipes("big", tmp_path, limit=4096) as pipes:
        with pytest.raises(UpstreamError, match="larger than 4096 bytes"):
            await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 5)


async def test_an_answer_in_many_pieces_arrives_whole(tmp_path: Path) -> None:
    async with open_pipes("large", tmp_path, limit=1_048_576) as pipes:
        result = await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 10)
    assert result.body == {"content": [{"type": "text", "text": "y" * 300000}]}


async def test_a_line_without_end_stops_the_server_instead_of_filling_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stdio_calls, "_MAX_LINE_BYTES", 1_000_000)
    async with open_pipes("endless", tmp_path) as pipes:
        with pytest.raises(UpstreamError, match="a line longer than 1000000 bytes"):
            await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 20)
        assert pipes.process is not None
        assert await asyncio.wait_for(pipes.process.wait(), 10) == -9  # killed


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("error", r"failed: the disk is full \(-32000\)"),
        ("nothing", "no result and no error"),
        ("not-a-result", "answered no result"),
    ],
)
async def test_a_malformed_or_error_answer_is_an_upstream_error(
    mode: str, said: str, tmp_path: Path
) -> None:
    async with open_pipes(mode, tmp_path) as pipes:
        with pytest.raises(UpstreamError, match=said) as raised:
            await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 5)
    assert not raised.value.timeout


async def test_lines_that_are_not_answers_go_to_the_sdk(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-c", SCRIPTED, "junk", str(tmp_path / "notes")]
    )
    pipes = StdioPipes(params, max_result_bytes=4096)
    async with pipes as (read_stream, _write_stream):
        result = await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 5)
        passed_on = await read_stream.receive()
    assert result.body == {"content": [{"type": "text", "text": "fine"}]}
    assert isinstance(passed_on, Exception)  # as the SDK's own transport passes it on


async def test_a_server_that_dies_mid_call_fails_the_call_at_once(tmp_path: Path) -> None:
    async with open_pipes("die", tmp_path) as pipes:
        caller = StdioToolCaller(pipes, "2025-06-18")
        with pytest.raises(UpstreamError, match="exited") as raised:
            await asyncio.wait_for(caller.call("send", {}, {}, 30), 10)
        assert not raised.value.timeout
        with pytest.raises(UpstreamError, match="exited"):  # and every call after it
            await caller.call("send", {}, {}, 30)


async def test_a_server_that_does_not_answer_in_time_times_out(tmp_path: Path) -> None:
    async with open_pipes("silent", tmp_path) as pipes:
        with pytest.raises(UpstreamError, match="timed out") as raised:
            await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 0.2)
        await asyncio.sleep(0.2)  # the cancellation reaches the server
    assert raised.value.timeout
    call, cancelled = notes(tmp_path)
    assert cancelled["method"] == "notifications/cancelled"
    assert cancelled["params"]["requestId"] == call["id"]


async def test_a_call_after_the_session_closed_fails(tmp_path: Path) -> None:
    async with open_pipes("echo", tmp_path) as pipes:
        pass
    with pytest.raises(UpstreamError, match="closed"):
        await StdioToolCaller(pipes, "2025-06-18").call("send", {}, {}, 5)


# -- the SDK's server, through McpUpstreams ------------------------------------------


async def _same_command(
    server: McpServer, _stack: contextlib.AsyncExitStack, _task: object = None
) -> Any:
    """An "enclave" that runs the command as it is (the enclave tests are elsewhere)."""
    return SimpleNamespace(command=server.command, args=server.args, env={})


@contextlib.asynccontextmanager
async def upstreams_of_sdk_server() -> AsyncIterator[tuple[McpUpstreams, dict[str, Tool]]]:
    imported: list[Tool] = []
    upstreams = McpUpstreams(
        [McpServer(name="files", transport="stdio", command=sys.executable, args=(str(UPSTREAM),))],
        sync=lambda _server, tools: imported.extend(tools),
        enclave=_same_command,
        max_result_bytes=1_048_576,
    )
    await upstreams.start()
    try:
        yield upstreams, {tool.name: tool for tool in imported}
    finally:
        await upstreams.stop()


SEND = {"to": "bob", "text": "hi"}


@pytest.mark.parametrize(("tool", "arguments"), [("send", SEND), ("notes", {}), ("archive", {})])
async def test_the_direct_call_answers_as_the_sdks_client_does(
    tool: str, arguments: dict[str, Any]
) -> None:
    async with upstreams_of_sdk_server() as (upstreams, tools):
        connection = upstreams.connections["files"]
        assert isinstance(connection.caller, StdioToolCaller)
        direct = await upstreams.call(tools[f"files.{tool}"], make_call(f"files.{tool}", arguments))
        assert connection.client is not None
        sdk = result_of(await connection.client.call_tool(tool, arguments), 0.0)
    assert direct.status == sdk.status == 200
    assert direct.body == sdk.body


async def test_the_sdks_session_runs_beside_the_direct_calls() -> None:
    async with upstreams_of_sdk_server() as (upstreams, tools):
        read = tools["files.resources.read"]
        calls = [
            upstreams.call(tools["files.send"], make_call("files.send", SEND)) for _ in range(5)
        ]
        resource, *sent = await asyncio.gather(
            upstreams.call(read, make_call(read.name, {"uri": "notes://today"})), *calls
        )
        relisted = await upstreams.refresh("files")
    assert resource.body["contents"][0]["text"] == "Buy milk."
    assert all(result.body == {"sent": SEND} for result in sent)
    assert "files.send" in {tool.name for tool in relisted}
