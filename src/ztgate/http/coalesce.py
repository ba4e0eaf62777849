"""One write per response: uvicorn's protocol over a transport that joins a step's writes.

uvicorn writes a response's head when the app sends `http.response.start`
and its body when it sends `http.response.body`: two writes, so two `send`
system calls and two wake-ups of the client for one small answer (each was
about 6% of the gateway's CPU per MCP call in a profile; a system call on a
virtual machine costs more than the Python around it). The transport here
collects what is written during one step of the event loop and writes it
at the end of the step, once. Bytes and their order are unchanged; a close
writes what is collected first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport that writes what one loop step wrote in one `write` of the one it wraps."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        """Write to `transport`, at the end of the current step of `loop`."""
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Collect `data`; the first piece of a step schedules the write."""
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        """Collect each of `lines`."""
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Write what is collected now (nothing once the transport closes)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Write what is collected, then close."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping what is collected (as the transport drops its buffer)."""
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        """What the transport holds plus what is collected here."""
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        # Everything else (extra info, reading, flow control) is the transport's.
        return getattr(self._transport, name)


def coalescing(protocol: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    """`protocol` (uvicorn's httptools protocol or a subclass) over a `CoalescingTransport`."""

    class Coalescing(protocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
            super().connection_made(wrapped)

    Coalescing.__name__ = Coalescing.__qualname__ = f"Coalescing{protocol.__name__}"
    return Coalescing
