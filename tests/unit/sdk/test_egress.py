"""The SDK's egress transport against a stand-in proxy on loopback (the real one: integration)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from ztgate.sdk.egress import EgressTransport


class StandInProxy:
    """Answers CONNECT as told, then plays the destination: one small answer per request."""

    def __init__(self, status: bytes = b"200 Connection established") -> None:
        self.status = status
        self.heads: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.heads.append(await reader.readuntil(b"\r\n\r\n"))
        if not self.status.startswith(b"200"):
            writer.write(b"HTTP/1.1 " + self.status + b"\r\nContent-Length: 27\r\n\r\n")
            writer.write(b"the host is outside scope\r\n")
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            return
        writer.write(b"HTTP/1.1 " + self.status + b"\r\n\r\n")
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def serving(proxy: StandInProxy) -> AsyncIterator[StandInProxy]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        await proxy.handle(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
        await asyncio.wait_for(asyncio.gather(*handlers), 5)  # each saw its client close


def _headers_for(asked: list[tuple[str, int]]):  # type: ignore[no-untyped-def]
    async def headers_for(host: str, port: int) -> dict[str, str]:
        asked.append((host, port))
        return {"Proxy-Authorization": "Bearer t", "Ztgate-Proof": f"proof-{len(asked)}"}

    return headers_for


async def test_each_connection_is_a_tunnel_with_its_own_headers() -> None:
    asked: list[tuple[str, int]] = []
    async with serving(StandInProxy()) as proxy:
        transport = EgressTransport(("127.0.0.1", proxy.port), _headers_for(asked))
        async with httpx.AsyncClient(transport=transport) as client:
            first = await client.get("http://api.example.com/one")
            second = await client.get("http://api.example.com/two")  # the kept-alive tunnel
    assert (first.status_code, first.text, second.text) == (200, "ok", "ok")
    assert asked == [("api.example.com", 80)]  # one connection, one proof
    head = proxy.heads[0].decode()
    assert head.startswith("CONNECT api.example.com:80 HTTP/1.1\r\n")
    assert "Host: api.example.com:80\r\n" in head and "Ztgate-Proof: proof-1\r\n" in head


async def test_a_refused_tunnel_is_a_proxy_error_with_the_reason() -> None:
    async with serving(StandInProxy(b"403 Forbidden")) as proxy:
        transport = EgressTransport(("127.0.0.1", proxy.port), _headers_for([]))
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ProxyError, match="403 Forbidden: the host is outside scope"):
                await client.get("https://api.example.com/")
    assert proxy.heads[0].startswith(b"CONNECT api.example.com:443 ")
