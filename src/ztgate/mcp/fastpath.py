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
from typing import Any, Final

import orjson
from mcp.server.runner import modern_error_data
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PARAM_HEADER_PREFIX,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request (or hand it to the SDK's app)."""
        if scope["method"] != "POST" or not _modern(scope):
            await self.sdk_app(scope, receive, send)
            return
        request = Request(scope, receive)
        if await self._security.validate_request(request, is_post=True) is not None:
            await self.sdk_app(scope, receive, send)  # the SDK words the refusal
            return
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._limit):
            await self.sdk_app(scope, receive, send)
            return
        body, complete = await _read(receive, self._limit)
        replay = _replaying(body, complete, receive)
        found = _plain_tool_call(body, request) if complete else None
        if found is None:
            await self.sdk_app(scope, replay, send)
            return
        request_id, name, arguments, meta = found
        if arguments or any(k.startswith(_PARAM_PREFIX) for k in request.headers):
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
            SERVER_INFO_META_KEY: self.front.server.server_info_stamp,
        }
        await _answer(send, (200, {"jsonrpc": "2.0", "id": request_id, "result": result}))

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


def _plain_tool_call(
    body: bytes, request: Request
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
    raw_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
    if find_duplicated_routing_header(raw_headers) is not None:
        return None
    has_json, _ = check_accept_headers(request)
    if not has_json:
        return None
    verdict = classify_inbound_request(decoded, headers=request.headers)
    if isinstance(verdict, InboundLadderRejection):
        return None
    try:  # the SDK's own check of the params' shape at this version (about 12 µs)
        validate_client_request("tools/call", verdict.protocol_version, params)
    except ValidationError:
        return None
    return request_id, name, arguments, meta


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
