"""The forwarder against a real HTTP server on loopback (aiohttp.web, same event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from ztgate.canonical import canonical_json
from ztgate.errors import UpstreamError
from ztgate.forward import Forwarder
from ztgate.models import ToolCall, ToolResult
from ztgate.testing import make_call, make_tool
from ztgate.tools.model import Tool

LIMIT = 2048  # the forwarders' max_result_bytes in this module


@dataclass(frozen=True)
class Received:
    """One request the upstream got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    """The running tool server: its base URL and everything it received."""

    base: str
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def tool(self, path: str, **options: Any) -> Tool:
        return make_tool("t", url=f"{self.base}{path}", **options)

    def paths(self) -> list[str]:
        return [r.path for r in self.received]


def _json(payload: Any, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=content_type)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream("")

    async def record(request: web.Request) -> bytes:
        body = await request.read()
        server.received.append(Received(request.path, dict(request.headers), body))
        return body

    async def echo(request: web.Request) -> web.Response:
        return _json({"echo": orjson.loads(await record(request) or b"null")})

    async def vendor_json(request: web.Request) -> web.Response:
        await record(request)
        return _json({"ok": True}, content_type="application/vnd.acme.result+json")

    async def text(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text='{"looks": "like json"}', content_type="text/plain")

    async def no_type(request: web.Request) -> web.Response:
        await record(request)
        response = web.Response(body=b'{"a": 1}')
        response.headers.pop("Content-Type", None)
        return response

    async def invalid(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"{not json", content_type="application/json")

    async def empty(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"", content_type="application/json")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info["code"])
        return _json({"status": code}, status=code)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        # A 307 keeps the method and body: followed, it would reach /echo.
        return web.Response(status=int(request.match_info["code"]), headers={"Location": "/echo"})

    async def sized(request: web.Request) -> web.Response:
        await record(request)
        size = int(request.match_info["size"])
        filler = "x" * (size - len(b'{"blob":""}'))
        body = orjson.dumps({"blob": filler})
        assert len(body) == size
        return web.Response(body=body, content_type="application/json")

    async def chunked(request: web.Request) -> web.StreamResponse:
        await record(request)
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"blob":"')
        remaining = size - len(b'{"blob":""}')
        while remaining > 0:
            piece = min(remaining, 256)
            await response.write(b"x" * piece)
            remaining -= piece
        await response.write(b'"}')
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        seconds = float(request.query.get("seconds", "30"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.release.wait(), seconds)
        return _json({"slept": seconds})

    async def cookie(request: web.Request) -> web.Response:
        await record(request)
        response = _json({"cookie": "set"})
        response.set_cookie("session", "s3cr3t", path="/")
        return response

    async def compressing(request: web.Request) -> web.Response:
        # Compresses whenever the client says it accepts gzip, as nginx,
        # Starlette's GZipMiddleware and many others do.
        await record(request)
        payload = orjson.dumps({"compressed": "maybe", "pad": "y" * 600})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(
                body=gzip.compress(payload),
                content_type="application/json",
                headers={"Content-Encoding": "gzip"},
            )
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/vendor", vendor_json)
    app.router.add_post("/text", text)
    app.router.add_post("/notype", no_type)
    app.router.add_post("/invalid", invalid)
    app.router.add_post("/empty", empty)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/redirect/{code}", redirect)
    app.router.add_post("/sized/{size}", sized)
    app.router.add_post("/chunked/{size}", chunked)
    app.router.add_post("/slow", slow)
    app.router.add_post("/cookie", cookie)
    app.router.add_post("/gzip", compressing)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    fwd = Forwarder(timeout=5.0, max_result_bytes=LIMIT, connections=4)
    await fwd.start()
    try:
        yield fwd
    finally:
        await fwd.stop()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _call(arguments: dict[str, Any] | None = None, call_id: str = "call-fwd-1") -> ToolCall:
    return make_call("t", arguments if arguments is not None else {"x": 1}, call_id=call_id)


# -- results -----------------------------------------------------------------


async def test_a_json_answer_is_the_result(upstream: Upstream, forwarder: Forwarder) -> None:
    result = await forwarder.forward(upstream.tool("/echo"), _call({"city": "Lisbon"}))
    assert result.status == 200
    assert result.body == {"echo": {"city": "Lisbon"}}
    assert result.content_type == "application/json"
    assert result.elapsed_seconds > 0
    assert upstream.paths() == ["/echo"]


async def test_a_plus_json_content_type_is_json(upstream: Upstream, forwarder: Forwarder) -> None:
    result = await forwarder.forward(upstream.tool("/vendor"), _call())
    assert result.body == {"ok": True}
    assert result.content_type == "application/vnd.acme.result+json"


@pytest.mark.parametrize("code", [201, 204])
async def test_any_2xx_is_a_result(upstream: Upstream, forwarder: Forwarder, code: int) -> None:
    result = await forwarder.forward(upstream.tool(f"/status/{code}"), _call())
    assert result.status == code


async def test_an_empty_json_body_is_a_null_result(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    result = await forwarder.forward(upstream.tool("/empty"), _call())
    assert result.body is None


@pytest.mark.parametrize("path", ["/text", "/notype"])
async def test_a_body_that_is_not_declared_json_is_refused(
    upstream: Upstream, forwarder: Forwarder, path: str
) -> None:
    with pytest.raises(UpstreamError, match="not JSON") as caught:
        await forwarder.forward(upstream.tool(path), _call())
    assert caught.value.timeout is False


async def test_invalid_json_is_refused(upstream: Upstream, forwarder: Forwarder) -> None:
    with pytest.raises(UpstreamError, match="invalid JSON"):
        await forwarder.forward(upstream.tool("/invalid"), _call())


@pytest.mark.parametrize("code", [400, 404, 500, 503])
async def test_a_non_2xx_status_is_a_failure(
    upstream: Upstream, forwarder: Forwarder, code: int
) -> None:
    with pytest.raises(UpstreamError, match=f"answered HTTP {code}") as caught:
        await forwarder.forward(upstream.tool(f"/status/{code}"), _call())
    assert caught.value.timeout is False


# -- size limits -------------------------------------------------------------


async def test_a_declared_length_at_the_limit_passes(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    result = await forwarder.forward(upstream.tool(f"/sized/{LIMIT}"), _call())
    assert len(result.body["blob"]) == LIMIT - len(b'{"blob":""}')


async def test_a_declared_length_over_the_limit_is_refused(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    with pytest.raises(UpstreamError, match=f"larger than {LIMIT} bytes"):
        await forwarder.forward(upstream.tool(f"/sized/{LIMIT + 1}"), _call())


async def test_a_chunked_body_within_the_limit_passes(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    result = await forwarder.forward(upstream.tool(f"/chunked/{LIMIT}"), _call())
    assert len(result.body["blob"]) == LIMIT - len(b'{"blob":""}')


async def test_a_chunked_body_over_the_limit_is_refused(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    with pytest.raises(UpstreamError, match=f"larger than {LIMIT} bytes"):
        await forwarder.forward(upstream.tool(f"/chunked/{LIMIT + 1}"), _call())


async def test_the_pool_still_works_after_a_refused_body(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    with pytest.raises(UpstreamError):
        await forwarder.forward(upstream.tool(f"/chunked/{LIMIT * 4}"), _call())
    result = await forwarder.forward(upstream.tool("/echo"), _call({"after": True}))
    assert result.body == {"echo": {"after": True}}


# -- timeouts and unreachable upstreams --------------------------------------


async def test_the_tools_own_timeout_applies(upstream: Upstream, forwarder: Forwarder) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamError, match=r"within 0\.2s") as caught:
        await forwarder.forward(upstream.tool("/slow", timeout_seconds=0.2), _call())
    assert caught.value.timeout is True
    assert time.monotonic() - started < 3  # not the forwarder's default 5 s


async def test_the_default_timeout_applies_without_a_tools_own(upstream: Upstream) -> None:
    fwd = Forwarder(timeout=0.2, max_result_bytes=LIMIT, connections=2)
    await fwd.start()
    try:
        with pytest.raises(UpstreamError) as caught:
            await fwd.forward(upstream.tool("/slow"), _call())
        assert caught.value.timeout is True
        # A tool's longer timeout overrides the short default.
        result = await fwd.forward(upstream.tool("/slow?seconds=0.4", timeout_seconds=5.0), _call())
        assert result.body == {"slept": 0.4}
    finally:
        await fwd.stop()


async def test_an_unreachable_port_is_a_failure_not_a_timeout(
    forwarder: Forwarder, closed_port: int
) -> None:
    tool = make_tool("t", url=f"http://127.0.0.1:{closed_port}/x")
    with pytest.raises(UpstreamError, match="unreachable") as caught:
        await forwarder.forward(tool, _call())
    assert caught.value.timeout is False


async def test_forwarding_before_start_or_after_stop_fails(upstream: Upstream) -> None:
    fwd = Forwarder(timeout=1.0, max_result_bytes=LIMIT, connections=1)
    with pytest.raises(UpstreamError, match="not running"):
        await fwd.forward(upstream.tool("/echo"), _call())
    await fwd.start()
    await fwd.stop()
    with pytest.raises(UpstreamError, match="not running"):
        await fwd.forward(upstream.tool("/echo"), _call())
    assert upstream.received == []


# -- what goes over the wire -------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(
    upstream: Upstream, forwarder: Forwarder, code: int
) -> None:
    with pytest.raises(UpstreamError, match=f"answered HTTP {code}"):
        await forwarder.forward(upstream.tool(f"/redirect/{code}"), _call())
    assert upstream.paths() == [f"/redirect/{code}"]  # /echo never reached


async def test_cookies_set_by_an_upstream_are_never_sent_back(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    await forwarder.forward(upstream.tool("/cookie"), _call())
    await forwarder.forward(upstream.tool("/cookie"), _call())
    await forwarder.forward(upstream.tool("/echo"), _call())
    assert len(upstream.received) == 3
    for received in upstream.received:
        assert "Cookie" not in received.headers


async def test_the_headers_name_the_call_and_json(upstream: Upstream, forwarder: Forwarder) -> None:
    await forwarder.forward(upstream.tool("/echo"), _call(call_id="0123abcd" * 4))
    headers = upstream.received[0].headers
    assert headers["X-Ztgate-Call-Id"] == "0123abcd" * 4
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "application/json"
    assert "User-Agent" not in headers


async def test_each_call_carries_its_own_call_id(upstream: Upstream, forwarder: Forwarder) -> None:
    await asyncio.gather(
        *(
            forwarder.forward(upstream.tool("/echo"), _call({"i": i}, call_id=f"id-{i}"))
            for i in range(5)
        )
    )
    pairs = {(r.headers["X-Ztgate-Call-Id"], orjson.loads(r.body)["i"]) for r in upstream.received}
    assert pairs == {(f"id-{i}", i) for i in range(5)}


async def test_the_body_is_a_reserialisation_not_the_callers_bytes(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    raw = b'{ "b" : 1 ,\n  "a" : [ "\\u00e9" , true ] }'  # what an agent might send
    arguments = orjson.loads(raw)
    await forwarder.forward(upstream.tool("/echo"), _call(arguments))
    sent = upstream.received[0].body
    assert sent != raw
    assert b" " not in sent and b"\\u00e9" not in sent
    assert orjson.loads(sent) == arguments


async def test_the_body_is_the_canonical_form_the_audit_log_hashed(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    """The upstream can check what it got against the recorded arguments_sha256.

    docs/architecture.md: "The forwarder POSTs the canonical arguments to the tool".
    """
    arguments = {"zeta": 1.0, "alpha": [1e16, "é"], "mid": {"y": 2, "x": 0.5}}
    call = _call(arguments)
    await forwarder.forward(upstream.tool("/echo"), call)
    sent = upstream.received[0].body
    assert sent == canonical_json(arguments)
    assert hashlib.sha256(sent).hexdigest() == call.arguments_sha256


async def test_an_upstream_that_compresses_what_the_client_accepts_still_works(
    upstream: Upstream, forwarder: Forwarder
) -> None:
    """Whatever Accept-Encoding the forwarder sends, it must read the answer it invited."""
    result = await forwarder.forward(upstream.tool("/gzip"), _call())
    assert result.body["compressed"] == "maybe"


class _Upstreams:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, tool: Tool, call: ToolCall, task: object = None) -> ToolResult:
        self.calls.append(tool.name)
        return ToolResult(200, {"via": "mcp"})


async def test_an_mcp_tool_goes_to_its_servers_session(forwarder: Forwarder) -> None:
    tool = Tool(name="files.send", upstream_url="mcp://files/send", input_schema={"type": "object"})
    with pytest.raises(UpstreamError, match="its MCP server is not connected"):
        await forwarder.forward(tool, make_call("files.send", {}))
    upstreams = _Upstreams()
    forwarder.mcp = upstreams
    result = await forwarder.forward(tool, make_call("files.send", {}))
    assert result.body == {"via": "mcp"} and upstreams.calls == ["files.send"]
