"""The hot path of the MCP front door: a 2026-07-28 `tools/call` POST answered directly.

A `tools/call` is what agents send most, and the SDK's generic request
machinery (the per-request connection, the handler kernel and its
middleware, pydantic models in and out) cost more than the gateway's own
checks. A request of the one common shape is answered here instead: the
SDK's own transport checks (`TransportSecurityMiddleware`, the Accept
rule, the routing headers, the envelope ladder `classify_inbound_request`,
the `Mcp-Param-*` headers against the tool's schema) run as they would in
the SDK; the call runs through `McpFrontDoor.run_call`, the one call path
of the SDK handler too (and of `POST /v1/calls`: `Gateway.handle`).

Anything else — another method, a handshake-era request, a body of an
unusual shape, any header or envelope the SDK would refuse — goes to the
SDK's app untouched (the body replayed), which answers it and words its
errors. So this path can only ever answer what the SDK would have
answered the same way; `tests/unit/mcp/test_fastpath.py` holds the two to
the same answers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, cast

import orjson
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PARAM_HEADER_PREFIX,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_invalid_x_mcp_header,
    validate_mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
)
from mcp_types.methods import validate_client_request
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ztgate.mcp.front import McpFrontDoor, tool_result_wire
from ztgate.mcp.meta import KEYS as ZTGATE_META_KEYS

logger = logging.getLogger(__name__)

_VERSION_HEADER: Final = b"mcp-protocol-version"
_MODERN: Final = frozenset(v.encode() for v in MODERN_PROTOCOL_VERSIONS)
_META_KEYS: Final = ZTGATE_META_KEYS | {
    PROTOCOL_VERSION_META_KEY,
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
}
_PARAM_PREFIX: Final = MCP_PARAM_HEADER_PREFIX.lower()
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
# The headers this path reads, by the exact (lowercase) name Starlette's
# `Headers.get` matches (the first line of that name wins, as there).
_ROUTING: Final = (MCP_PROTOCOL_VERSION_HEADER, MCP_METHOD_HEADER, MCP_NAME_HEADER)
_READ: Final = frozenset(
    name.encode("latin-1")
    for name in ("content-type", "host", "origin", "content-length", "accept", *_ROUTING)
)
# Routing headers, matched as the SDK's duplicate check matches them (any case):
# bytes.lower() and the SDK's latin-1 str.lower() agree on these ASCII names.
_ROUTING_BYTES: Final = frozenset(name.encode("latin-1") for name in _ROUTING)
_PARAM_PREFIX_BYTES: Final = _PARAM_PREFIX.encode("latin-1")
_ENVELOPE_KEYS: Final = (
    PROTOCOL_VERSION_META_KEY,
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
)
# The exact-input caches below (`_Passed`) hold inputs the SDK's own checks
# passed, at most this many of each (then they start again), each of at
# most this many characters.
_CACHED: Final = 1024
_MAX_KEY_CHARS: Final = 4096


class _Passed:
    """Inputs one of the SDK's checks passed, exactly: asked again, they pass again."""

    __slots__ = ("_keys",)

    def __init__(self) -> None:
        self._keys: set[Any] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: Any, chars: int) -> None:
        """Remember that `key` (of `chars` characters) passed; not if it is too long."""
        if chars > _MAX_KEY_CHARS:
            return
        if len(self._keys) >= _CACHED:
            self._keys.clear()
        self._keys.add(key)


class McpCallFastPath:
    """ASGI for `/mcp`: the common `tools/call` answered here, everything else by the SDK app."""

    def __init__(self, front: McpFrontDoor) -> None:
        """Answer for `front`, whose SDK app takes every request this path does not."""
        self.front = front
        self.sdk_app: ASGIApp = front.app
        self._security = TransportSecurityMiddleware(front.transport_security)
        self._limit = front.gateway.settings.gateway.max_body_bytes
        # Per tool: the schema it was found for, and the schema if it has headers to check.
        self._annotated: dict[str, tuple[Mapping[str, Any], dict[str, Any] | None]] = {}
        # The SDK computes its server stamp once per server and hands out deep
        # copies; the answers here are serialised at once, never changed.
        self._stamp = front.server.server_info_stamp
        # (Content-Type, Host, Origin) the SDK's transport checks passed.
        self._secure = _Passed()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (or hand it to the SDK's app)."""
        if scope["method"] != "POST" or not _modern(scope):
            await self.sdk_app(scope, receive, send)
            return
        request = Request(scope, receive)
        headers = _HeaderScan(scope["headers"])
        if not await self._transport_allows(request, headers):
            await self.sdk_app(scope, receive, send)  # the SDK words the refusal
            return
        declared = headers.found.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self.sdk_app(scope, receive, send)
            return
        body, complete = await _read(receive, self._limit)
        replay = _replaying(body, complete, receive)
        found = _plain_tool_call(body, headers) if complete else None
        if found is None:
            await self.sdk_app(scope, replay, send)
            return
        request_id, name, arguments, meta = found
        if arguments or headers.has_param:
            schema = self._annotated_schema(name)
            if schema is not None and validate_mcp_param_headers(
                schema, arguments, request.headers
            ):
                await self.sdk_app(scope, replay, send)
                return
        try:
            report = await self.front.run_call(request, meta, name, arguments)
        except Exception as exc:  # MCPError: as the SDK words it; anything else an internal error
            await _answer(send, _error(request_id, exc))
            return
        result = tool_result_wire(report)
        result["resultType"] = "complete"
        result["_meta"] = {
            **result.get("_meta", {}),
            SERVER_INFO_META_KEY: self._stamp,
        }
        await _answer(send, (200, {"jsonrpc": "2.0", "id": request_id, "result": result}))

    async def _transport_allows(self, request: Request, headers: _HeaderScan) -> bool:
        """Whether the SDK's transport checks (Content-Type, Host, Origin) pass.

        They read those three headers only: a triple they passed once is
        passed again without running them (an exact-input cache).
        """
        found = headers.found
        key = (found.get("content-type"), found.get("host"), found.get("origin"))
        if key in self._secure:
            return True
        if await self._security.validate_request(request, is_post=True) is not None:
            return False
        self._secure.add(key, sum(len(v) for v in key if v is not None))
        return True

    def _annotated_schema(self, name: str) -> dict[str, Any] | None:
        """Tool `name`'s input schema if it has `Mcp-Param-*` headers to check, else None.

        The SDK's check walks the schema for `x-mcp-header` annotations on
        every call and passes any request when there are none (most tools);
        which it is is found once per tool (again when the catalog changes).
        """
        entry = self.front.gateway.catalog.get(name)
        if entry is None:
            return None
        source = entry.spec.input_schema
        known = self._annotated.get(name)
        if known is None or known[0] is not source:
            schema = dict(source)
            checked = find_invalid_x_mcp_header(schema) is None and bool(x_mcp_header_map(schema))
            if len(self._annotated) > 4096:
                self._annotated.clear()
            known = self._annotated[name] = (source, schema if checked else None)
        return known[1]


def _modern(scope: Scope) -> bool:
    """Whether the request names a 2026-07-28-era protocol version (once)."""
    found = [value for key, value in scope["headers"] if key == _VERSION_HEADER]
    return len(found) == 1 and found[0] in _MODERN


class _HeaderScan:
    """One pass over a request's raw header lines: what this path reads of them.

    `found` holds the first value of each header in `_READ` under its exact
    name, which is what Starlette's `Headers.get` (the SDK's reader) answers;
    `duplicated` is whether a routing header comes twice in any case (the
    SDK's `find_duplicated_routing_header`); `has_param` whether any header is
    named `mcp-param-*` (as `Headers` iterates names: decoded, not lowered).
    """

    __slots__ = ("duplicated", "found", "has_param")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        found: dict[str, str] = {}
        routing: set[bytes] = set()
        self.duplicated = False
        self.has_param = False
        for key, value in raw:
            if key in _READ:
                name = key.decode("latin-1")
                if name not in found:
                    found[name] = value.decode("latin-1")
            lowered = key.lower()
            if lowered in _ROUTING_BYTES:
                if lowered in routing:
                    self.duplicated = True
                routing.add(lowered)
            elif key.startswith(_PARAM_PREFIX_BYTES):
                self.has_param = True
        self.found = found


def _plain_tool_call(
    body: bytes, headers: _HeaderScan
) -> tuple[str | int, str, dict[str, Any], dict[str, Any]] | None:
    """The id, tool, arguments and `_meta` of a plain `tools/call`; None for anything else.

    Plain: one JSON-RPC request object with exactly the members a request
    has, `params` with a string `name`, object `arguments` and a `_meta`
    holding the envelope and ztgate's keys only; the SDK's header and
    envelope rules all pass.
    """
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict) or decoded.keys() != {"jsonrpc", "id", "method", "params"}:
        return None
    request_id, params = decoded["id"], decoded["params"]
    if (
        decoded["jsonrpc"] != "2.0"
        or decoded["method"] != "tools/call"
        or isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or not isinstance(params, dict)
        or not params.keys() <= {"name", "arguments", "_meta"}
    ):
        return None
    name, arguments, meta = params.get("name"), params.get("arguments", {}), params.get("_meta")
    if not isinstance(name, str) or not isinstance(arguments, dict) or not isinstance(meta, dict):
        return None
    if not meta.keys() <= _META_KEYS:
        return None  # progress tokens, log levels, ...: the SDK's
    if not isinstance(meta.get(CLIENT_INFO_META_KEY, {}), dict) or not isinstance(
        meta.get(CLIENT_CAPABILITIES_META_KEY), dict
    ):
        return None
    if headers.duplicated:  # find_duplicated_routing_header
        return None
    if not _accepts_json(headers.found.get("accept", "")):
        return None
    # The ladder reads the three routing headers only (by these exact names).
    verdict = classify_inbound_request(decoded, headers=headers.found)
    if isinstance(verdict, InboundLadderRejection):
        return None
    if not _valid_params(verdict.protocol_version, meta):
        return None
    return request_id, name, arguments, meta


# Accept header values the SDK's rule passed.
_ACCEPTED = _Passed()


class _AcceptOnly:
    """What `check_accept_headers` reads of a request: its `accept` header."""

    __slots__ = ("headers",)

    def __init__(self, accept: str) -> None:
        self.headers = {"accept": accept}


def _accepts_json(accept: str) -> bool:
    """The SDK's `check_accept_headers` JSON answer for `accept` (a pass kept per exact value)."""
    if accept in _ACCEPTED:
        return True
    accepted, _ = check_accept_headers(cast(Request, _AcceptOnly(accept)))
    if accepted:
        _ACCEPTED.add(accept, len(accept))
    return accepted


# The envelopes (as JSON) whose `tools/call` params the SDK's model passed.
_VALID_ENVELOPES = _Passed()


def _valid_params(version: str, meta: Mapping[str, Any]) -> bool:
    """Whether the SDK's `validate_client_request` passes a plain call's params at `version`.

    Of a plain call's params (`_plain_tool_call`: a string `name`, an object
    or no `arguments`, `_meta` keys among the envelope's and ztgate's) the
    model reads only the envelope's values: `arguments` is any object and
    ztgate's keys are `_meta` extras of any value. So the SDK's answer for
    the name-less, argument-less params of the same envelope is its answer
    for these; it is kept per exact envelope (its JSON: equal JSON, equal
    Python values), passes only.
    """
    envelope = {key: meta[key] for key in _ENVELOPE_KEYS if key in meta}
    key: bytes | None
    try:
        key = version.encode() + b"\0" + orjson.dumps(envelope)
    except (TypeError, UnicodeEncodeError):  # not JSON (never so for a body orjson read)
        key = None
    if key is not None and key in _VALID_ENVELOPES:
        return True
    try:  # the SDK's own check of the params' shape at this version (about 8 µs)
        validate_client_request("tools/call", version, {"name": "", "_meta": envelope})
    except ValidationError:
        return False
    if key is not None:
        _VALID_ENVELOPES.add(key, len(key))
    return True


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body read so far, and whether it is all of it (False: over `limit`, or cut off)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # the client went away: the SDK sees that too
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            return b"".join(chunks), False
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replaying(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A `receive` that gives `body` again first (then whatever is still to come)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not complete}
        return await receive()

    return replay


def _error(request_id: str | int, exc: Exception) -> tuple[int, dict[str, Any]]:
    error = modern_error_data(exc).model_dump(mode="json", by_alias=True, exclude_none=True)
    status = ERROR_CODE_HTTP_STATUS.get(error["code"], 200)
    return status, {"jsonrpc": "2.0", "id": request_id, "error": error}


async def _answer(send: Send, answer: tuple[int, Mapping[str, Any]]) -> None:
    status, message = answer
    body = orjson.dumps(message)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
