"""Calls to a Streamable HTTP upstream at 2026-07-28 on the gateway's pooled client.

Against real HTTP servers on loopback: one that answers as the test says
(to see every kind of answer), and the SDK's own server (the real thing),
reached through `McpUpstreams` as the gateway reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from mcp import Client
from mcp_types import HEADER_MISMATCH
from multidict import CIMultiDict

from ztgate import __version__
from ztgate.errors import UpstreamError
from ztgate.forward import Forwarder
from ztgate.mcp import upstream as upstream_module
from ztgate.mcp.http_calls import HeaderMismatch, HttpToolCaller, Post, _events, tool_result_of
from ztgate.mcp.servers import McpServer
from ztgate.mcp.upstream import McpUpstreams
from ztgate.testing import make_call
from ztgate.tools.model import Tool

VERSION = "2026-07-28"
SCHEMA: dict[str, Any] = {"type": "object"}

Answer = Callable[[dict[str, Any]], web.StreamResponse]


class Scripted:
    """An HTTP server that records each request and answers with `answer`."""

    def __init__(self) -> None:
        self.requests: list[tuple[CIMultiDict[str], dict[str, Any]]] = []
        self.answer: Answer = lambda message: web.json_response(
            {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}
        )
        self.url = ""
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.delay)
        message = await request.json()
        self.requests.append((CIMultiDict(request.headers), message))
        return self.answer(message)


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    server = Scripted()
    app = web.Application()
    app.router.add_post("/mcp", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(timeout=5, max_result_bytes=4096, connections=4)
    await forwarder.start()
    try:
        yield forwarder
    finally:
        await forwarder.stop()


def caller(scripted: Scripted, forwarder: Forwarder) -> HttpToolCaller:
    return HttpToolCaller(scripted.url, VERSION, forwarder.post)


async def test_a_call_is_one_post_with_the_envelope_and_routing_headers(
    scripted: Scripted, forwarder: Forwarder
) -> None:
    scripted.answer = lambda m: web.json_response(
        {"jsonrpc": "2.0", "id": m["id"], "result": {"content": [], "structuredContent": {"a": 1}}}
    )
    result = await caller(scripted, forwarder).call("sénd", {"to": "bob"}, SCHEMA, 5)
    assert (result.status, result.body) == (200, {"a": 1})
    ((headers, message),) = scripted.requests
    assert headers["MCP-Protocol-Version"] == VERSION
    assert headers["Mcp-Method"] == "tools/call"
    assert headers["Mcp-Name"] != "sénd" and headers["Mcp-Name"].isascii()  # encoded
    assert message["method"] == "tools/call"
    assert message["params"]["name"] == "sénd"
    assert message["params"]["arguments"] == {"to": "bob"}
    meta = message["params"]["_meta"]
    assert meta["io.modelcontextprotocol/protocolVersion"] == VERSION
    assert meta["io.modelcontextprotocol/clientInfo"]["name"] == "ztgate"
    assert meta["io.modelcontextprotocol/clientCapabilities"] == {}


async def test_arguments_the_schema_mirrors_go_in_mcp_param_headers(
    scripted: Scripted, forwarder: Forwarder
) -> None:
    schema = {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    }
    await caller(scripted, forwarder).call("deploy", {"region": "eu-west"}, schema, 5)
    headers, _ = scripted.requests[0]
    assert headers["Mcp-Param-Region"] == "eu-west"


async def test_an_event_stream_answer_gives_the_calls_response(
    scripted: Scripted, forwarder: Forwarder
) -> None:
    def stream(message: dict[str, Any]) -> web.Response:
        progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
        done = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": [], "isError": True}}
        text = b"".join(
            b"event: message\r\ndata: " + orjson.dumps(m) + b"\r\n\r\n" for m in (progress, done)
        )
        return web.Response(body=b": ping\r\n\r\n" + text, content_type="text/event-stream")

    scripted.answer = stream
    result = await caller(scripted, forwarder).call("send", {}, SCHEMA, 5)
    assert result.body == {"is_error": True, "content": []}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            lambda m: web.json_response(
                {"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32602, "message": "bad to"}},
                status=400,
            ),
            "bad to",
        ),
        (
            lambda m: web.json_response(
                {"jsonrpc": "2.0", "id": m["id"] + 1, "result": {"content": []}}
            ),
            "without the call's response",
        ),
        (lambda m: web.Response(status=502, text="<html>bad gateway</html>"), "HTTP 502"),
        (lambda m: web.Response(body=b"{not json", content_type="application/json"), "malformed"),
        (
            lambda m: web.json_response({"jsonrpc": "2.0", "id": m["id"], "result": "x" * 5000}),
            "larger than 4096 bytes",
        ),
    ],
)
async def test_an_answer_that_is_not_a_result_is_an_upstream_error(
    scripted: Scripted, forwarder: Forwarder, answer: Answer, expected: str
) -> None:
    scripted.answer = answer
    with pytest.raises(UpstreamError, match=expected):
        await caller(scripted, forwarder).call("send", {}, SCHEMA, 5)


async def test_refused_routing_headers_say_the_call_did_not_run(
    scripted: Scripted, forwarder: Forwarder
) -> None:
    error = {"code": HEADER_MISMATCH, "message": "Mcp-Name header does not match"}
    scripted.answer = lambda m: web.json_response(
        {"jsonrpc": "2.0", "id": m["id"], "error": error}, status=400
    )
    with pytest.raises(HeaderMismatch):
        await caller(scripted, forwarder).call("send", {}, SCHEMA, 5)


async def test_a_server_that_does_not_answer_in_time_times_out(
    scripted: Scripted, forwarder: Forwarder
) -> None:
    scripted.delay = 3
    with pytest.raises(UpstreamError) as raised:
        await caller(scripted, forwarder).call("send", {}, SCHEMA, 0.2)
    assert raised.value.timeout


@pytest.mark.parametrize(
    "result",
    [
        None,
        [],
        {"content": "text"},
        {"content": [{"text": "no type"}]},
        {"content": [], "structuredContent": [1, 2]},
        {"content": [], "isError": "yes"},
        {"content": [], "resultType": "input_required"},
    ],
)
def test_a_malformed_or_unfinished_result_is_refused(result: Any) -> None:
    with pytest.raises(UpstreamError):
        tool_result_of("send", result, 0)


def test_a_tool_error_is_flagged_and_content_blocks_are_the_body_without_structure() -> None:
    blocks = [{"type": "text", "text": "nope"}]
    result = tool_result_of("send", {"content": blocks, "isError": True}, 0.5)
    assert result.body == {"is_error": True, "content": blocks}
    assert result.elapsed_seconds == 0.5


_messages = st.lists(
    st.dictionaries(
        st.text(max_size=5), st.integers(-(2**53), 2**53) | st.text(max_size=8), max_size=3
    ),
    max_size=4,
)


@given(messages=_messages, crlf=st.booleans(), comments=st.booleans())
def test_every_message_event_of_a_stream_is_read(
    messages: list[dict[str, Any]], crlf: bool, comments: bool
) -> None:
    newline = b"\r\n" if crlf else b"\n"
    blocks = []
    for message in messages:
        lines = [b": keepalive"] if comments else []
        lines += [b"event: message", b"data: " + orjson.dumps(message)]
        blocks.append(newline.join(lines))
    blocks.append(newline.join([b"event: other", b'data: {"ignored": true}']))
    assert _events((newline * 2).join(blocks) + newline * 2) == messages


# -- through McpUpstreams, to the SDK's own server --------------------------------

UPSTREAM = Path(__file__).parents[2] / "integration" / "mcp_upstream_server.py"


@contextlib.asynccontextmanager
async def sdk_server() -> AsyncIterator[str]:
    """The upstream test server (the SDK's low-level server) over Streamable HTTP, here."""
    sys.path.insert(0, str(UPSTREAM.parent))
    try:
        import mcp_upstream_server  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(UPSTREAM.parent))
    config = uvicorn.Config(
        mcp_upstream_server.server().streamable_http_app(),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def upstreams_of_sdk_server(
    post: Post,
) -> AsyncIterator[tuple[McpUpstreams, dict[str, Tool]]]:
    """`McpUpstreams` on the SDK's server, as the gateway connects, and its imported tools."""
    async with sdk_server() as url:
        imported: list[Tool] = []
        upstreams = McpUpstreams(
            [McpServer(name="files", transport="http", url=url)],
            sync=lambda _server, tools: imported.extend(tools),
            post=post,
        )
        await upstreams.start()
        try:
            yield upstreams, {tool.name: tool for tool in imported}
        finally:
            await upstreams.stop()


SEND = {"to": "bob", "text": "hi"}


async def test_the_gateway_calls_an_sdk_server_with_one_post_per_call(
    forwarder: Forwarder,
) -> None:
    posts: list[str] = []

    async def counted_post(
        url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, bytes]:
        posts.append(orjson.loads(body)["params"]["name"])
        return await forwarder.post(url, body, headers, timeout)

    async with upstreams_of_sdk_server(counted_post) as (upstreams, tools):
        result = await upstreams.call(tools["files.send"], make_call("files.send", SEND))
        read = tools["files.resources.read"]
        resource = await upstreams.call(read, make_call(read.name, {"uri": "notes://today"}))
    assert result.body == {"sent": SEND}
    assert posts == ["send"]  # the call; a resource read stays with the SDK's client
    assert resource.body["contents"][0]["text"] == "Buy milk."


async def test_a_handshake_era_session_is_called_with_its_session_id(
    forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's own client, made to open a handshake-era session as older servers need.
    monkeypatch.setattr(upstream_module, "Client", functools.partial(Client, mode="legacy"))
    sessions: list[str | None] = []

    async def post(
        url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, bytes]:
        sessions.append(headers.get("mcp-session-id"))
        assert "_meta" not in orjson.loads(body)["params"]  # no per-request envelope
        return await forwarder.post(url, body, headers, timeout)

    async with upstreams_of_sdk_server(post) as (upstreams, tools):
        caller = upstreams.connections["files"].caller
        assert caller is not None and not caller.modern
        result = await upstreams.call(tools["files.send"], make_call("files.send", SEND))
    assert result.body == {"sent": SEND}
    assert len(sessions) == 1 and sessions[0]  # the SDK client's session, presented


def _reference_request(
    request_id: int, name: str, arguments: dict[str, Any], schema: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """A call's body and headers as built from scratch on every call (the earlier code)."""
    from mcp.shared.inbound import encode_header_value, mcp_param_headers, x_mcp_header_map

    meta = {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "ztgate", "version": __version__},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": name, "arguments": arguments, "_meta": meta}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Accept-Encoding": "identity",
        "mcp-protocol-version": VERSION,
        "mcp-method": "tools/call",
        "mcp-name": encode_header_value(name),
        **mcp_param_headers(x_mcp_header_map(dict(schema)), arguments),
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return orjson.dumps(body), headers


async def test_a_calls_request_is_what_building_it_afresh_gives_per_tool_and_schema() -> None:
    # Headers and the envelope are kept per tool (until `forget`): every call's
    # request must still be byte for byte what building it afresh gives.
    sent: list[tuple[bytes, dict[str, str]]] = []

    async def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Any:
        sent.append((body, dict(headers)))
        headers["Mcp-Param-Injected"] = "x"  # a poster that changes what it is given
        answer = {"jsonrpc": "2.0", "id": orjson.loads(body)["id"], "result": {"content": []}}
        return 200, "application/json", orjson.dumps(answer)

    routed = {"type": "object", "properties": {"r": {"type": "string", "x-mcp-header": "R"}}}
    caller = HttpToolCaller("http://u.example/mcp", VERSION, post)
    calls = [
        ("plain", {"a": 1}, SCHEMA),
        ("routed", {"r": "eu"}, routed),
        ("routed", {"r": "us west"}, routed),
        ("naïve tool", {}, SCHEMA),
        ("plain", {"a": 2}, SCHEMA),
    ]
    expected = []
    for request_id, (name, arguments, schema) in enumerate(calls, start=1):
        await caller.call(name, arguments, schema, 5.0)
        expected.append(_reference_request(request_id, name, arguments, schema))
    caller.forget()  # listed again: "plain" now mirrors an argument
    await caller.call("plain", {"r": "ap"}, routed, 5.0)
    expected.append(_reference_request(len(calls) + 1, "plain", {"r": "ap"}, routed))
    assert sent == expected


async def test_a_handshake_era_call_carries_the_sessions_id_as_it_is_at_each_call() -> None:
    sent: list[dict[str, str]] = []
    session: list[str | None] = [None]

    async def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Any:
        sent.append(dict(headers))
        answer = {"jsonrpc": "2.0", "id": orjson.loads(body)["id"], "result": {"content": []}}
        return 200, "application/json", orjson.dumps(answer)

    caller = HttpToolCaller("http://u.example/mcp", "2025-06-18", post, lambda: session[0])
    await caller.call("t", {}, SCHEMA, 5.0)
    session[0] = "s-1"
    await caller.call("t", {}, SCHEMA, 5.0)
    base = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Accept-Encoding": "identity",
        "mcp-protocol-version": "2025-06-18",
    }
    assert sent == [base, {**base, "mcp-session-id": "s-1"}]


def test_the_shared_envelope_is_unchanged_by_calls() -> None:
    from ztgate.mcp.http_calls import call_params

    first = call_params("t", {"a": 1}, VERSION)
    assert first["_meta"] == {
        "io.modelcontextprotocol/protocolVersion": VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "ztgate", "version": __version__},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    assert "_meta" not in call_params("t", {}, "2025-06-18")
