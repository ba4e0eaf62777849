"""The MCP front door's fast path answers exactly what the SDK's app would, or lets the SDK answer.

Every request is sent twice over the same in-process gateway: to the fast
path (what `/mcp` serves) and to the SDK's app alone. The answers must be
the same (but for the call's id), and the fast path must take the common
`tools/call` itself and hand everything else to the SDK.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Receive, Scope, Send

from ztgate.cli.toml import array_of_tables
from ztgate.gateway import Gateway
from ztgate.mcp.fastpath import McpCallFastPath
from ztgate.mcp.front import McpFrontDoor
from ztgate.testing import make_settings

VERSION = "2026-07-28"
BASE = "http://127.0.0.1:8470"
MAX_BODY = 4096
QUERY = {
    "type": "object",
    "properties": {"q": {"type": "string", "maxLength": 64}},
    "required": ["q"],
    "additionalProperties": False,
}
# A tool whose argument is mirrored in a header (`Mcp-Param-Region`).
ROUTED = {
    "type": "object",
    "properties": {"region": {"type": "string", "maxLength": 8, "x-mcp-header": "Region"}},
    "required": ["region"],
    "additionalProperties": False,
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
}


class Counted:
    """An ASGI app that counts the requests it is given (the SDK's, here)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.requests += 1
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def echo_upstream() -> AsyncIterator[str]:
    """An upstream tool on loopback, served by the running event loop."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    app = web.Application()
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


Opener = Callable[[], "contextlib.AbstractAsyncContextManager[Pair]"]


class Pair:
    """A client of the fast path and one of the SDK's app alone, over the same gateway."""

    def __init__(self, delegated: Counted, fast: httpx.AsyncClient, sdk: httpx.AsyncClient) -> None:
        self.delegated = delegated
        self.fast = fast
        self.sdk = sdk

    async def both(
        self, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[tuple[Any, ...], tuple[Any, ...], bool]:
        """Both answers (normalised), and whether the fast path answered itself."""
        sent = {**HEADERS, **(headers or {})}
        before = self.delegated.requests
        fast = await self.fast.post("/mcp", content=body, headers=sent)
        answered_here = self.delegated.requests == before
        sdk = await self.sdk.post("/mcp", content=body, headers=sent)
        return normalised(fast), normalised(sdk), answered_here


HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": VERSION,
    "mcp-method": "tools/call",
}


@pytest.fixture
def opened(tmp_path: Path) -> Callable[[], contextlib.AbstractAsyncContextManager[Pair]]:
    """Opens the pair of clients over a started gateway (in the test's own task:
    the SDK's session manager must be left in the task it was entered in)."""

    @contextlib.asynccontextmanager
    async def open_pair() -> AsyncIterator[Pair]:
        async with echo_upstream() as upstream_base, _pair(tmp_path, upstream_base) as pair:
            yield pair

    return open_pair


@contextlib.asynccontextmanager
async def _pair(tmp_path: Path, upstream_base: str) -> AsyncIterator[Pair]:
    tools = [
        {"name": n, "url": f"{upstream_base}/echo", "risk": r, "input_schema": schema}
        for n, r, schema in (("lookup", "read", QUERY), ("send", "write", QUERY))
    ]
    tools.append(
        {"name": "route", "url": f"{upstream_base}/echo", "risk": "read", "input_schema": ROUTED}
    )
    toml = (
        f'[gateway]\nauthentication = "off"\nmax_body_bytes = {MAX_BODY}\n\n'
        "[mcp]\nenabled = true\n\n" + array_of_tables("tools", tools)
    )
    gateway = Gateway.from_settings(make_settings(tmp_path, toml))
    await gateway.start()
    front = McpFrontDoor(gateway)
    fast = McpCallFastPath(front)
    counted = Counted(fast.sdk_app)
    fast.sdk_app = counted
    try:
        async with front.running(), contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                        base_url=BASE,
                    )
                )
                for app in (fast, front.app)
            ]
            yield Pair(counted, *clients)
    finally:
        await gateway.stop()


def call(name: str = "lookup", arguments: Any = None, **extra_meta: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": {"q": "weather"} if arguments is None else arguments,
            "_meta": {**ENVELOPE, **extra_meta},
        },
    }


def named(name: str) -> dict[str, str]:
    return {"mcp-name": name}


def normalised(response: httpx.Response) -> tuple[Any, ...]:
    """Status, content type and body, with each call's own id replaced."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return response.status_code, response.headers.get("content-type"), _without_call_ids(body)


def _without_call_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "<call>" if k in {"call_id", "ztgate/call_id"} else _without_call_ids(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_call_ids(v) for v in value]
    if isinstance(value, str) and "call_id" in value:
        return "<text naming a call>"
    return value


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (call(), "allowed"),
        (call("send", {"q": "to bob"}), "allowed, a write"),
        (call("lookup", {"q": 5}), "denied by the schema check"),
        (call("lookup", {}), "denied: a required argument is missing"),
        (call("unknown"), "denied: no such tool"),
        (call(**{"ztgate/justification": 5}), "a malformed _meta value: a JSON-RPC error"),
        (call("lookup", {"q": {"deep": {"er": {"and": {"deeper": {"still": 1}}}}}}), "deep"),
    ],
)
async def test_a_plain_call_is_answered_here_as_the_sdk_answers_it(
    opened: Opener, body: dict[str, Any], why: str
) -> None:
    name = body["params"]["name"]
    async with opened() as pair:
        fast, sdk, answered_here = await pair.both(orjson.dumps(body), named(name))
    assert answered_here, why
    assert fast == sdk, why


async def test_an_allowed_call_carries_the_result_and_the_server_stamp(opened: Opener) -> None:
    async with opened() as pair:
        fast, _, _ = await pair.both(orjson.dumps(call()), named("lookup"))
    status, content_type, body = fast
    assert (status, content_type) == (200, "application/json")
    result = body["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"echo": {"q": "weather"}}
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "ztgate"


@pytest.mark.parametrize(
    ("body", "headers", "why"),
    [
        ({**call(), "method": "tools/list"}, {"mcp-method": "tools/list"}, "another method"),
        (call(), {"mcp-protocol-version": "2025-06-18"}, "a handshake-era request"),
        (call(), {"mcp-protocol-version": "1999-01-01"}, "an unknown version"),
        ([call()], named("lookup"), "a batch"),
        ({**call(), "extra": 1}, named("lookup"), "a member a request does not have"),
        ({**call(), "id": True}, named("lookup"), "an id that is not a string or number"),
        ({**call(), "jsonrpc": "1.0"}, named("lookup"), "not JSON-RPC 2.0"),
        ({k: v for k, v in call().items() if k != "id"}, named("lookup"), "a notification"),
        (call(progressToken="p1"), named("lookup"), "a progress token: the SDK's to honour"),
        (call(), {"mcp-name": "send"}, "Mcp-Name says another tool"),
        (call(), {"mcp-method": "tools/list", "mcp-name": "lookup"}, "Mcp-Method disagrees"),
        (call(), {}, "no Mcp-Name header"),
        (call(), {**named("lookup"), "host": "evil.example"}, "a DNS-rebinding Host"),
        (call(), {**named("lookup"), "origin": "http://evil.example"}, "a foreign Origin"),
        (call(), {**named("lookup"), "content-type": "text/plain"}, "not JSON"),
        (
            call(),
            {**named("lookup"), "accept": "text/event-stream"},
            "a client that can't take JSON",
        ),
        (
            call(arguments={"q": "x" * MAX_BODY}),
            named("lookup"),
            "a body over the limit",
        ),
    ],
)
async def test_anything_else_is_the_sdks_to_answer(
    opened: Opener, body: Any, headers: dict[str, str], why: str
) -> None:
    async with opened() as pair:
        fast, sdk, answered_here = await pair.both(orjson.dumps(body), headers)
    assert not answered_here, why
    assert fast == sdk, why


@pytest.mark.parametrize(
    ("name", "arguments", "headers", "here", "why"),
    [
        ("route", {"region": "eu"}, {"mcp-param-region": "eu"}, True, "the header matches"),
        ("route", {"region": "eu"}, {"mcp-param-region": "us"}, False, "the header disagrees"),
        ("route", {"region": "eu"}, {}, False, "the header is missing"),
        ("route", {"region": 5}, {"mcp-param-region": "5"}, True, "rendered alike (schema: no)"),
        ("lookup", {"q": "w"}, {"mcp-param-region": "eu"}, True, "a tool with no such header"),
        ("lookup", {"q": "w"}, {}, True, "a tool with no headers at all"),
    ],
)
async def test_mcp_param_headers_are_held_to_the_tools_schema_as_the_sdk_holds_them(
    opened: Opener,
    name: str,
    arguments: dict[str, Any],
    headers: dict[str, str],
    here: bool,
    why: str,
) -> None:
    async with opened() as pair:
        for _ in range(2):  # the second time from what the first found about the schema
            fast, sdk, answered_here = await pair.both(
                orjson.dumps(call(name, arguments)), {**named(name), **headers}
            )
            assert answered_here is here, why
            assert fast == sdk, why


async def test_a_malformed_body_is_the_sdks_to_answer(opened: Opener) -> None:
    async with opened() as pair:
        fast, sdk, answered_here = await pair.both(b'{"jsonrpc": "2.0", "id": 1,', named("lookup"))
    assert not answered_here
    assert fast == sdk
    assert fast[0] == 400


async def test_a_get_is_the_sdks_to_answer(opened: Opener) -> None:
    async with opened() as pair:
        fast = await pair.fast.get("/mcp", headers=HEADERS)
        assert pair.delegated.requests == 1
        assert normalised(fast) == normalised(await pair.sdk.get("/mcp", headers=HEADERS))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def near_calls(draw: st.DrawFn) -> dict[str, Any]:
    """A plain call with one part changed: a member replaced, dropped or added."""
    body = call(arguments={"q": draw(st.text(max_size=12))})
    where = draw(st.sampled_from(["top", "params", "meta"]))
    target: dict[str, Any] = {
        "top": body,
        "params": body["params"],
        "meta": body["params"]["_meta"],
    }[where]
    key = draw(st.sampled_from([*target.keys(), "extra"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(_json)
    return body


@contextlib.contextmanager
def in_a_thread(opened: Opener) -> Iterator[tuple[Pair, asyncio.AbstractEventLoop]]:
    """The pair, open on an event loop of its own thread (hypothesis drives sync tests)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ready: concurrent.futures.Future[Pair] = concurrent.futures.Future()
    done = asyncio.Event()

    async def hold() -> None:
        try:
            async with opened() as pair:
                ready.set_result(pair)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    held = asyncio.run_coroutine_threadsafe(hold(), loop)
    try:
        yield ready.result(timeout=30), loop
    finally:
        loop.call_soon_threadsafe(done.set)
        held.result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_a_changed_call_gets_the_same_answer_on_either_path(opened: Opener) -> None:
    with in_a_thread(opened) as (pair, loop):

        @settings(max_examples=100, deadline=None)
        @given(body=near_calls())
        def same(body: dict[str, Any]) -> None:
            answers = asyncio.run_coroutine_threadsafe(
                pair.both(orjson.dumps(body), named("lookup")), loop
            ).result(timeout=30)
            assert answers[0] == answers[1]

        same()


# -- the fast path's own shortcuts hold to the SDK's checks ------------------------------

_header_names = st.sampled_from(
    [
        b"mcp-name",
        b"MCP-Name",
        b"mcp-method",
        b"Mcp-Method",
        b"mcp-protocol-version",
        b"accept",
        b"Accept",
        b"host",
        b"origin",
        b"content-type",
        b"content-length",
        b"mcp-param-region",
        b"Mcp-Param-X",
        b"x-other",
        b"mcp-n\xc0me",
        b"MCP-NAM\xc9",
    ]
)


@settings(max_examples=300, deadline=None)
@given(raw=st.lists(st.tuples(_header_names, st.binary(max_size=8).map(bytes)), max_size=8))
def test_one_header_scan_reads_what_the_sdks_readers_read(
    raw: list[tuple[bytes, bytes]],
) -> None:
    from mcp.shared.inbound import find_duplicated_routing_header
    from starlette.datastructures import Headers

    from ztgate.mcp.fastpath import _READ, _HeaderScan

    scan = _HeaderScan(raw)
    headers = Headers(raw=raw)
    for name in _READ:
        assert scan.found.get(name.decode()) == headers.get(name.decode())
    pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    assert scan.duplicated == (find_duplicated_routing_header(pairs) is not None)
    assert scan.has_param == any(k.startswith("mcp-param-") for k in headers)


def test_bytes_and_latin_1_text_lowercase_alike_into_ascii() -> None:
    # The scan lowers header names as bytes; the SDK lowers them as latin-1 text.
    for byte in range(256):
        char = bytes([byte]).decode("latin-1")
        assert (char.lower().isascii()) == (byte < 128)
        if byte < 128:
            assert char.lower().encode() == bytes([byte]).lower()


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "application/json",
        "text/event-stream",
        "*/*",
        "application/*;q=0.1",
        "Application/JSON ; q=1, text/html",
        "text/*",
        "application/jsonx",
    ],
)
def test_the_accept_answer_is_the_sdks_every_time(accept: str) -> None:
    from mcp.server.streamable_http import check_accept_headers
    from starlette.requests import Request

    from ztgate.mcp.fastpath import _accepts_json

    scope = {"type": "http", "headers": [(b"accept", accept.encode())] if accept else []}
    expected, _ = check_accept_headers(Request(scope))
    assert _accepts_json(accept) is expected
    assert _accepts_json(accept) is expected  # kept


_envelope_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.just(1.0),
    st.just(VERSION),
    st.just("2025-06-18"),
    st.just({}),
    st.just({"name": "c", "version": "1"}),
    st.just({"name": "c"}),
    st.just({"name": 5, "version": "1"}),
    st.just({"roots": {}}),
    st.just({"roots": 5}),
    st.just({"sampling": {}}),
    st.just({"sampling": []}),
    st.just({"experimental": {"x": 1}}),
    st.just({"experimental": {"x": {}}}),
    st.just([]),
)


@settings(max_examples=400, deadline=None)
@given(
    envelope=st.dictionaries(st.sampled_from(list(ENVELOPE)), _envelope_values, max_size=3),
    arguments=st.one_of(st.none(), _json.filter(lambda v: isinstance(v, dict))),
    extras=st.dictionaries(
        st.sampled_from(["ztgate/warrant", "ztgate/proof", "ztgate/justification"]), _json
    ),
)
def test_params_pass_the_shortcut_exactly_when_they_pass_the_sdks_model(
    envelope: dict[str, Any], arguments: dict[str, Any] | None, extras: dict[str, Any]
) -> None:
    # Only the envelope decides; an envelope passed once is kept: ask twice.
    from mcp_types.methods import validate_client_request
    from pydantic import ValidationError

    from ztgate.mcp.fastpath import _valid_params

    meta = {**envelope, **extras}
    params: dict[str, Any] = {"name": "lookup", "_meta": meta}
    if arguments is not None:
        params["arguments"] = arguments
    try:
        validate_client_request("tools/call", VERSION, params)
        expected = True
    except ValidationError:
        expected = False
    assert _valid_params(VERSION, meta) is expected
    assert _valid_params(VERSION, meta) is expected


async def test_a_passed_host_does_not_let_a_foreign_one_through(opened: Opener) -> None:
    async with opened() as pair:
        _, _, here = await pair.both(orjson.dumps(call()), named("lookup"))
        assert here
        for headers in (
            {"host": "evil.example"},
            {"origin": "http://evil.example"},
            {"content-type": "text/plain"},
        ):
            fast, sdk, here = await pair.both(orjson.dumps(call()), {**named("lookup"), **headers})
            assert not here, headers
            assert fast == sdk, headers


async def test_each_answer_carries_the_servers_stamp_unchanged(opened: Opener) -> None:
    async with opened() as pair:
        for _ in range(2):
            fast, sdk, _ = await pair.both(orjson.dumps(call()), named("lookup"))
            stamp = fast[2]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]
            assert stamp == sdk[2]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]
            assert stamp["name"] == "ztgate"
            assert stamp["version"]


async def test_a_bad_envelope_after_a_good_one_is_the_sdks_to_answer(opened: Opener) -> None:
    async with opened() as pair:
        _, _, here = await pair.both(orjson.dumps(call()), named("lookup"))
        assert here
        bad = call()
        bad["params"]["_meta"]["io.modelcontextprotocol/clientInfo"] = {"name": "test"}
        fast, sdk, here = await pair.both(orjson.dumps(bad), named("lookup"))
        assert not here
        assert fast == sdk
