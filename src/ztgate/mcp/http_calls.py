"""`tools/call` to a Streamable HTTP upstream, on the gateway's pooled HTTP client.

A call over Streamable HTTP is one POST and one JSON-RPC response back, as
JSON or as a short event stream. At the 2026-07-28 revision the request
carries the per-request envelope in `_meta` and the routing headers
(`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, the tool's
`Mcp-Param-*`); on a session of an earlier revision (the handshake era) it
carries the session's `Mcp-Session-Id` and negotiated version instead. The
SDK's client spends more CPU on that exchange (its httpx transport, task
hand-offs, pydantic models both ways) than the gateway spends on all its
checks, so calls take this path: the forwarder's pooled aiohttp session,
which also holds the answer to the result size limit (the SDK's client
reads any size).

Only the call itself is done here. The session (its handshake, its id),
`tools/list`, change notifications, resources and prompts stay with the
SDK's `Client` (`ztgate.mcp.upstream`). The SDK's own helpers build the
headers (`encode_header_value`, `mcp_param_headers`). An upstream that
refuses the headers (`HEADER_MISMATCH`: the call did not run) is retried
once through the SDK's client, which re-lists the tool first.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    encode_header_value,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    HEADER_MISMATCH,
    PROTOCOL_VERSION_META_KEY,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from ztgate import __version__
from ztgate.errors import UpstreamError
from ztgate.models import ToolResult

Post = Callable[[str, bytes, dict[str, str], float], Awaitable[tuple[int, str, bytes]]]

_CLIENT_INFO: Final = {"name": "ztgate", "version": __version__}
MCP_SESSION_ID_HEADER: Final = "mcp-session-id"
_ACCEPT: Final = "application/json, text/event-stream"
# The `_meta` envelope of a call at each 2026-07-28-era version (built once,
# shared by every call's params: they are serialised, never changed).
_ENVELOPES: Final[dict[str, dict[str, Any]]] = {
    version: {
        PROTOCOL_VERSION_META_KEY: version,
        CLIENT_INFO_META_KEY: _CLIENT_INFO,
        CLIENT_CAPABILITIES_META_KEY: {},
    }
    for version in MODERN_PROTOCOL_VERSIONS
}


class HeaderMismatch(UpstreamError):
    """The upstream refused the call's routing headers: the call did not run."""


class HttpToolCaller:
    """Calls the tools of one Streamable HTTP upstream, one POST each."""

    def __init__(
        self,
        url: str,
        protocol_version: str,
        post: Post,
        session_id: Callable[[], str | None] = lambda: None,
    ) -> None:
        """Call the server at `url`, which negotiated `protocol_version`, with `post`;
        `session_id()` is the id of the SDK client's session with it (handshake era)."""
        self.url = url
        self.protocol_version = protocol_version
        self.modern = protocol_version in MODERN_PROTOCOL_VERSIONS
        self._post = post
        self._session_id = session_id
        self._ids = itertools.count(1)
        # Per tool (found once, again after `forget`): the headers every call
        # to it carries, and its schema's `Mcp-Param-*` map.
        self._tools: dict[str, tuple[dict[str, str], dict[tuple[str, ...], str]]] = {}
        self._headers: dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": _ACCEPT,
            "Accept-Encoding": "identity",
            MCP_PROTOCOL_VERSION_HEADER: protocol_version,
        }
        if self.modern:
            self._headers[MCP_METHOD_HEADER] = "tools/call"

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        input_schema: Mapping[str, Any],
        timeout: float,
    ) -> ToolResult:
        """Run tool `name` of the server with `arguments`.

        Raises:
            HeaderMismatch: the server refused the routing headers (nothing ran).
            UpstreamError: unreachable, timed out, an error answer, or an
                answer that is not a `tools/call` result.
        """
        request_id = next(self._ids)
        params = call_params(name, arguments, self.protocol_version)
        if self.modern:
            fixed, header_map = self._tool(name, input_schema)
            headers = dict(fixed)
            if header_map:
                headers.update(mcp_param_headers(header_map, arguments))
        else:
            headers = dict(self._headers)
            if (session := self._session_id()) is not None:
                headers[MCP_SESSION_ID_HEADER] = session
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        )
        started = time.perf_counter()
        status, content_type, answer = await self._post(self.url, body, headers, timeout)
        message = _response(request_id, content_type, answer, status)
        error = message.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else None
            if code == HEADER_MISMATCH:
                raise HeaderMismatch(f"MCP tool {name}: {text}")
            raise UpstreamError(f"MCP tool {name} failed: {text or 'an error'} ({code})")
        return tool_result_of(name, message.get("result"), time.perf_counter() - started)

    def _tool(
        self, name: str, input_schema: Mapping[str, Any]
    ) -> tuple[dict[str, str], dict[tuple[str, ...], str]]:
        """Tool `name`'s fixed headers (its `Mcp-Name` included) and `Mcp-Param-*` map."""
        found = self._tools.get(name)
        if found is None:
            fixed = {**self._headers, MCP_NAME_HEADER: encode_header_value(name)}
            found = self._tools[name] = (fixed, x_mcp_header_map(dict(input_schema)))
        return found

    def forget(self) -> None:
        """Drop what was derived from the tools' schemas (they were listed again)."""
        self._tools.clear()


def call_params(name: str, arguments: Mapping[str, Any], protocol_version: str) -> dict[str, Any]:
    """The params of a `tools/call` on a session at `protocol_version`.

    At the 2026-07-28 revision a request carries its own envelope in `_meta`
    (the version, who the client is, its capabilities); on a session of an
    earlier revision the handshake said all that.
    """
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    envelope = _ENVELOPES.get(protocol_version)
    if envelope is not None:
        params["_meta"] = envelope  # shared: the params are serialised, never changed
    return params


def tool_result_of(name: str, result: Any, elapsed: float) -> ToolResult:
    """A tool result for a `tools/call` result's JSON (its tool errors included, flagged).

    Raises:
        UpstreamError: it is not a complete `CallToolResult`.
    """
    if not isinstance(result, dict):
        raise UpstreamError(f"MCP tool {name} answered no result")
    if result.get("resultType", "complete") != "complete":
        raise UpstreamError(f"MCP tool {name} asked for input, which ztgate does not relay")
    content = result.get("content", [])
    structured = result.get("structuredContent")
    is_error = result.get("isError", False)
    if (
        not isinstance(content, list)
        or not all(isinstance(block, dict) and "type" in block for block in content)
        or not (structured is None or isinstance(structured, dict))
        or not isinstance(is_error, bool)
    ):
        raise UpstreamError(f"MCP tool {name} answered a malformed result")
    body: dict[str, Any] = dict(structured) if structured is not None else {"content": content}
    if is_error:
        body = {"is_error": True, **body}
    return ToolResult(200, body, elapsed_seconds=elapsed)


def _response(request_id: int, content_type: str, answer: bytes, status: int) -> dict[str, Any]:
    """The JSON-RPC response to `request_id` in an answer (JSON, or an event stream)."""
    if content_type == "text/event-stream":
        messages = list(_events(answer))
    elif content_type == "application/json":
        messages = [_json(answer)]
    else:
        raise UpstreamError(f"MCP server answered HTTP {status} {content_type or 'without a body'}")
    for message in messages:
        if (
            isinstance(message, dict)
            and message.get("id") == request_id
            and ("result" in message or "error" in message)
        ):
            return message
    raise UpstreamError(f"MCP server answered HTTP {status} without the call's response")


def _events(stream: bytes) -> list[Any]:
    """The JSON data of each `message` event of a server-sent event stream."""
    found = []
    for block in stream.replace(b"\r\n", b"\n").split(b"\n\n"):
        event, data = b"message", []
        for line in block.split(b"\n"):
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"event":
                event = value
            elif field == b"data":
                data.append(value)
        if data and event == b"message":
            found.append(_json(b"\n".join(data)))
    return found


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("MCP server answered malformed JSON") from exc
