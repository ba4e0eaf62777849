"""Relaying bytes both ways between two streams, counting them, until both ends are done.

A direction that reaches end of stream half-closes the other side; the
relay ends when both directions have, or when nothing moved either way for
`idle_timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(slots=True)
class Traffic:
    """Bytes moved each way, and when anything last moved."""

    up: int = 0  # client to destination
    down: int = 0  # destination to client
    last_activity: float = field(default_factory=time.monotonic)


async def _pump(
    source: asyncio.StreamReader,
    sink: asyncio.StreamWriter,
    traffic: Traffic,
    upward: bool,
    idle_timeout: float,
) -> None:
    while True:
        try:
            data = await asyncio.wait_for(source.read(CHUNK), idle_timeout)
        except TimeoutError:
            if time.monotonic() - traffic.last_activity >= idle_timeout:
                raise
            continue
        if not data:
            if sink.can_write_eof():
                with contextlib.suppress(OSError):
                    sink.write_eof()
            return
        traffic.last_activity = time.monotonic()
        if upward:
            traffic.up += len(data)
        else:
            traffic.down += len(data)
        sink.write(data)
        await sink.drain()


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    destination: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    traffic: Traffic,
    *,
    idle_timeout: float,
) -> str:
    """Relay until both directions end; returns how it ended ("closed", "idle", "error")."""
    up = asyncio.ensure_future(_pump(client[0], destination[1], traffic, True, idle_timeout))
    down = asyncio.ensure_future(_pump(destination[0], client[1], traffic, False, idle_timeout))
    ending = "closed"
    try:
        pending: set[asyncio.Future[None]] = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None:
                    ending = "idle" if isinstance(error, TimeoutError) else "error"
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    return ending
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
    return ending
