"""The SDK's egress transport against a stand-in proxy on loopback (the real one: integration)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from ztgate.ports import free_port
from ztgate.sdk.egress import EgressTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class StandInProxy:
    """Answers CONNECT as told, then plays the destination: one small answer per request."""

    def __init__(
        self, status: bytes = b"200 Connection established", answer: bytes | None = None
    ) -> None:
        self.status = status
        self.answer = answer or OK
        self.extra = b""  # sent with the 200, before the client says anything
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
        writer.write(b"HTTP/1.1 " + self.status + b"\r\n\r\n" + self.extra)
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            writer.write(self.answer)
            await writer.drain()
            if self.answer != OK:  # a cut-off answer: then the connection ends
                break
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


async def test_an_ipv6_destination_is_bracketed_as_the_proxy_reads_it() -> None:
    asked: list[tuple[str, int]] = []
    async with serving(StandInProxy()) as proxy:
        transport = EgressTransport(("127.0.0.1", proxy.port), _headers_for(asked))
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("http://[2001:db8::1]:8080/")).text == "ok"
    assert asked == [("2001:db8::1", 8080)]
    assert proxy.heads[0].startswith(b"CONNECT [2001:db8::1]:8080 HTTP/1.1\r\n")


async def test_failures_are_httpx_errors_of_their_kind() -> None:
    async def no_headers(host: str, port: int) -> dict[str, str]:
        raise ValueError("no warrant bound")

    cut = StandInProxy(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
    chatty = StandInProxy()
    chatty.extra = b"SSH-2.0-server speaks first\r\n"
    async with serving(cut) as proxy, serving(chatty) as early:
        cases = [
            (("127.0.0.1", proxy.port), no_headers, httpx.ProxyError, "no warrant bound"),
            (("127.0.0.1", proxy.port), _headers_for([]), httpx.RemoteProtocolError, None),
            (("127.0.0.1", early.port), _headers_for([]), httpx.ProxyError, "after its 200"),
            (("127.0.0.1", free_port()), _headers_for([]), httpx.ConnectError, None),
        ]
        for address, headers_for, error, says in cases:
            transport = EgressTransport(address, headers_for)
            async with httpx.AsyncClient(transport=transport) as client:
                with pytest.raises(error, match=says):
                    await client.get("http://api.example.com/")


def test_verification_cannot_be_switched_off() -> None:
    with pytest.raises(TypeError, match="always verified"):
        EgressTransport(("127.0.0.1", 1), _headers_for([]), verify=False)  # type: ignore[arg-type]
