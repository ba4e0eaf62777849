"""The egress proxy over real sockets: CONNECT and plain HTTP, attribution, refusals, audit."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ztgate.audit.reader import AuditReader
from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant, ProxyCredentials
from ztgate.egress.proxy import EgressProxy, ProxyLimits
from ztgate.store.database import Database

from .egress_kit import (
    HttpServer,
    TableResolver,
    audit_log,
    egress_records,
    http_server,
    wait_for_records,
)

AGENT = "spiffe://ztgate.local/agent/fetcher"
PUBLIC = ipaddress.ip_address("93.184.215.14")  # a global address nothing here listens on


class Setup:
    def __init__(
        self, proxy: EgressProxy, port: int, database: Database, server: HttpServer
    ) -> None:
        self.proxy, self.port, self.database, self.server = proxy, port, database, server
        self.credentials: ProxyCredentials | None = None

    def url(self, credentials: ProxyCredentials | None = None) -> str:
        found = credentials or self.credentials
        assert found is not None
        return f"http://{found.user}:{found.password}@127.0.0.1:{self.port}"


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    resolver = TableResolver(
        {
            "allowed.test": [PUBLIC],
            "rebinds.test": [ipaddress.ip_address("10.1.2.3")],
            "metadata.test": [ipaddress.ip_address("169.254.169.254")],
        }
    )
    limits = ProxyLimits(connect_timeout=2.0, idle_timeout=2.0, max_header_bytes=4096)
    async with audit_log(tmp_path) as (log, database), http_server() as server:
        proxy = EgressProxy(log, resolver, limits=limits)
        _, port = await proxy.listen_tcp("127.0.0.1", 0)
        found = Setup(proxy, port, database, server)
        rules = EgressRules.build(
            ["allowed.test", "rebinds.test", "metadata.test", "*.example.org"],
            test_destinations=[f"127.0.0.1:{server.port}"],
        )
        found.credentials = proxy.add_enclave(
            Grant("files.1", Attribution("files", AGENT, "task-1"), rules)
        )
        try:
            yield found
        finally:
            await proxy.stop()


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return answer


def _basic(credentials: ProxyCredentials) -> bytes:
    token = base64.b64encode(f"{credentials.user}:{credentials.password}".encode())
    return b"Proxy-Authorization: Basic " + token + b"\r\n"


async def test_plain_http_to_an_allowed_test_destination_is_forwarded_and_audited(
    setup: Setup,
) -> None:
    async with httpx.AsyncClient(proxy=setup.url()) as client:
        answer = await client.get(f"http://127.0.0.1:{setup.server.port}/path?q=1")
    assert answer.status_code == 200
    assert answer.text == f"hello from {setup.server.port}"
    head = setup.server.requests[-1]
    assert head.startswith(b"GET /path?q=1 HTTP/1.1\r\n")
    assert b"proxy-authorization" not in head.lower()  # never forwarded
    records = await wait_for_records(setup.database, 2)
    events = [(r["outcome"], r["detail"]["event"]) for r in records]
    assert events == [("allow", "open"), ("allow", "close")]
    close = records[-1]
    assert close["agent"] == AGENT and close["task_id"] == "task-1"
    assert close["detail"]["enclave"] == "files"
    assert close["detail"]["address"] == "127.0.0.1"
    assert close["detail"]["port"] == setup.server.port
    assert close["detail"]["bytes_down"] > 0 and close["detail"]["bytes_up"] > 0
    assert "duration_ms" in close["detail"]


async def test_connect_tunnels_bytes_after_the_decision(setup: Setup) -> None:
    assert setup.credentials is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.port)
    target = f"127.0.0.1:{setup.server.port}".encode()
    writer.write(b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n")
    writer.write(_basic(setup.credentials) + b"\r\n")
    await writer.drain()
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
    writer.write(b"GET /tunnelled HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.endswith(f"hello from {setup.server.port}".encode())
    assert setup.server.requests[-1].startswith(b"GET /tunnelled ")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:{other}", "loopback"),
        ("localhost:{port}", "this machine"),
        ("2130706433:{port}", "loopback"),
        ("[::1]:{port}", "loopback"),
        ("169.254.169.254:80", "link-local"),
        ("metadata.test:80", "link-local"),
        ("rebinds.test:443", "private"),
        ("elsewhere.test:443", "outside the enclave's allowed domains"),
        ("nowhere.example.org:443", "cannot be checked"),
    ],
)
async def test_refused_destinations_get_403_with_the_reason_and_are_audited(
    setup: Setup, target: str, reason: str
) -> None:
    assert setup.credentials is not None
    authority = target.format(port=setup.server.port, other=setup.server.port + 1).encode()
    answer = await _raw(
        setup.port, b"CONNECT " + authority + b" HTTP/1.1\r\n" + _basic(setup.credentials) + b"\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert reason.encode() in answer
    denied = egress_records(setup.database)[-1]
    assert denied["outcome"] == "deny" and denied["status"] == 403
    assert reason in denied["detail"]["reason"]
    assert denied["agent"] == AGENT
    assert setup.server.requests == []


@pytest.mark.parametrize(
    "credentials",
    [None, "files.1:wrong", "nobody:secret", "not base64 at all"],
)
async def test_tcp_without_the_enclave_credentials_gets_407(
    setup: Setup, credentials: str | None
) -> None:
    header = b""
    if credentials == "not base64 at all":
        header = b"Proxy-Authorization: Basic !!!\r\n"
    elif credentials is not None:
        header = b"Proxy-Authorization: Basic " + base64.b64encode(credentials.encode()) + b"\r\n"
    target = f"127.0.0.1:{setup.server.port}".encode()
    answer = await _raw(setup.port, b"CONNECT " + target + b" HTTP/1.1\r\n" + header + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 407 ")
    assert b"Proxy-Authenticate: Basic" in answer
    assert egress_records(setup.database)[-1]["detail"]["reason"].startswith("proxy credentials")
    assert setup.server.requests == []


async def test_malformed_and_oversized_heads_are_refused(setup: Setup) -> None:
    assert (await _raw(setup.port, b"GET /relative HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await _raw(setup.port, b"GET https://x.test/ HTTP/1.1\r\n\r\n")).startswith(
        b"HTTP/1.1 400 "
    )
    big = b"CONNECT a.test:443 HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n"
    assert (await _raw(setup.port, big)).startswith(b"HTTP/1.1 431 ")


async def test_the_audit_chain_still_verifies(setup: Setup) -> None:
    async with httpx.AsyncClient(proxy=setup.url()) as client:
        await client.get(f"http://127.0.0.1:{setup.server.port}/")
    await _raw(setup.port, b"CONNECT 10.0.0.1:22 HTTP/1.1\r\n\r\n")
    report = AuditReader(setup.database).verify(None)
    assert report.ok, report


async def test_unix_socket_connections_are_the_enclaves_own(setup: Setup, tmp_path: Path) -> None:
    rules = EgressRules.build([], test_destinations=[f"127.0.0.1:{setup.server.port}"])
    setup.proxy.add_enclave(Grant("other.2", Attribution("other"), rules))
    socket = tmp_path / "other.sock"
    await setup.proxy.listen_unix("other.2", socket)
    assert socket.stat().st_mode & 0o777 == 0o600
    reader, writer = await asyncio.open_unix_connection(str(socket))
    writer.write(f"GET http://127.0.0.1:{setup.server.port}/u HTTP/1.1\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert egress_records(setup.database)[-1]["detail"]["enclave"] == "other"
    await setup.proxy.remove_enclave("other.2")
    assert not socket.exists()


async def test_connections_beyond_the_limit_get_503(tmp_path: Path) -> None:
    async with audit_log(tmp_path) as (log, _), http_server() as server:
        proxy = EgressProxy(log, TableResolver({}), limits=ProxyLimits(max_connections=1))
        _, port = await proxy.listen_tcp("127.0.0.1", 0)
        rules = EgressRules.build([], test_destinations=[f"127.0.0.1:{server.port}"])
        credentials = proxy.add_enclave(Grant("one.1", Attribution("one"), rules))
        connect = f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode() + _basic(credentials)
        first_reader, first_writer = await asyncio.open_connection("127.0.0.1", port)
        first_writer.write(connect + b"\r\n")
        await first_writer.drain()
        assert (await first_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        answer = await _raw(port, connect + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 503 ")
        first_writer.close()
        await proxy.stop()
        assert (
            proxy.metrics.registry.get_sample_value(
                "ztgate_egress_connections_total", {"decision": "deny", "listener": "tcp"}
            )
            == 1.0
        )


async def test_one_enclave_relays_at_most_its_share(tmp_path: Path) -> None:
    """An enclave holding its share of tunnels is refused more; another is not."""
    async with audit_log(tmp_path) as (log, _), http_server() as server:
        limits = ProxyLimits(max_connections=8, max_connections_per_enclave=1)
        proxy = EgressProxy(log, TableResolver({}), limits=limits)
        rules = EgressRules.build([], test_destinations=[f"127.0.0.1:{server.port}"])
        for name in ("greedy", "other"):
            proxy.add_enclave(Grant(f"{name}.1", Attribution(name), rules))
            await proxy.listen_unix(f"{name}.1", tmp_path / f"{name}.sock")
        connect = f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n\r\n".encode()
        held_reader, held_writer = await asyncio.open_unix_connection(str(tmp_path / "greedy.sock"))
        held_writer.write(connect)
        assert (await held_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        for name, expected in (("greedy", b"HTTP/1.1 503 "), ("other", b"HTTP/1.1 200")):
            reader, writer = await asyncio.open_unix_connection(str(tmp_path / f"{name}.sock"))
            writer.write(connect)
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert answer.startswith(expected), (name, answer)
            if name == "greedy":
                assert b"this enclave" in await reader.read()
            writer.close()
        held_writer.close()
        await proxy.stop()


class Rebinding:
    """A name that answers 127.0.0.1 once, then an address where nothing listens."""

    def __init__(self) -> None:
        self.asked = 0

    async def resolve(self, host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        self.asked += 1
        return [ipaddress.ip_address("127.0.0.1" if self.asked == 1 else "127.0.0.2")]


async def test_the_connection_goes_to_the_address_checked_not_to_the_name_again(
    tmp_path: Path,
) -> None:
    resolver = Rebinding()
    async with audit_log(tmp_path) as (log, database), http_server() as server:
        proxy = EgressProxy(log, resolver)
        rules = EgressRules.build([], test_destinations=[f"rebinding.test:{server.port}"])
        proxy.add_enclave(Grant("r.1", Attribution("r"), rules))
        socket = tmp_path / "r.sock"
        await proxy.listen_unix("r.1", socket)
        reader, writer = await asyncio.open_unix_connection(str(socket))
        writer.write(f"CONNECT rebinding.test:{server.port} HTTP/1.1\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\nHost: rebinding.test\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        await proxy.stop()
        assert answer.endswith(f"hello from {server.port}".encode())
        assert resolver.asked == 1
        assert egress_records(database)[-1]["detail"]["address"] == "127.0.0.1"
