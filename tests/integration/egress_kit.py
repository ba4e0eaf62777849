"""Test kit for the egress proxy and enclaves: an audit log, a proxy, loopback servers.

- `audit_log(tmp_path)`: a started `AuditLog` on a fresh migrated SQLite database;
- `running_proxy(audit)`: an `EgressProxy` with a TCP listener on loopback;
- `http_server()`: a loopback HTTP server answering every request with 200 and
  `hello from <port>`, counting the requests it got;
- `egress_records(database)`: the audit chain's `egress` records, as dicts.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.clock import SystemClock
from ztgate.egress.proxy import EgressProxy, ProxyLimits
from ztgate.guards.resolver import Address, ResolutionError
from ztgate.store.database import Database


class TableResolver:
    """Answers from a table (names the tests made up); anything else does not resolve."""

    def __init__(self, table: dict[str, Sequence[Address]]) -> None:
        self.table = table

    async def resolve(self, host: str) -> Sequence[Address]:
        try:
            return self.table[host]
        except KeyError:
            raise ResolutionError("it does not resolve (test table)") from None


@dataclass
class HttpServer:
    port: int
    requests: list[bytes] = field(default_factory=list)


@asynccontextmanager
async def audit_log(directory: Path) -> AsyncIterator[tuple[AuditLog, Database]]:
    database = Database(f"sqlite:///{directory / 'ztgate.db'}")
    database.migrate()
    log = AuditLog(database, SystemClock())
    await log.start()
    try:
        yield log, database
    finally:
        await log.stop()
        database.dispose()


@asynccontextmanager
async def running_proxy(
    audit: AuditLog, resolver: Any, limits: ProxyLimits | None = None
) -> AsyncIterator[tuple[EgressProxy, int]]:
    proxy = EgressProxy(audit, resolver, limits=limits)
    _, port = await proxy.listen_tcp("127.0.0.1", 0)
    try:
        yield proxy, port
    finally:
        await proxy.stop()


@asynccontextmanager
async def http_server(host: str = "127.0.0.1") -> AsyncIterator[HttpServer]:
    state = HttpServer(0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            state.requests.append(head)
            body = f"hello from {state.port}".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


async def wait_for_records(
    database: Database, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The `egress` records, once there are at least `count` (the close comes last)."""
    async with asyncio.timeout(timeout):
        while len(found := egress_records(database)) < count:
            await asyncio.sleep(0.02)
    return found


def egress_records(database: Database) -> list[dict[str, Any]]:
    reader = AuditReader(database)
    bodies = [json.loads(record.body) for record in reader.records("main")]
    return [body for body in bodies if body["kind"] == "egress"]


@contextmanager
def threaded_http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A loopback HTTP server answering with `handler` in a thread of its own; its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class HeaderNames(http.server.BaseHTTPRequestHandler):
    """Answers with the names of the request's headers."""

    def do_GET(self) -> None:
        body = " ".join(sorted(name.lower() for name in self.headers)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass
