"""WorkloadIdentity against ztgate's real Workload API (grpclib, a Unix socket, a real CA).

py-spiffe's client blocks, so the identity is built and used in threads while
the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from spiffe.workloadapi.errors import FetchJwtSvidError

from ztgate.clock import SystemClock
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.workload_api import IdentitySource, WorkloadApiServer
from ztgate.sdk.errors import IdentityError
from ztgate.sdk.identity import WorkloadIdentity, socket_uri
from ztgate.store.database import Database
from ztgate.store.generations import GenerationWatcher
from ztgate.warrants.jwk import key_thumbprint

from .conftest import AGENT, AUDIENCE, DOMAIN

EXE = os.readlink("/proc/self/exe")
ME = [f"unix:uid:{os.getuid()}", f"unix:path:{EXE}"]
JWT_TTL = 60.0


@dataclass
class Served:
    server: WorkloadApiServer
    registry: EntryRegistry
    path: Path


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zs", dir="/tmp") as name:
        yield Path(name)


async def _serve(
    ca: CertificateAuthority, database: Database, directory: Path, *, x509_ttl: float
) -> AsyncIterator[Served]:
    clock = SystemClock()
    registry = EntryRegistry(database, clock, DOMAIN)
    watcher = GenerationWatcher(database)
    source = IdentitySource(ca, registry, watcher, clock, x509_ttl=x509_ttl, jwt_ttl=JWT_TTL)
    server = WorkloadApiServer(source, directory / "agent.sock", poll_interval=0.1)
    await server.start()
    try:
        yield Served(server, registry, directory / "agent.sock")
    finally:
        await server.close()
        watcher.close()


@pytest.fixture
async def served(
    ca: CertificateAuthority, database: Database, short_dir: Path
) -> AsyncIterator[Served]:
    async for value in _serve(ca, database, short_dir, x509_ttl=600):
        yield value


@pytest.fixture
async def short_lived(
    ca: CertificateAuthority, database: Database, short_dir: Path
) -> AsyncIterator[Served]:
    async for value in _serve(ca, database, short_dir, x509_ttl=4):
        yield value


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _open(path: Path | str | None, **kwargs: object) -> WorkloadIdentity:
    return await asyncio.to_thread(WorkloadIdentity, None if path is None else str(path), **kwargs)  # type: ignore[arg-type]


def test_socket_uri() -> None:
    assert socket_uri("/run/agent.sock") == "unix:///run/agent.sock"
    assert socket_uri("unix:///run/agent.sock") == "unix:///run/agent.sock"


async def test_the_svid_jwt_svid_and_roots_come_from_the_workload_api(
    served: Served, ca: CertificateAuthority
) -> None:
    served.registry.register(AGENT, ME)
    identity = await _open(served.path, timeout=5)
    try:
        svid = identity.svid()
        assert svid.spiffe_id == identity.spiffe_id == AGENT
        assert svid.jkt == key_thumbprint(svid.private_key)
        assert len(svid.x5c) == 2
        assert svid.not_after > time.time() + 500
        assert identity.trust_roots() == ca.roots()
        assert identity.cached_jwt_svid() is None
        token = await asyncio.to_thread(identity.jwt_svid)
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == AGENT
        assert claims["aud"] in (AUDIENCE, [AUDIENCE])
        assert identity.cached_jwt_svid() == token
        assert await asyncio.to_thread(identity.jwt_svid) == token  # cached, not fetched
    finally:
        await asyncio.to_thread(identity.close)


async def test_the_endpoint_variable_is_used_when_no_socket_is_given(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.registry.register(AGENT, ME)
    monkeypatch.setenv("SPIFFE_ENDPOINT_SOCKET", f"unix://{served.path}")
    identity = await _open(None, timeout=5)
    assert identity.svid().spiffe_id == AGENT
    await asyncio.to_thread(identity.close)


async def test_the_jwt_svid_is_renewed_after_half_its_life(
    served: Served, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    served.registry.register(AGENT, ME)
    clock = Clock()
    identity = await _open(served.path, timeout=5, now=clock)
    try:
        first = await asyncio.to_thread(identity.jwt_svid)
        clock.offset = JWT_TTL / 2 + 1
        assert identity.cached_jwt_svid() is None
        second = await asyncio.to_thread(identity.jwt_svid)
        assert second != first

        # The Workload API fails: the current token serves until it expires.
        def unavailable(*_args: object, **_kwargs: object) -> None:
            raise FetchJwtSvidError("UNAVAILABLE")

        monkeypatch.setattr(identity._client, "fetch_jwt_svid", unavailable)
        # (the server's clock is the real one: this token expires JWT_TTL after offset 0)
        clock.offset = JWT_TTL - 5
        assert identity.cached_jwt_svid() is None
        with caplog.at_level(logging.WARNING, logger="ztgate.sdk.identity"):
            assert await asyncio.to_thread(identity.jwt_svid) == second
        assert "renewal failed" in caplog.text
        clock.offset += JWT_TTL
        with pytest.raises(IdentityError, match="no JWT-SVID"):
            await asyncio.to_thread(identity.jwt_svid)
    finally:
        await asyncio.to_thread(identity.close)


async def test_a_rotated_svid_replaces_the_key(short_lived: Served) -> None:
    short_lived.registry.register(AGENT, ME)
    identity = await _open(short_lived.path, timeout=5)
    try:
        first = identity.svid()
        deadline = time.monotonic() + 5
        while identity.svid().serial == first.serial:
            assert time.monotonic() < deadline, "no new SVID within 5 s"
            await asyncio.sleep(0.05)
        second = identity.svid()
        assert second.jkt != first.jkt
        assert second.spiffe_id == AGENT
    finally:
        await asyncio.to_thread(identity.close)


async def test_an_expired_svid_is_not_used(served: Served) -> None:
    served.registry.register(AGENT, ME)
    clock = Clock()
    identity = await _open(served.path, timeout=5, now=clock)
    try:
        clock.offset = 10_000
        with pytest.raises(IdentityError, match="expired"):
            identity.svid()
    finally:
        await asyncio.to_thread(identity.close)


async def test_a_closed_identity_has_no_svid(served: Served) -> None:
    served.registry.register(AGENT, ME)
    identity = await _open(served.path, timeout=5)
    with identity:
        pass
    with pytest.raises(IdentityError, match="closed"):
        identity.svid()


async def test_an_unregistered_process_gets_no_identity_in_bounded_time(served: Served) -> None:
    started = time.monotonic()
    with pytest.raises(IdentityError, match="registered"):
        await _open(served.path, timeout=0.5)
    assert time.monotonic() - started < 5


async def test_no_socket_is_an_identity_error(short_dir: Path) -> None:
    with pytest.raises(IdentityError, match="Workload API"):
        await _open(short_dir / "missing.sock", timeout=0.5)


async def test_one_of_several_identities_can_be_picked(served: Served) -> None:
    other = f"spiffe://{DOMAIN}/agent/second"
    served.registry.register(AGENT, ME)
    served.registry.register(other, ME)
    identity = await _open(served.path, timeout=5, spiffe_id=other)
    try:
        assert identity.svid().spiffe_id == other
        token = await asyncio.to_thread(identity.jwt_svid)
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == other
    finally:
        await asyncio.to_thread(identity.close)
    default = await _open(served.path, timeout=5)
    assert default.svid().spiffe_id == AGENT
    await asyncio.to_thread(default.close)
    with pytest.raises(IdentityError):
        await _open(served.path, timeout=2, spiffe_id=f"spiffe://{DOMAIN}/agent/nobody")
