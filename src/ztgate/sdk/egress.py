"""An httpx transport that reaches the network through the gateway's egress proxy, as the agent.

    transport = EgressTransport(("127.0.0.1", 8472), agent.proxy_headers)
    async with httpx.AsyncClient(transport=transport) as client:
        page = await client.get("https://api.example.com/v1/items")

Every new connection (HTTP or HTTPS, to any port) is a `CONNECT host:port`
to the proxy with fresh headers from `headers_for(host, port)` — the
agent's JWT-SVID, its warrant and a proof for exactly that destination
(`AsyncAgent.proxy_headers`; see docs/egress-proxy.md) — so one proof goes
with one connection, and a kept-alive connection needs no other. TLS to the
destination runs inside the tunnel, end to end (the proxy never sees it).
httpcore does the HTTP; this module only opens the tunnels, through
httpcore's own network backend interface.

A refused connection raises `httpx.ProxyError` with the proxy's status and
one-line reason.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import httpcore
import httpx

HeadersFor = Callable[[str, int], Awaitable[dict[str, str]]]
_MAX_ANSWER = 16384


class EgressBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network: TCP connections become tunnels through the egress proxy."""

    def __init__(
        self,
        proxy: tuple[str, int],
        headers_for: HeadersFor,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        """Tunnel through `proxy` (host, port) with the headers `headers_for(host, port)` gives."""
        self._proxy = proxy
        self._headers_for = headers_for
        self._network = network or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A stream to `host:port`: the proxy's connection once it answered 200 to CONNECT."""
        try:
            with anyio.fail_after(timeout):
                headers = await self._headers_for(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no proxy headers for {host}:{port} in time") from exc
        except Exception as exc:  # no identity, no warrant, a host it cannot sign for
            raise httpcore.ProxyError(f"no proxy headers for {host}:{port}: {exc}") from exc
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if any("\r" in line or "\n" in line for line in lines):
            raise httpcore.ProxyError("a proxy header holds a line break")
        stream = await self._network.connect_tcp(
            self._proxy[0], self._proxy[1], timeout=timeout, local_address=local_address,
            socket_options=socket_options,
        )  # fmt: skip
        try:
            await stream.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), timeout)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = await stream.read(_MAX_ANSWER, timeout)
                if not chunk or len(answer) + len(chunk) > _MAX_ANSWER:
                    raise httpcore.ProxyError("the egress proxy closed or answered too much")
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or parts[1] != "200":
                reason = body.decode("utf-8", "replace").strip()
                raise httpcore.ProxyError(f"{status_line}: {reason}"[:500])
            if body:  # the proxy says nothing more: these bytes would be lost to the tunnel
                raise httpcore.ProxyError("the egress proxy sent bytes after its 200")
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Not through the proxy: refused."""
        raise httpcore.ConnectError("Unix sockets are not reached through the egress proxy")

    async def sleep(self, seconds: float) -> None:
        """As the network backend sleeps."""
        await self._network.sleep(seconds)


class EgressTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose every connection is a tunnel through the egress proxy."""

    def __init__(
        self,
        proxy: tuple[str, int],
        headers_for: HeadersFor,
        *,
        verify: ssl.SSLContext | None = None,
        max_connections: int = 10,
    ) -> None:
        """Through `proxy` (host, port), with `headers_for` (e.g. `AsyncAgent.proxy_headers`);
        `verify`: the TLS context for destinations (default: the system's CAs; never off)."""
        if verify is not None and not isinstance(verify, ssl.SSLContext):
            raise TypeError("verify is an ssl.SSLContext (destinations are always verified)")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify or ssl.create_default_context(),
            max_connections=max_connections,
            network_backend=EgressBackend(proxy, headers_for),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` over a tunnel (httpcore's request and response, as httpx's own does)."""
        assert isinstance(request.stream, httpx.AsyncByteStream)  # noqa: S101 - an async client
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            answer = await self._pool.handle_async_request(sent)
        except Exception as exc:
            raise _as_httpx(exc, request) from exc
        assert isinstance(answer.stream, typing.AsyncIterable)  # noqa: S101 - httpcore's async pool
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer, request),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self._pool.aclose()


class _Body(httpx.AsyncByteStream):
    def __init__(self, answer: httpcore.Response, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        try:
            async for part in self._answer.aiter_stream():
                yield part
        except Exception as exc:
            raise _as_httpx(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._answer.aclose()


# httpcore's exceptions as httpx's (the same names), most specific first.
_HTTPX_OF: tuple[tuple[type[Exception], type[httpx.RequestError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


def _as_httpx(exc: Exception, request: httpx.Request) -> Exception:
    """`exc` as the httpx exception of the same name (anything else as it is)."""
    for core, mapped in _HTTPX_OF:
        if isinstance(exc, core):
            return mapped(str(exc), request=request)
    return exc
