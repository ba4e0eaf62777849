"""One write per response: the writes of one loop step joined, bytes and order unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ztgate.http.coalesce import CoalescingTransport, coalescing
from ztgate.http.server import uvicorn_config


class Recording:
    """A transport that records its writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def coalesced() -> tuple[Recording, CoalescingTransport]:
    inner = Recording()
    return inner, CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_the_writes_of_one_step_are_one_write_at_its_end() -> None:
    inner, transport = coalesced()
    transport.write(b"head ")
    transport.write(b"")
    transport.writelines([b"body", b"!"])
    assert inner.writes == []
    assert transport.get_write_buffer_size() == len(b"head body!")
    await asyncio.sleep(0)
    assert inner.writes == [b"head body!"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert inner.writes == [b"head body!", b"next"]


async def test_a_close_writes_what_was_collected_first() -> None:
    inner, transport = coalesced()
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [b"last words"] and inner.closed
    await asyncio.sleep(0)
    assert inner.writes == [b"last words"]  # not twice


async def test_an_abort_or_a_closed_transport_writes_nothing_more() -> None:
    inner, transport = coalesced()
    transport.write(b"dropped")
    transport.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.aborted
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_everything_else_is_the_transports() -> None:
    _inner, transport = coalesced()
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


def test_the_protocol_is_uvicorns_over_the_coalescing_transport() -> None:
    protocol = coalescing(HttpToolsProtocol)
    assert issubclass(protocol, HttpToolsProtocol)
    assert protocol.__name__ == "CoalescingHttpToolsProtocol"


async def test_a_server_answers_in_one_write_what_it_answered_in_two() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b'{"ok": true}' * (1 + 10_000 * (scope["path"] == "/big"))
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body[:5], "more_body": True})
        await send({"type": "http.response.body", "body": body[5:]})

    config = uvicorn_config(app, "127.0.0.1", 0, "warning")
    config.lifespan = "off"
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):  # one connection, kept alive
                small = await client.get("/")
                big = await client.get("/big")
                assert small.status_code == 200 and small.json() == {"ok": True}
                assert big.content == b'{"ok": true}' * 10_001
            closing = await client.get("/", headers={"connection": "close"})
            assert closing.content == b'{"ok": true}'
    finally:
        server.should_exit = True
        await task
