"""The floor of an extra hop: a TCP relay that copies bytes both ways and parses nothing.

    python benchmarks/tcp_relay.py LISTEN_PORT UPSTREAM_PORT

`benchmarks/mcp_calls.py` puts it in front of the Streamable HTTP server:
what it adds to a call is what any bridge on this machine pays for one more
loopback hop and one more process to wake, before reading a single header.
Plain asyncio protocols on uvloop (as ztgate serves), one upstream
connection per client connection, written to as soon as it is open.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


class _Side(asyncio.Protocol):
    """One end of a relayed connection: what it receives is written to the other end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.waiting: list[bytes] = []  # received before the other end was open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.waiting.append(data)
        else:
            other.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.close()


class _Client(_Side):
    """The accepted connection: opens its upstream connection at once."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self._upstream_port = upstream_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        upstream = _Side()
        upstream.other = self
        try:
            await asyncio.get_running_loop().create_connection(
                lambda: upstream, "127.0.0.1", self._upstream_port
            )
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.other = upstream
        assert upstream.transport is not None
        for data in self.waiting:
            upstream.transport.write(data)
        self.waiting.clear()


async def serve(port: int, upstream_port: int) -> None:
    """Relay 127.0.0.1:`port` to 127.0.0.1:`upstream_port` until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
