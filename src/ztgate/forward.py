"""Forwarding an allowed call to its tool's HTTP upstream.

aiohttp, chosen by measurement (see docs/performance.md): with one pooled
session it held its throughput under concurrency where httpx's pool collapsed
(encode/httpx#3215). The upstream contract: POST the arguments as a JSON
object; a 2xx JSON answer is the result.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from ztgate.errors import UpstreamError
from ztgate.mcp.posting import Poster
from ztgate.models import ToolCall, ToolResult
from ztgate.tools.model import Tool

# identity: a compressed answer would be refused as invalid JSON (auto_decompress
# is off), and max_result_bytes must count the bytes that arrive.
_HEADERS = CIMultiDict(
    {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
    }
)


class Forwarder:
    """One pooled HTTP client session for every upstream."""

    def __init__(self, *, timeout: float, max_result_bytes: int, connections: int) -> None:
        self._timeout = timeout
        self._max_result_bytes = max_result_bytes
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._urls: dict[str, URL] = {}  # parsed once per upstream, not per call
        self._poster: Poster | None = None
        # The MCP upstreams (ztgate.mcp.upstream): tools at mcp://<server>/<tool>.
        self.mcp: Any = None

    async def start(self) -> None:
        """Open the connection pool."""
        connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies must not leak between calls
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        self._poster = Poster(
            max_result_bytes=self._max_result_bytes, connections=self._connections
        )

    async def stop(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    async def forward(self, tool: Tool, call: ToolCall, task: Any = None) -> ToolResult:
        """POST the call's arguments to the tool and return its answer (`task`: whom an MCP
        tool's per-task server instance runs for, `ztgate.mcp.task_instances.TaskBinding`).

        Raises:
            UpstreamError: connection failure, timeout, non-2xx status, a body
                over the size limit, or a body that is not JSON.
        """
        if self._session is None:
            raise UpstreamError("the forwarder is not running")
        if tool.upstream_url.startswith("mcp://"):
            if self.mcp is None:
                raise UpstreamError(f"tool {tool.name}: its MCP server is not connected")
            result: ToolResult = await self.mcp.call(tool, call, task)
            return result
        timeout = self._timeouts.get(tool.timeout_seconds or self._timeout)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=tool.timeout_seconds or self._timeout)
            self._timeouts[timeout.total or self._timeout] = timeout
        headers = CIMultiDict(_HEADERS)
        headers["X-Ztgate-Call-Id"] = call.call_id
        url = self._urls.get(tool.upstream_url)
        if url is None:
            url = self._urls[tool.upstream_url] = URL(tool.upstream_url)
        started = time.perf_counter()
        try:
            async with self._session.post(
                url,
                # Exactly the bytes the audit log hashed (RFC 8785), so the tool
                # can check arguments_sha256 itself.
                data=call.canonical_arguments,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read(response)
                status = response.status
                content_type = response.content_type
        except TimeoutError as exc:
            raise UpstreamError(
                f"tool {tool.name!r} did not answer within {timeout.total:g}s", timeout=True
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"tool {tool.name!r} is unreachable: {type(exc).__name__}") from exc
        if not 200 <= status < 300:
            raise UpstreamError(f"tool {tool.name!r} answered HTTP {status}")
        return ToolResult(
            status=status,
            body=_decode(tool.name, body, content_type),
            content_type=content_type,
            elapsed_seconds=time.perf_counter() - started,
        )

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, str, bytes]:
        """POST `body` on a kept-alive connection: the status, content type and body of the answer.

        The answer is held to the result size limit like a tool's. For
        callers that speak another protocol over HTTP (`ztgate.mcp.http_calls`),
        on connections of their own (`ztgate.mcp.posting`: a small answer
        costs less there than on the aiohttp session).

        Raises:
            UpstreamError: connection failure, timeout (`timeout=True`), or
                an answer over the size limit.
        """
        if self._poster is None:
            raise UpstreamError("the forwarder is not running")
        return await self._poster.post(url, body, headers, timeout)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None:
            if declared > self._max_result_bytes:
                raise UpstreamError(f"result is larger than {self._max_result_bytes} bytes")
            return await response.read()  # aiohttp stops at Content-Length
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65536):
            size += len(chunk)
            if size > self._max_result_bytes:
                raise UpstreamError(f"result is larger than {self._max_result_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _decode(tool: str, body: bytes, content_type: str) -> Any:
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UpstreamError(f"tool {tool!r} answered {content_type or 'no content type'}, not JSON")
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"tool {tool!r} answered invalid JSON") from exc
