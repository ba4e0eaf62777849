"""Relaying bytes both ways: counts, half-close, the idle timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ztgate.egress.pump import Traffic, relay

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def pairs() -> AsyncIterator[tuple[Streams, Streams, Streams, Streams]]:
    """Two connected pairs: (client side, proxy's client end), (proxy's destination end, server)."""
    accepted: asyncio.Queue[Streams] = asyncio.Queue()

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port)
    client_end = await accepted.get()
    destination_end = await asyncio.open_connection("127.0.0.1", port)
    origin = await accepted.get()
    yield client, client_end, destination_end, origin
    for _, writer in (client, client_end, destination_end, origin):
        writer.close()
    server.close()


async def test_bytes_flow_both_ways_and_are_counted(
    pairs: tuple[Streams, Streams, Streams, Streams],
) -> None:
    client, client_end, destination_end, origin = pairs
    traffic = Traffic()
    task = asyncio.ensure_future(relay(client_end, destination_end, traffic, idle_timeout=5))
    client[1].write(b"hello")
    client[1].write_eof()
    assert await origin[0].read() == b"hello"  # the half-close reached the origin
    origin[1].write(b"world!")
    origin[1].write_eof()
    assert await client[0].read() == b"world!"
    assert await asyncio.wait_for(task, 5) == "closed"
    assert (traffic.up, traffic.down) == (5, 6)


async def test_nothing_moving_ends_the_relay(
    pairs: tuple[Streams, Streams, Streams, Streams],
) -> None:
    _, client_end, destination_end, _ = pairs
    ending = await asyncio.wait_for(
        relay(client_end, destination_end, Traffic(), idle_timeout=0.1), 5
    )
    assert ending == "idle"
