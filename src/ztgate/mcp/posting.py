"""POSTs to Streamable HTTP upstreams on kept-alive HTTP/1.1 connections of our own.

An MCP `tools/call` to a Streamable HTTP server is one small POST and one
small answer. aiohttp's client spends more CPU on that exchange (its request
and response objects, timers, payload writers, stream readers) than the
exchange costs; here a request is one write of bytes built in one go, and
the answer is parsed by httptools (the parser uvicorn serves with) as it
arrives. What the forwarder's aiohttp session guaranteed holds here too:
the answer is held to the result size limit (a declared length above it is
refused before the body is read), redirects are not followed, no cookies
are kept, nothing is decompressed, and a request that does not finish in
time fails as a timeout (its connection is closed, never reused).

One connection carries one request at a time; idle connections are kept
per upstream (`scheme, host, port`) for the next request, at most
`connections` at once in all.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlsplit

import httptools

from ztgate.errors import UpstreamError

_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"  # as aiohttp says for none
_MAX_IDLE_PER_ORIGIN: Final = 32
# What may stand in a request target as it is (RFC 3986's reserved and
# unreserved characters, and escapes already made); anything else is escaped.
_PATH_SAFE: Final = "/%:@!$&'()*+,;=-._~?"

Origin = tuple[str, str, int]


class _Exchange(asyncio.Protocol):
    """One connection to an upstream: a request written, its answer parsed as it arrives."""

    def __init__(self, limit: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self._limit = limit
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, str, bytes]] | None = None
        self._reset()

    def _reset(self) -> None:
        self._content_type = _DEFAULT_CONTENT_TYPE
        self._header: bytes | None = None
        self._delimited = False  # by a length or chunks (else by the connection's end)
        self._chunks: list[bytes] = []
        self._size = 0
        self._headers_done = False

    # -- a request ------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[tuple[int, str, bytes]]:
        """Write `request`; the future of its answer's status, content type and body."""
        if self.transport is None or self.closed or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._reset()
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._answer

    def abort(self) -> None:
        """Close at once (a timeout, a refused answer): never reused."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._answer is None or self._answer.done():
            self.abort()  # nothing was asked: an upstream out of step is not reused
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the upstream answered malformed HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._headers_done and not self._delimited:
            self._complete()  # a body that ends with the connection
        else:
            answer.set_exception(UpstreamError("the upstream closed the connection"))

    # -- httptools ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None or self._answer.done():
            self.abort()  # a second answer to one request: the upstream is out of step

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-type":
            self._content_type = value.split(b";", 1)[0].strip().lower().decode("latin-1")
        elif lowered == b"content-length":
            self._delimited = True
            if not value.strip().isdigit() or int(value) > self._limit:
                self._fail(UpstreamError(f"result is larger than {self._limit} bytes"))
        elif lowered == b"transfer-encoding":
            self._delimited = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            self._fail(UpstreamError(f"result is larger than {self._limit} bytes"))
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # informational: the answer is still to come
            self._reset()
            return
        self.reusable = self._parser.should_keep_alive()
        self._complete()

    def _complete(self) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            status = self._parser.get_status_code()
            answer.set_result((status, self._content_type, b"".join(self._chunks)))

    def _fail(self, error: UpstreamError) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_exception(error)
        self.abort()


class Poster:
    """POSTs to upstreams over kept-alive connections (see the module's docstring)."""

    def __init__(self, *, max_result_bytes: int, connections: int) -> None:
        """Answers larger than `max_result_bytes` are refused; at most `connections` open."""
        self._limit = max_result_bytes
        self._slots = asyncio.Semaphore(connections)
        self._idle: dict[Origin, list[_Exchange]] = {}
        self._targets: dict[str, tuple[Origin, bytes]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, str, bytes]:
        """POST `body` to `url`: the status, content type and body of the answer.

        Raises:
            UpstreamError: unreachable, a malformed or oversized answer, or no
                answer within `timeout` (`timeout=True`).
        """
        origin, head = self._target(url)
        request = _request(head, headers, body)
        async with self._slots:
            try:
                async with asyncio.timeout(timeout):
                    exchange = await self._connection(origin)
                    try:
                        answer = await exchange.send(request)
                    except BaseException:
                        exchange.abort()
                        raise
            except TimeoutError as exc:
                raise UpstreamError(
                    f"{url} did not answer within {timeout:g}s", timeout=True
                ) from exc
            except OSError as exc:
                raise UpstreamError(f"{url} is unreachable: {type(exc).__name__}") from exc
            if exchange.reusable and not exchange.closed:
                idle = self._idle.setdefault(origin, [])
                if len(idle) < _MAX_IDLE_PER_ORIGIN:
                    idle.append(exchange)
                else:
                    exchange.abort()
            else:
                exchange.abort()
            return answer

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for exchange in idle:
                exchange.abort()
        self._idle.clear()

    async def _connection(self, origin: Origin) -> _Exchange:
        idle = self._idle.get(origin)
        while idle:
            exchange = idle.pop()
            transport = exchange.transport
            if not exchange.closed and transport is not None and not transport.is_closing():
                return exchange
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        _, exchange = await loop.create_connection(
            lambda: _Exchange(self._limit), host, port, ssl=tls
        )
        return exchange

    def _target(self, url: str) -> tuple[Origin, bytes]:
        found = self._targets.get(url)
        if found is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UpstreamError(f"not an HTTP URL: {url}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            path = quote(parts.path or "/", safe=_PATH_SAFE)
            if parts.query:
                path += "?" + quote(parts.query, safe=_PATH_SAFE)
            host = parts.netloc.rpartition("@")[2]  # no credentials in the Host header
            _check_header_text(f"{path} {host}")
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            found = self._targets[url] = ((parts.scheme, parts.hostname, port), head.encode())
        return found


def _request(head: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
    """The request's bytes: its line, `Host`, the headers, the length, the body."""
    lines = [head]
    for name, value in headers.items():
        line = f"{name}: {value}"
        _check_header_text(line)
        try:
            lines.append(line.encode("latin-1") + b"\r\n")
        except UnicodeEncodeError as exc:
            raise UpstreamError(f"request header {name} is not Latin-1 text") from exc
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)


def _check_header_text(text: str) -> None:
    # A line break in a header would start another header (or the body).
    if "\r" in text or "\n" in text or "\0" in text:
        raise UpstreamError("a request header holds a line break")
