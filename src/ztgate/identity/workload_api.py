"""The SPIFFE Workload API on a Unix socket, so existing SPIFFE clients get identities.

Served with grpclib, using py-spiffe's generated message classes (the proto has
no package, so methods are `/SpiffeWorkloadAPI/<Method>`). Each request:

    (1) must carry the `workload.spiffe.io: true` metadata (else INVALID_ARGUMENT);
    (2) is attested from the socket's peer credentials (else PERMISSION_DENIED);
    (3) is matched against the registration entries; a process matching none
        gets PERMISSION_DENIED ("no registration entry matches this process").
        py-spiffe's client retries PERMISSION_DENIED with backoff, so an
        unregistered workload keeps retrying until an entry is registered.

The X.509-SVID stream sends at once, again before the SVID passes
`REFRESH_FRACTION` of its lifetime (counted from issuance), and at once when
the entries or the CA change. The bundle streams push when the bundle changes.
Changes made by another process (the CLI) are noticed by polling the
"entries" generation and the CA's state file every `poll_interval` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import stat
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from google.protobuf import struct_pb2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import Peer
from grpclib.server import Server, Stream
from spiffe._proto import workload_pb2 as pb

from ztgate.clock import Clock
from ztgate.errors import ConfigError, GatewayError, IdentityError
from ztgate.identity import _hazmat
from ztgate.identity.attestation import Attestor, Selectors, peer_credentials
from ztgate.identity.authority import STATE_FILE, CertificateAuthority, X509Svid
from ztgate.identity.bundle import JWT_USE, local_bundle, trust_bundle
from ztgate.identity.entries import GENERATION, EntryRegistry, RegistrationEntry, matching
from ztgate.identity.revocation import RevocationSet
from ztgate.identity.verify import verify_jwt_svid
from ztgate.store.generations import GenerationWatcher

logger = logging.getLogger(__name__)

METADATA_KEY = "workload.spiffe.io"
NO_MATCH = "no registration entry matches this process"
REFRESH_FRACTION = 0.4  # reissue well before half the lifetime, as SPIRE agents do at half
_PREFIX = "/SpiffeWorkloadAPI/"


def peer_socket(peer: Peer) -> Any:
    """The connection's socket, for its peer credentials.

    grpclib (0.4.x) has no public accessor for it: `Peer` exposes `addr()` and
    `cert()` only, so this reads the private `Peer._transport` (an asyncio
    transport). tests/unit/identity/test_workload_api.py fails loudly if a
    grpclib release moves it.

    Raises:
        IdentityError: the transport or its socket is not reachable.
    """
    transport = getattr(peer, "_transport", None)
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or not hasattr(sock, "getsockopt"):
        raise IdentityError("cannot reach the caller's socket through grpclib's Peer")
    return sock


@dataclass(frozen=True, slots=True)
class _Issued:
    svid: X509Svid
    issued_at: float
    ca_key: tuple[Any, ...]

    @property
    def refresh_at(self) -> float:
        # The certificate's own notAfter: whole seconds, so up to 1 s before svid.not_after.
        not_after = self.svid.leaf.not_valid_after_utc.timestamp()
        return self.issued_at + (not_after - self.issued_at) * REFRESH_FRACTION


class IdentitySource:
    """The CA and the registration entries, kept current, with a change signal."""

    def __init__(
        self,
        ca: CertificateAuthority,
        registry: EntryRegistry,
        watcher: GenerationWatcher,
        clock: Clock,
        *,
        x509_ttl: float = 600,
        jwt_ttl: float = 300,
        skew: float = 30,
        reload_ca: Callable[[], CertificateAuthority] | None = None,
        revocations: Callable[[], RevocationSet] | None = None,
    ) -> None:
        self.ca = ca
        self.clock = clock
        self.x509_ttl = x509_ttl
        self.jwt_ttl = jwt_ttl
        self.skew = skew
        self._registry = registry
        self._watcher = watcher
        self._reload_ca = reload_ca
        self._revocations = revocations
        self._revoked = revocations() if revocations is not None else RevocationSet()
        self._entries: list[RegistrationEntry] = []
        self._issued: dict[str, _Issued] = {}
        self._ca_stamp = self._state_stamp()
        self._ca_key = self._ca_fingerprint()
        self._changed = asyncio.Event()
        self.refresh(force=True)

    @property
    def trust_domain_id(self) -> str:
        """`spiffe://<trust domain>`."""
        return f"spiffe://{self.ca.trust_domain.name}"

    # -- change detection ----------------------------------------------------------

    def next_change(self) -> asyncio.Event:
        """An event set at the next change (take it before reading state)."""
        return self._changed

    def refresh(self, *, force: bool = False) -> bool:
        """Reload what changed (entries, CA); wake the streams if anything did."""
        changed = False
        if GENERATION in self._watcher.changed() or force:
            self._entries = [e for e in self._registry.list() if e.selectors]
            live = {e.id for e in self._entries}
            self._issued = {k: v for k, v in self._issued.items() if k in live}
            changed = True
        stamp = self._state_stamp()
        if stamp != self._ca_stamp and self._reload_ca is not None:
            self._ca_stamp = stamp
            self.ca = self._reload_ca()
        if self._revocations is not None:
            revoked = self._revocations()
            if revoked is not self._revoked:
                # Streams serving a now-revoked identity end at their next wake-up.
                self._revoked = revoked
                changed = True
        ca_key = self._ca_fingerprint()
        if ca_key != self._ca_key:
            self._ca_key = ca_key
            logger.info("trust domain %s: signing authorities changed", self.ca.trust_domain.name)
            changed = True
        if changed:
            event, self._changed = self._changed, asyncio.Event()
            event.set()
        return changed

    def _state_stamp(self) -> int | None:
        try:
            return (self.ca.directory / STATE_FILE).stat().st_mtime_ns
        except OSError:
            return None

    def _ca_fingerprint(self) -> tuple[Any, ...]:
        try:
            current = self.ca.current().id
        except IdentityError:
            current = None
        published = tuple(a.id for a in self.ca.published())
        roots = tuple(_hazmat.fingerprint(r) for r in self.ca.roots())
        return (current, published, roots)

    # -- what a caller gets --------------------------------------------------------------

    def entries_for(self, selectors: Selectors) -> list[RegistrationEntry]:
        """The entries `selectors` match now, one per SPIFFE ID, oldest first.

        Checks for changes first (on SQLite a `PRAGMA data_version`, a few
        microseconds), so an entry removed a moment ago is not served.
        """
        self.refresh()
        found = matching(self._entries, selectors.as_strings())
        unique: dict[str, RegistrationEntry] = {}
        for entry in found:
            if self._revoked.is_revoked(entry.spiffe_id) or entry.id in self._revoked.entries:
                continue  # a revoked identity gets nothing new
            unique.setdefault(entry.spiffe_id, entry)
        return list(unique.values())

    def x509_svid(self, entry: RegistrationEntry) -> _Issued:
        """The entry's current X.509-SVID, issued anew when due or when the CA changed."""
        now = self.clock.now()
        issued = self._issued.get(entry.id)
        if issued is None or issued.ca_key != self._ca_key or now >= issued.refresh_at:
            svid = self.ca.issue_x509_svid(entry.spiffe_id, ttl=self.x509_ttl)
            issued = self._issued[entry.id] = _Issued(svid, now, self._ca_key)
            logger.info(
                "issued X.509-SVID %s serial %x until %.0f",
                svid.spiffe_id,
                svid.serial,
                svid.not_after,
            )
        return issued

    def x509_bundle(self) -> bytes:
        """The trust domain's roots, DER, concatenated."""
        return b"".join(_hazmat.certificate_der(root) for root in self.ca.roots())

    def jwt_bundle(self) -> bytes:
        """The trust domain's JWT keys as a JWK Set (every key with its kid)."""
        keys = [k for k in local_bundle(self.ca)["keys"] if k.get("use") == JWT_USE]
        return json.dumps({"keys": keys}, sort_keys=True).encode()


class WorkloadApi:
    """The five Workload API methods, as a grpclib service."""

    def __init__(self, source: IdentitySource, attestor: Attestor | None = None) -> None:
        self.source = source
        self._attestor = attestor or Attestor()

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib's routing table (written by hand: no generated grpclib stubs)."""
        stream, unary = Cardinality.UNARY_STREAM, Cardinality.UNARY_UNARY
        return {
            _PREFIX + "FetchX509SVID": Handler(
                self.fetch_x509_svid, stream, pb.X509SVIDRequest, pb.X509SVIDResponse
            ),
            _PREFIX + "FetchX509Bundles": Handler(
                self.fetch_x509_bundles, stream, pb.X509BundlesRequest, pb.X509BundlesResponse
            ),
            _PREFIX + "FetchJWTSVID": Handler(
                self.fetch_jwt_svid, unary, pb.JWTSVIDRequest, pb.JWTSVIDResponse
            ),
            _PREFIX + "FetchJWTBundles": Handler(
                self.fetch_jwt_bundles, stream, pb.JWTBundlesRequest, pb.JWTBundlesResponse
            ),
            _PREFIX + "ValidateJWTSVID": Handler(
                self.validate_jwt_svid,
                unary,
                pb.ValidateJWTSVIDRequest,
                pb.ValidateJWTSVIDResponse,
            ),
        }

    # -- (1) + (2) + (3): header, attestation, entries -------------------------------

    async def _attest(self, stream: Stream[Any, Any]) -> Selectors:
        if stream.metadata is None or stream.metadata.get(METADATA_KEY) != "true":
            raise GRPCError(Status.INVALID_ARGUMENT, "security header missing from request")
        try:
            creds, pidfd = peer_credentials(peer_socket(stream.peer))
        except (OSError, IdentityError) as exc:
            logger.warning("workload attestation failed: %s", exc)
            raise GRPCError(Status.PERMISSION_DENIED, "workload attestation failed") from exc
        selectors = await asyncio.to_thread(self._attestor.attest, creds, pidfd)
        if selectors is None:
            raise GRPCError(
                Status.PERMISSION_DENIED,
                "workload attestation failed: the calling process cannot be inspected",
            )
        return selectors

    def _entries(self, selectors: Selectors) -> list[RegistrationEntry]:
        entries = self.source.entries_for(selectors)
        if not entries:
            logger.info(
                "pid %d (uid %d, %s) matches no registration entry",
                selectors.pid,
                selectors.uid,
                selectors.exe_path,
            )
            raise GRPCError(Status.PERMISSION_DENIED, NO_MATCH)
        return entries

    # -- the methods ------------------------------------------------------------------------

    async def fetch_x509_svid(self, stream: Stream[Any, Any]) -> None:
        """Stream the caller's X.509-SVIDs: now, before half their life, on every change."""
        selectors = await self._attest(stream)
        await stream.recv_message()
        last: tuple[Any, ...] = ()
        while True:
            change = self.source.next_change()
            entries = self._entries(selectors)
            with _issuance_errors():
                issued = [self.source.x509_svid(entry) for entry in entries]
                bundle = self.source.x509_bundle()
            current = (bundle, *(i.svid.serial for i in issued))
            if current != last:  # a change elsewhere (another entry) may leave these as they were
                svids = [_x509_message(i.svid, bundle) for i in issued]
                await stream.send_message(pb.X509SVIDResponse(svids=svids))
                logger.debug("sent %d X.509-SVID(s) to pid %d", len(svids), selectors.pid)
                last = current
            delay = max(0.0, min(i.refresh_at for i in issued) - self.source.clock.now())
            await _wait(change, delay)

    async def fetch_x509_bundles(self, stream: Stream[Any, Any]) -> None:
        """Stream the X.509 bundle; push it again when it changes."""
        await self._stream_bundles(
            stream, lambda: pb.X509BundlesResponse(bundles=self._bundles(self.source.x509_bundle))
        )

    async def fetch_jwt_bundles(self, stream: Stream[Any, Any]) -> None:
        """Stream the JWT bundle (JWK Set); push it again when it changes."""
        await self._stream_bundles(
            stream, lambda: pb.JWTBundlesResponse(bundles=self._bundles(self.source.jwt_bundle))
        )

    def _bundles(self, build: Callable[[], bytes]) -> Mapping[str, bytes]:
        return {self.source.trust_domain_id: build()}

    async def _stream_bundles(self, stream: Stream[Any, Any], build: Callable[[], Any]) -> None:
        self._entries(await self._attest(stream))
        await stream.recv_message()
        last = None
        while True:
            change = self.source.next_change()
            message = build()
            if message != last:
                await stream.send_message(message)
                last = message
            await change.wait()

    async def fetch_jwt_svid(self, stream: Stream[Any, Any]) -> None:
        """Issue JWT-SVIDs for the requested audience (all the caller's IDs, or the one asked)."""
        selectors = await self._attest(stream)
        request = await stream.recv_message()
        assert request is not None  # noqa: S101 - grpclib delivers the unary request
        if not request.audience:
            raise GRPCError(Status.INVALID_ARGUMENT, "audience must be specified")
        ids = [entry.spiffe_id for entry in self._entries(selectors)]
        if request.spiffe_id:
            if request.spiffe_id not in ids:
                raise GRPCError(Status.PERMISSION_DENIED, f"{NO_MATCH} for {request.spiffe_id}")
            ids = [request.spiffe_id]
        with _issuance_errors():
            svids = [
                pb.JWTSVID(
                    spiffe_id=spiffe_id,
                    svid=self.source.ca.issue_jwt_svid(
                        spiffe_id, list(request.audience), ttl=self.source.jwt_ttl
                    ),
                )
                for spiffe_id in ids
            ]
        logger.info("issued %d JWT-SVID(s) to pid %d", len(svids), selectors.pid)
        await stream.send_message(pb.JWTSVIDResponse(svids=svids))

    async def validate_jwt_svid(self, stream: Stream[Any, Any]) -> None:
        """Verify a JWT-SVID against the local bundle; any attested caller may ask."""
        await self._attest(stream)
        request = await stream.recv_message()
        assert request is not None  # noqa: S101 - grpclib delivers the unary request
        if not request.audience:
            raise GRPCError(Status.INVALID_ARGUMENT, "audience must be specified")
        if not request.svid:
            raise GRPCError(Status.INVALID_ARGUMENT, "svid must be specified")
        source = self.source
        bundles = {source.ca.trust_domain.name: trust_bundle(source.ca)}
        try:
            verified = verify_jwt_svid(
                request.svid, request.audience, bundles, source.clock.now(), skew=source.skew
            )
        except IdentityError as exc:
            raise GRPCError(Status.INVALID_ARGUMENT, f"invalid JWT-SVID: {exc.message}") from exc
        claims = struct_pb2.Struct()
        claims.update(jwt.decode(request.svid, options={"verify_signature": False}))
        await stream.send_message(
            pb.ValidateJWTSVIDResponse(spiffe_id=verified.spiffe_id, claims=claims)
        )


def _x509_message(svid: X509Svid, bundle: bytes) -> pb.X509SVID:
    assert svid.private_key is not None  # noqa: S101 - the source always generates the key
    return pb.X509SVID(
        spiffe_id=svid.spiffe_id,
        x509_svid=b"".join(_hazmat.certificate_der(c) for c in svid.chain),
        x509_svid_key=_hazmat.private_der(svid.private_key),
        bundle=bundle,
    )


@contextlib.contextmanager
def _issuance_errors() -> Any:
    try:
        yield
    except GatewayError as exc:
        logger.error("cannot issue an SVID: %s", exc.message)
        raise GRPCError(Status.UNAVAILABLE, "the certificate authority cannot issue now") from exc


async def _wait(event: asyncio.Event, timeout: float) -> None:
    # asyncio.timeout, not wait_for: in Python 3.11 wait_for can swallow a
    # cancellation that races with the event (grpclib cancels on RST_STREAM).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class WorkloadApiServer:
    """The Workload API listening on a Unix socket, and the poller that keeps it current."""

    def __init__(
        self,
        source: IdentitySource,
        socket_path: Path,
        *,
        poll_interval: float = 1.0,
        attestor: Attestor | None = None,
    ) -> None:
        self.source = source
        self.socket_path = socket_path
        self._poll_interval = poll_interval
        self._server = Server([WorkloadApi(source, attestor)])
        self._poller: asyncio.Task[None] | None = None
        # grpclib's close() stops the listener and the handlers but leaves the
        # accepted connections open until their clients hang up: they are
        # tracked here and closed with the server.
        self._protocols: weakref.WeakSet[Any] = weakref.WeakSet()
        make_protocol = self._server._protocol_factory

        def tracked_protocol() -> Any:
            protocol = make_protocol()
            self._protocols.add(protocol)
            return protocol

        self._server._protocol_factory = tracked_protocol  # type: ignore[method-assign]

    async def start(self) -> None:
        """Bind the socket (world-connectable: attestation decides who gets what).

        Raises:
            ConfigError: the directory is missing, or the path is in use.
        """
        path = self.socket_path
        if not path.parent.is_dir():
            raise ConfigError(str(path), "", "the Workload API socket's directory does not exist")
        _remove_stale_socket(path)
        await self._server.start(path=str(path))
        path.chmod(0o666)
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        logger.info("SPIFFE Workload API on unix:%s", path)

    async def close(self) -> None:
        """Stop polling, end every stream, remove the socket."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        self._server.close()
        await self._server.wait_closed()
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)
            if connection is not None:
                connection.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                self.source.refresh()
            except GatewayError as exc:
                logger.warning("cannot refresh entries or CA: %s", exc.message)


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(str(path), "", "exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: a leftover from a process that died
            return
    raise ConfigError(str(path), "", "another server is listening on this socket")
