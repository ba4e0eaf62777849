"""The SPIFFE Workload API, served by grpclib, driven by py-spiffe's own client.

Nothing is mocked: a real CA, a real SQLite store, a real Unix socket, and
py-spiffe's grpcio-based `WorkloadApiClient`, `X509Source` and `JwtSource`
(synchronous, so they run in threads while the server runs on the test's loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel, UnaryUnaryMethod
from grpclib.const import Status
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.server import Server
from spiffe import JwtSource, WorkloadApiClient, X509Source
from spiffe._proto import workload_pb2 as pb
from spiffe.spiffe_id.spiffe_id import TrustDomain

from ztgate.clock import SystemClock
from ztgate.errors import ConfigError
from ztgate.identity.attestation import PeerCredentials, peer_credentials
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import LiveRevocations, RevocationRegistry
from ztgate.identity.workload_api import (
    NO_MATCH,
    IdentitySource,
    WorkloadApi,
    WorkloadApiServer,
    peer_socket,
)
from ztgate.store.database import Database
from ztgate.store.generations import GenerationWatcher

DOMAIN = "acme.example"
AGENT = "spiffe://acme.example/agent/tests"
EXE = os.readlink("/proc/self/exe")
EXE_SHA256 = hashlib.sha256(Path(EXE).read_bytes()).hexdigest()
ME = [f"unix:uid:{os.getuid()}", f"unix:path:{EXE}", f"unix:sha256:{EXE_SHA256}"]


@dataclass
class Served:
    server: WorkloadApiServer
    source: IdentitySource
    registry: EntryRegistry
    ca: CertificateAuthority
    uri: str
    path: Path


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory short enough for a Unix socket path (108 bytes at most)."""
    with tempfile.TemporaryDirectory(prefix="zt", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", DOMAIN, SystemClock())


async def _serve(
    ca: CertificateAuthority, database: Database, directory: Path, *, x509_ttl: float = 600
) -> AsyncIterator[Served]:
    clock = SystemClock()
    registry = EntryRegistry(database, clock, DOMAIN)
    watcher = GenerationWatcher(database)
    revocations = LiveRevocations(database, clock)
    source = IdentitySource(
        ca,
        registry,
        watcher,
        clock,
        x509_ttl=x509_ttl,
        reload_ca=lambda: CertificateAuthority.load(ca.directory, clock),
        revocations=revocations,
    )
    path = directory / "agent.sock"
    server = WorkloadApiServer(source, path, poll_interval=0.1)
    await server.start()
    try:
        yield Served(server, source, registry, ca, f"unix://{path}", path)
    finally:
        await server.close()
        revocations.close()
        watcher.close()


@pytest.fixture
async def served(
    ca: CertificateAuthority, database: Database, short_dir: Path
) -> AsyncIterator[Served]:
    async for value in _serve(ca, database, short_dir):
        yield value


@pytest.fixture
async def short_lived(
    ca: CertificateAuthority, database: Database, short_dir: Path
) -> AsyncIterator[Served]:
    async for value in _serve(ca, database, short_dir, x509_ttl=4):
        yield value


class Client:
    """py-spiffe's client, called from a thread (it blocks; the server needs the loop)."""

    def __init__(self, uri: str) -> None:
        self._client = WorkloadApiClient(socket_path=uri)

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self._client, method), *args, **kwargs)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)


@pytest.fixture
async def client(served: Served) -> AsyncIterator[Client]:
    value = Client(served.uri)
    yield value
    await value.close()


async def test_a_registered_process_receives_its_x509_svid(served: Served, client: Client) -> None:
    served.registry.register(AGENT, ME)
    served.registry.register("spiffe://acme.example/agent/also", ME[:1])
    svids = await client("fetch_x509_svids", timeout=5)
    assert [str(s.spiffe_id) for s in svids] == [AGENT, "spiffe://acme.example/agent/also"]
    svid = await client("fetch_x509_svid", timeout=5)
    assert str(svid.spiffe_id) == AGENT
    assert len(svid.cert_chain) == 2  # leaf and the signing intermediate
    context = await client("fetch_x509_context", timeout=5)
    bundle = context.x509_bundle_set.get_bundle_for_trust_domain(TrustDomain(DOMAIN))
    assert bundle is not None
    assert {a.fingerprint(a.signature_hash_algorithm) for a in bundle.x509_authorities} == {
        r.fingerprint(r.signature_hash_algorithm) for r in served.ca.roots()
    }
    bundles = await client("fetch_x509_bundles", timeout=5)
    assert bundles.get_bundle_for_trust_domain(TrustDomain(DOMAIN)) is not None


async def test_socket_is_world_connectable_and_removed_on_close(served: Served) -> None:
    assert served.path.stat().st_mode & 0o777 == 0o666


@pytest.mark.parametrize(
    "selectors",
    [
        [f"unix:uid:{os.getuid() + 1}"],
        [f"unix:uid:{os.getuid()}", "unix:sha256:" + "0" * 64],
        [f"unix:path:{EXE}-other"],
    ],
    ids=["other uid", "wrong sha256", "other path"],
)
async def test_a_process_matching_no_entry_is_refused(
    served: Served, client: Client, selectors: list[str]
) -> None:
    served.registry.register(AGENT, selectors)
    with pytest.raises(Exception, match=NO_MATCH):
        await client("fetch_jwt_svid", audience={"ztgate"}, timeout=5)
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await client("fetch_x509_svid", timeout=5)


async def test_jwt_svid_fetch_and_validate(served: Served, client: Client) -> None:
    served.registry.register(AGENT, ME)
    svid = await client("fetch_jwt_svid", audience={"ztgate"}, timeout=5)
    assert str(svid.spiffe_id) == AGENT
    assert svid.audience == {"ztgate"}
    validated = await client("validate_jwt_svid", svid.token, "ztgate", timeout=5)
    assert str(validated.spiffe_id) == AGENT
    with pytest.raises(Exception, match="audience"):
        await client("validate_jwt_svid", svid.token, "someone-else", timeout=5)
    bundles = await client("fetch_jwt_bundles", timeout=5)
    bundle = bundles.get_bundle_for_trust_domain(TrustDomain(DOMAIN))
    assert set(bundle.jwt_authorities) == {a.jwt_kid for a in served.ca.published()}


async def test_a_jwt_svid_for_another_id_is_refused(served: Served, client: Client) -> None:
    served.registry.register(AGENT, ME)
    with pytest.raises(Exception, match=NO_MATCH):
        await client(
            "fetch_jwt_svid",
            audience={"ztgate"},
            subject="spiffe://acme.example/agent/other",
            timeout=5,
        )


async def test_jwt_source(served: Served) -> None:
    served.registry.register(AGENT, ME)
    source = await asyncio.to_thread(JwtSource, socket_path=served.uri, timeout_in_seconds=5)
    try:
        svid = await asyncio.to_thread(source.fetch_svid, audience={"ztgate"})
        assert str(svid.spiffe_id) == AGENT
        assert source.get_bundle_for_trust_domain(TrustDomain(DOMAIN)) is not None
    finally:
        await asyncio.to_thread(source.close)


async def _updates(source: X509Source) -> tuple[list[tuple[float, Any]], threading.Event]:
    seen: list[tuple[float, Any]] = []
    event = threading.Event()

    def on_update() -> None:
        seen.append((time.time(), source.get_x509_context()))
        event.set()

    source.subscribe_for_updates(on_update)
    return seen, event


async def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_x509_source_receives_a_fresh_svid_before_half_life(short_lived: Served) -> None:
    short_lived.registry.register(AGENT, ME)
    issued = time.time()  # no later than the first SVID's issuance
    source = await asyncio.to_thread(X509Source, socket_path=short_lived.uri, timeout_in_seconds=5)
    try:
        first = source.get_x509_context().default_svid
        seen, _ = await _updates(source)
        await _wait_for(lambda: seen, timeout=3)
        arrived, context = seen[0]
        second = context.default_svid
        assert second.leaf.serial_number != first.leaf.serial_number
        assert str(second.spiffe_id) == AGENT
        not_after = first.leaf.not_valid_after_utc.timestamp()
        half_life = issued + (not_after - issued) / 2
        assert arrived < half_life, (arrived - issued, half_life - issued)
    finally:
        await asyncio.to_thread(source.close)


async def test_entry_and_ca_changes_are_pushed_at_once(served: Served) -> None:
    first = served.registry.register(AGENT, ME)
    source = await asyncio.to_thread(X509Source, socket_path=served.uri, timeout_in_seconds=5)
    try:
        second = "spiffe://acme.example/agent/second"
        served.registry.register(second, ME[:1])  # newer: not the default SVID
        served.registry.remove(first.id)  # now it is
        await _wait_for(
            lambda: str(source.get_x509_context().default_svid.spiffe_id) == second, timeout=2
        )
        before = source.get_x509_context().default_svid
        served.ca.rotate(start_in=0, ttl=86400)  # a new signing authority, effective now
        new_issuer = served.ca.current().certificate

        def reissued() -> bool:
            svid = source.get_x509_context().default_svid
            return svid.leaf.issuer == new_issuer.subject and svid.cert_chain[1] == new_issuer

        await _wait_for(reissued, timeout=2)
        assert source.get_x509_context().default_svid.leaf != before.leaf
    finally:
        await asyncio.to_thread(source.close)


@pytest.mark.parametrize("what", ["agent", "entry"])
async def test_a_revoked_identity_gets_nothing_new(
    served: Served, client: Client, database: Database, what: str
) -> None:
    entry = served.registry.register(AGENT, ME)
    await client("fetch_x509_svid", timeout=5)
    revocations = RevocationRegistry(database, SystemClock(), retention=3600)
    if what == "agent":
        revocations.revoke_agent(AGENT, reason="test")
    else:
        revocations.revoke_entry(entry.id, reason="test")
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await client("fetch_x509_svid", timeout=5)
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await client("fetch_jwt_svid", audience={"ztgate"}, timeout=5)


async def test_removing_the_entry_ends_the_stream(served: Served, client: Client) -> None:
    entry = served.registry.register(AGENT, ME)
    await client("fetch_x509_svid", timeout=5)
    served.registry.remove(entry.id)
    with pytest.raises(Exception, match="PERMISSION_DENIED"):
        await client("fetch_x509_svid", timeout=5)


async def _raw_call(uri_path: Path, metadata: dict[str, str] | None) -> pb.JWTSVIDResponse:
    channel = Channel(path=str(uri_path))
    try:
        method = UnaryUnaryMethod(
            channel, "/SpiffeWorkloadAPI/FetchJWTSVID", pb.JWTSVIDRequest, pb.JWTSVIDResponse
        )
        reply: pb.JWTSVIDResponse = await method(
            pb.JWTSVIDRequest(audience=["ztgate"]), metadata=metadata, timeout=5
        )
        return reply
    finally:
        channel.close()


async def test_missing_metadata_is_refused(served: Served) -> None:
    served.registry.register(AGENT, ME)
    for metadata in (None, {"workload.spiffe.io": "false"}):
        with pytest.raises(GRPCError) as caught:
            await _raw_call(served.path, metadata)
        assert caught.value.status is Status.INVALID_ARGUMENT
    reply = await _raw_call(served.path, {"workload.spiffe.io": "true"})
    assert reply.svids[0].spiffe_id == AGENT


async def test_an_empty_audience_is_invalid(served: Served) -> None:
    served.registry.register(AGENT, ME)
    channel = Channel(path=str(served.path))
    try:
        method = UnaryUnaryMethod(
            channel, "/SpiffeWorkloadAPI/FetchJWTSVID", pb.JWTSVIDRequest, pb.JWTSVIDResponse
        )
        with pytest.raises(GRPCError) as caught:
            await method(pb.JWTSVIDRequest(), metadata={"workload.spiffe.io": "true"}, timeout=5)
        assert caught.value.status is Status.INVALID_ARGUMENT
    finally:
        channel.close()


async def test_grpclib_still_exposes_the_peer_transport(served: Served, short_dir: Path) -> None:
    """peer_socket reads grpclib's private Peer._transport: this fails if a release moves it."""
    seen: list[PeerCredentials] = []

    async def on_request(event: RecvRequest) -> None:
        creds, pidfd = peer_credentials(peer_socket(event.peer))
        if pidfd is not None:
            os.close(pidfd)
        seen.append(creds)

    server = Server([WorkloadApi(served.source)])
    listen(server, RecvRequest, on_request)
    path = short_dir / "probe.sock"
    await server.start(path=str(path))
    try:
        with pytest.raises(GRPCError):  # nothing is registered: refused, but peer was read
            await _raw_call(path, {"workload.spiffe.io": "true"})
    finally:
        server.close()
        await server.wait_closed()
    assert seen == [PeerCredentials(os.getpid(), os.getuid(), os.getgid())]


async def test_a_stale_socket_is_replaced_and_a_live_one_refused(
    ca: CertificateAuthority, database: Database, short_dir: Path
) -> None:
    stale = short_dir / "agent.sock"
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(stale))  # bound, never listening: what a crashed server leaves
    async for served in _serve(ca, database, short_dir):
        other = WorkloadApiServer(served.source, served.path)
        with pytest.raises(ConfigError, match="another server"):
            await other.start()
        # The probe connected to this very server: let it see the probe hang up.
        await asyncio.sleep(0.05)
    assert not stale.exists()
    stale.write_text("not a socket")
    other = WorkloadApiServer(served.source, stale)
    with pytest.raises(ConfigError, match="not a socket"):
        await other.start()
    missing = WorkloadApiServer(served.source, short_dir / "nowhere" / "agent.sock")
    with pytest.raises(ConfigError, match="directory"):
        await missing.start()
