"""The proxy's own behaviour: fail closed without an audit log, 502 for a dead destination."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.clock import SystemClock
from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant
from ztgate.egress.proxy import EgressProxy, ProxyLimits
from ztgate.errors import GatewayError
from ztgate.guards.resolver import Address, ResolutionError
from ztgate.store.database import Database


class NoNames:
    async def resolve(self, host: str) -> Sequence[Address]:
        raise ResolutionError("no names here")


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[tuple[AuditLog, Database]]:
    database = Database(f"sqlite:///{tmp_path / 'ztgate.db'}")
    database.migrate()
    log = AuditLog(database, SystemClock())
    await log.start()
    yield log, database
    await log.stop()
    database.dispose()


async def _ask(path: Path, head: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def _proxy_for(log: AuditLog, tmp_path: Path, port: int) -> tuple[EgressProxy, Path]:
    proxy = EgressProxy(log, NoNames(), limits=ProxyLimits(connect_timeout=1))
    rules = EgressRules.build([], test_destinations=[f"127.0.0.1:{port}"])
    proxy.add_enclave(Grant("e.1", Attribution("e"), rules))
    path = tmp_path / "e.sock"
    await proxy.listen_unix("e.1", path)
    return proxy, path


def _dead_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    return sock, sock.getsockname()[1]


async def test_a_destination_that_refuses_gets_502_and_is_recorded(
    audit: tuple[AuditLog, Database], tmp_path: Path
) -> None:
    log, database = audit
    sock, port = _dead_port()
    with sock:
        proxy, path = await _proxy_for(log, tmp_path, port)
        answer = await _ask(path, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        await proxy.stop()
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    bodies = [json.loads(r.body) for r in AuditReader(database).records("main")]
    assert [b["detail"]["event"] for b in bodies] == ["open", "close"]
    assert bodies[-1]["status"] == 502


async def test_no_audit_log_no_connection(audit: tuple[AuditLog, Database], tmp_path: Path) -> None:
    log, _ = audit
    sock, port = _dead_port()
    with sock:
        proxy, path = await _proxy_for(log, tmp_path, port)
        await log.stop()  # the log refuses appends from now on
        answer = await _ask(path, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        await proxy.stop()
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"audit" in answer


async def test_a_socket_for_an_unknown_grant_is_refused(
    audit: tuple[AuditLog, Database], tmp_path: Path
) -> None:
    proxy = EgressProxy(audit[0], NoNames())
    with pytest.raises(GatewayError, match="not served"):
        await proxy.listen_unix("nobody.1", tmp_path / "x.sock")


async def test_a_removed_enclave_is_no_longer_served(
    audit: tuple[AuditLog, Database], tmp_path: Path
) -> None:
    proxy, path = await _proxy_for(audit[0], tmp_path, 1)
    await proxy.remove_enclave("e.1")
    assert not path.exists()
    assert proxy.grants.get("e.1") is None
    await proxy.stop()


async def test_a_slow_client_gets_408(audit: tuple[AuditLog, Database], tmp_path: Path) -> None:
    proxy = EgressProxy(audit[0], NoNames(), limits=ProxyLimits(connect_timeout=0.2))
    proxy.add_enclave(Grant("e.1", Attribution("e"), EgressRules()))
    path = tmp_path / "e.sock"
    await proxy.listen_unix("e.1", path)
    answer = await _ask(path, b"CONNECT a.test:443 HTTP/1.1\r\n")  # never finished
    await proxy.stop()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_idle_connections_beyond_twice_the_limit_get_503(
    audit: tuple[AuditLog, Database], tmp_path: Path
) -> None:
    limits = ProxyLimits(max_connections_per_enclave=1, connect_timeout=5)
    proxy = EgressProxy(audit[0], NoNames(), limits=limits)
    for name in ("e", "other"):
        proxy.add_enclave(Grant(f"{name}.1", Attribution(name), EgressRules()))
        await proxy.listen_unix(f"{name}.1", tmp_path / f"{name}.sock")
    opened = [await asyncio.open_unix_connection(str(tmp_path / "e.sock")) for _ in range(3)]
    try:
        answer = await asyncio.wait_for(opened[2][0].read(), 5)  # the third sends nothing
        assert answer.startswith(b"HTTP/1.1 503 ")
        # Another enclave is not turned away: its budget is its own.
        other = await _ask(tmp_path / "other.sock", b"CONNECT a.test:443 HTTP/1.1\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 403 ")
    finally:
        for _, writer in opened:
            writer.close()
            await writer.wait_closed()
        await proxy.stop()


async def test_refusals_past_the_rate_are_answered_counted_and_summarised(
    audit: tuple[AuditLog, Database], tmp_path: Path
) -> None:
    log, database = audit
    limits = ProxyLimits(refusal_records_per_second=1, connect_timeout=5)
    proxy = EgressProxy(log, NoNames(), limits=limits)
    proxy.add_enclave(Grant("e.1", Attribution("e"), EgressRules()))
    path = tmp_path / "e.sock"
    await proxy.listen_unix("e.1", path)
    refused = b"CONNECT a.test:443 HTTP/1.1\r\n\r\n"
    try:
        answers = [await _ask(path, refused) for _ in range(6)]
        assert all(answer.startswith(b"HTTP/1.1 403 ") for answer in answers)
        bodies = [json.loads(r.body) for r in AuditReader(database).records("main")]
        assert len(bodies) == 2  # a burst of twice the rate, then counted only
        assert "unrecorded_before" not in bodies[-1]["detail"]
        counted = proxy.metrics.registry.get_sample_value("ztgate_egress_unrecorded_refusals_total")
        assert counted == 4.0
        await asyncio.sleep(1.1)  # a token again
        assert (await _ask(path, refused)).startswith(b"HTTP/1.1 403 ")
        bodies = [json.loads(r.body) for r in AuditReader(database).records("main")]
        assert len(bodies) == 3
        assert bodies[-1]["detail"]["unrecorded_before"] == 4
    finally:
        await proxy.stop()
