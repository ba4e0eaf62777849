"""Federation: fetching peers' bundles from real local HTTPS bundle endpoints, and keeping them."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztgate.clock import SystemClock
from ztgate.errors import ConfigError, IdentityError
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle
from ztgate.identity.federation import (
    DEFAULT_REFRESH,
    MAX_REFRESH,
    MIN_REFRESH,
    Federation,
    FederationError,
    Peer,
    fetch_bundle,
    peers_from_settings,
    refresh_interval,
    state_dir,
)
from ztgate.identity.providers import LocalBundles
from ztgate.identity.verify import verify_jwt_svid, verify_x509_svid
from ztgate.metrics import Metrics
from ztgate.testing import FrozenClock, make_settings

PARTNER = "partner.example"
SERVER_ID = f"spiffe://{PARTNER}/bundle-server"
AGENT = f"spiffe://{PARTNER}/agent/booking"


# -- a real HTTPS bundle endpoint ---------------------------------------------------------


@dataclass
class Endpoint:
    """A bundle endpoint on 127.0.0.1 serving whatever the test sets."""

    context: ssl.SSLContext
    port: int = 0
    document: bytes = b""
    status: int = 200
    location: str | None = None
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/bundle"

    def serve(self, ca: CertificateAuthority, **hints: int) -> None:
        self.document = json.dumps(local_bundle(ca, **hints)).encode()


@asynccontextmanager
async def serving(context: ssl.SSLContext) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(context)

    async def handle(request: web.Request) -> web.StreamResponse:
        endpoint.requests.append(request.path)
        if endpoint.delay:
            await asyncio.sleep(endpoint.delay)
        if endpoint.location is not None and request.path == "/bundle":
            raise web.HTTPFound(endpoint.location)
        return web.Response(
            body=endpoint.document, status=endpoint.status, content_type="application/json"
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    endpoint.port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=context).start()
    try:
        yield endpoint
    finally:
        await runner.cleanup()
        sock.close()


def _server_context(
    chain: list[x509.Certificate], key: _hazmat.PrivateKey, where: Path
) -> ssl.SSLContext:
    where.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = where / "server.pem", where / "server.key"
    certfile.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in chain))
    keyfile.write_bytes(_hazmat.private_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    return context


def _web_pki(where: Path) -> tuple[ssl.SSLContext, Path]:
    """A private CA (written to a PEM file) and a server context for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test web CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = where / "web-ca.pem"
    where.mkdir(parents=True, exist_ok=True)
    ca_file.write_bytes(_hazmat.certificate_pem(ca))
    return _server_context([leaf], key, where / "web"), ca_file


def _spiffe_server(
    ca: CertificateAuthority, where: Path, spiffe_id: str = SERVER_ID
) -> ssl.SSLContext:
    svid = ca.issue_x509_svid(spiffe_id, ttl=600)
    assert svid.private_key is not None
    return _server_context(list(svid.chain), svid.private_key, where)


def _reload(context: ssl.SSLContext, ca: CertificateAuthority, where: Path) -> None:
    """Make the live server present an SVID issued by `ca` from its next handshake."""
    svid = ca.issue_x509_svid(SERVER_ID, ttl=600)
    assert svid.private_key is not None
    certfile, keyfile = where / "next.pem", where / "next.key"
    certfile.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in svid.chain))
    keyfile.write_bytes(_hazmat.private_pem(svid.private_key))
    context.load_cert_chain(certfile, keyfile)


@pytest.fixture
def partner(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "partner", PARTNER, SystemClock())


@pytest.fixture
def web_pki(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    return _web_pki(tmp_path / "pki")


def _web_peer(endpoint: Endpoint, ca_file: Path | None) -> Peer:
    return Peer(PARTNER, endpoint_url=endpoint.url, ca_file=ca_file)


def _clock() -> FrozenClock:
    return FrozenClock(time.time())


# -- refresh intervals ----------------------------------------------------------------------


def test_the_refresh_hint_is_bounded() -> None:
    assert refresh_interval(None) == DEFAULT_REFRESH == 300
    assert refresh_interval(600) == 600
    assert refresh_interval(0) == refresh_interval(1) == MIN_REFRESH == 30
    assert refresh_interval(10**9) == MAX_REFRESH == 86400
    assert refresh_interval(5, minimum=1, maximum=10, default=7) == 5
    assert refresh_interval(None, minimum=1, maximum=10, default=7) == 7


# -- fetching: https_web ----------------------------------------------------------------------


async def test_https_web_fetches_the_bundle_with_a_private_ca(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner, sequence=7, refresh_hint=120)
        fetched = await fetch_bundle(_web_peer(endpoint, ca_file))
    assert fetched.bundle.sequence == 7 and fetched.bundle.refresh_hint == 120
    bundle = fetched.bundle.bundle
    assert bundle.trust_domain == PARTNER and not bundle.local
    token = partner.issue_jwt_svid(AGENT, ["ztgate"])
    assert verify_jwt_svid(token, "ztgate", {PARTNER: bundle}, time.time()).spiffe_id == AGENT
    assert fetched.document == json.loads(endpoint.document)


async def test_https_web_refuses_a_server_the_system_cas_do_not_vouch_for(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, _ = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner)
        with pytest.raises(FederationError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch_bundle(_web_peer(endpoint, None))
    assert endpoint.requests == []


async def test_https_web_checks_the_host_name(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner)
        peer = Peer(PARTNER, endpoint_url=f"https://127.0.0.2:{endpoint.port}/b", ca_file=ca_file)
        with pytest.raises(FederationError):
            await fetch_bundle(peer)


async def test_redirects_are_followed_to_https_only(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner)
        endpoint.location = "/elsewhere/bundle.json"
        fetched = await fetch_bundle(_web_peer(endpoint, ca_file))
        assert fetched.url.endswith("/elsewhere/bundle.json")
        assert endpoint.requests == ["/bundle", "/elsewhere/bundle.json"]
        endpoint.location = f"http://127.0.0.1:{endpoint.port}/plain"
        with pytest.raises(FederationError, match="not an https URL"):
            await fetch_bundle(_web_peer(endpoint, ca_file))
        endpoint.location = endpoint.url  # a loop
        with pytest.raises(FederationError, match="redirects"):
            await fetch_bundle(_web_peer(endpoint, ca_file))


@pytest.mark.parametrize(
    ("document", "status", "error"),
    [
        (b"{not json", 200, "not a SPIFFE bundle"),
        (b'{"keys": "none"}', 200, "keys is not an array"),
        (b"\xff\xfe{}", 200, "not a SPIFFE bundle"),
        (b"{}", 503, "HTTP 503"),
        (b"x" * 2048, 200, "larger than 1024 bytes"),
    ],
)
async def test_anything_but_a_bundle_is_refused(
    web_pki: tuple[ssl.SSLContext, Path], document: bytes, status: int, error: str
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.document, endpoint.status = document, status
        with pytest.raises(FederationError, match=error):
            await fetch_bundle(_web_peer(endpoint, ca_file), max_bytes=1024)


async def test_a_bundle_of_another_trust_domain_is_refused(
    tmp_path: Path, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    other = CertificateAuthority.create(tmp_path / "other", "other.example", SystemClock())
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(other)
        with pytest.raises(FederationError, match=r"root of trust domain other\.example"):
            await fetch_bundle(_web_peer(endpoint, ca_file))


async def test_a_slow_endpoint_times_out(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner)
        endpoint.delay = 1.0
        started = time.monotonic()
        with pytest.raises(FederationError, match=r"no answer within 0\.3 s"):
            await fetch_bundle(_web_peer(endpoint, ca_file), timeout=0.3)
        assert time.monotonic() - started < 0.9


async def test_an_endpoint_may_withdraw_every_key(web_pki: tuple[ssl.SSLContext, Path]) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.document = b'{"keys": [], "spiffe_sequence": 9}'
        fetched = await fetch_bundle(_web_peer(endpoint, ca_file))
    assert fetched.bundle.empty and fetched.bundle.sequence == 9


async def test_an_unreachable_endpoint_is_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        peer = Peer(PARTNER, endpoint_url=f"https://127.0.0.1:{port}/bundle")
        with pytest.raises(FederationError):
            await fetch_bundle(peer, timeout=2)


# -- fetching: https_spiffe --------------------------------------------------------------------


async def test_https_spiffe_accepts_the_configured_server_svid(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    async with serving(_spiffe_server(partner, tmp_path / "srv")) as endpoint:
        endpoint.serve(partner)
        peer = Peer(
            PARTNER, endpoint_url=endpoint.url, profile="https_spiffe", endpoint_spiffe_id=SERVER_ID
        )
        fetched = await fetch_bundle(peer, partner.roots())
    assert fetched.bundle.bundle.x509_roots == tuple(partner.roots())


async def test_https_spiffe_refuses_a_server_with_another_spiffe_id(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    async with serving(_spiffe_server(partner, tmp_path / "srv")) as endpoint:
        endpoint.serve(partner)
        peer = Peer(
            PARTNER,
            endpoint_url=endpoint.url,
            profile="https_spiffe",
            endpoint_spiffe_id=f"spiffe://{PARTNER}/the-real-server",
        )
        with pytest.raises(FederationError, match=f"is {SERVER_ID}, not spiffe://"):
            await fetch_bundle(peer, partner.roots())


async def test_https_spiffe_refuses_a_server_not_chaining_to_the_bundle(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    impostor = CertificateAuthority.create(tmp_path / "impostor", PARTNER, SystemClock())
    async with serving(_spiffe_server(impostor, tmp_path / "srv")) as endpoint:
        endpoint.serve(impostor)
        peer = Peer(
            PARTNER, endpoint_url=endpoint.url, profile="https_spiffe", endpoint_spiffe_id=SERVER_ID
        )
        with pytest.raises(FederationError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch_bundle(peer, partner.roots())
        with pytest.raises(FederationError, match=r"no X\.509 root"):
            await fetch_bundle(peer, ())
    assert endpoint.requests == []


async def test_https_spiffe_follows_the_peers_root_rotation(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    """Bootstrap, then each fetched bundle authenticates the next connection."""
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps(local_bundle(partner)))
    successor = CertificateAuthority.create(tmp_path / "successor", PARTNER, SystemClock())
    both = local_bundle(partner)
    both["keys"] += local_bundle(successor)["keys"]
    context = _spiffe_server(partner, tmp_path / "srv")
    async with serving(context) as endpoint:
        peer = Peer(
            PARTNER,
            bundle_file=bootstrap,
            endpoint_url=endpoint.url,
            profile="https_spiffe",
            endpoint_spiffe_id=SERVER_ID,
        )
        federation = Federation([peer], _clock(), state_dir=tmp_path / "state")
        assert federation.status()[0]["bundle_from"] == "bootstrap"
        endpoint.document = json.dumps(both).encode()
        assert await federation.refresh() == {PARTNER: True}  # authenticated by the bootstrap
        assert len(federation.bundles()[PARTNER].x509_roots) == 2
        _reload(context, successor, tmp_path / "srv")
        endpoint.serve(successor)
        assert await federation.refresh() == {PARTNER: True}  # by the fetched bundle
        assert federation.bundles()[PARTNER].x509_roots == tuple(successor.roots())
        assert await federation.refresh() == {PARTNER: True}  # the bootstrap alone would fail
    svid = partner.issue_x509_svid(AGENT, ttl=60)
    with pytest.raises(IdentityError, match="does not chain"):
        verify_x509_svid(list(svid.chain), federation.bundles(), time.time())


async def test_https_spiffe_can_be_served_by_the_local_trust_domain(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    """A non-self-serving endpoint: its SVID is of our own trust domain."""
    local = CertificateAuthority.create(tmp_path / "local", "ztgate.local", SystemClock())
    server_id = "spiffe://ztgate.local/bundles/partner"
    async with serving(_spiffe_server(local, tmp_path / "srv", server_id)) as endpoint:
        endpoint.serve(partner)
        peer = Peer(
            PARTNER, endpoint_url=endpoint.url, profile="https_spiffe", endpoint_spiffe_id=server_id
        )
        federation = Federation(
            [peer], _clock(), local_trust_domain="ztgate.local", local_roots=local.roots
        )
        assert await federation.refresh() == {PARTNER: True}
    assert federation.bundles()[PARTNER].jwt_keys


# -- keeping bundles: fail closed and safe ------------------------------------------------------


async def test_a_failed_fetch_keeps_the_last_good_bundle(
    partner: CertificateAuthority,
    web_pki: tuple[ssl.SSLContext, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context, ca_file = web_pki
    clock = _clock()
    async with serving(context) as endpoint:
        federation = Federation([_web_peer(endpoint, ca_file)], clock, state_dir=tmp_path / "s")
        assert federation.bundles()[PARTNER].unavailable
        endpoint.serve(partner, refresh_hint=120)
        assert await federation.refresh() == {PARTNER: True}
        good = federation.bundles()[PARTNER]
        assert good.jwt_keys and good.x509_roots and not good.unavailable
        [status] = federation.status()
        assert status["bundle_from"] == "endpoint" and status["last_error"] is None
        assert status["refreshed_at"] == clock.now()
        assert status["next_refresh"] == clock.now() + 120
        other = CertificateAuthority.create(tmp_path / "other", "other.example", SystemClock())
        failures = [
            (500, json.dumps(local_bundle(partner)).encode(), "HTTP 500"),
            (200, b"{not json", "not a SPIFFE bundle"),
            (200, json.dumps(local_bundle(other)).encode(), "trust domain other.example"),
        ]
        for attempt, (status_code, document, error) in enumerate(failures, 1):
            endpoint.status, endpoint.document = status_code, document
            caplog.clear()
            with caplog.at_level(logging.WARNING, "ztgate.identity.federation"):
                assert await federation.refresh() == {PARTNER: False}
            assert federation.bundles()[PARTNER] is good
            [status] = federation.status()
            assert error in status["last_error"]
            assert status["failures"] == attempt
            assert status["next_refresh"] == clock.now() + min(30 * 2 ** (attempt - 1), 120)
            assert "keeping the last good bundle" in caplog.text
    assert await federation.refresh() == {PARTNER: False}  # the endpoint is gone
    assert federation.bundles()[PARTNER] is good


async def test_a_domain_never_fetched_has_no_keys_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        peer = Peer(PARTNER, endpoint_url=f"https://127.0.0.1:{sock.getsockname()[1]}/b")
        federation = Federation([peer], _clock(), timeout=2)
        assert await federation.refresh() == {PARTNER: False}
    partner = CertificateAuthority.create(tmp_path / "p", PARTNER, SystemClock())
    token = partner.issue_jwt_svid(AGENT, ["ztgate"])
    with pytest.raises(IdentityError, match="federated, but its bundle has not been obtained"):
        verify_jwt_svid(token, "ztgate", federation.bundles(), time.time())
    svid = partner.issue_x509_svid(AGENT, ttl=60)
    with pytest.raises(IdentityError, match="has not been obtained"):
        verify_x509_svid(list(svid.chain), federation.bundles(), time.time())


async def test_the_peer_dropping_its_keys_is_followed(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        federation = Federation([_web_peer(endpoint, ca_file)], _clock())
        endpoint.serve(partner)
        await federation.refresh()
        token = partner.issue_jwt_svid(AGENT, ["ztgate"])
        verify_jwt_svid(token, "ztgate", federation.bundles(), time.time())
        endpoint.document = b'{"keys": []}'
        assert await federation.refresh() == {PARTNER: True}
    with pytest.raises(IdentityError, match="not in the bundle"):
        verify_jwt_svid(token, "ztgate", federation.bundles(), time.time())


# -- the state file -----------------------------------------------------------------------------


async def test_the_last_good_bundle_survives_a_restart_while_the_peer_is_down(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    context, ca_file = web_pki
    directory = tmp_path / "state"
    async with serving(context) as endpoint:
        peer = _web_peer(endpoint, ca_file)
        endpoint.serve(partner, refresh_hint=600)
        assert await Federation([peer], _clock(), state_dir=directory).refresh() == {PARTNER: True}
    saved = directory / f"{PARTNER}.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    restarted = Federation([peer], _clock(), state_dir=directory, timeout=2)
    [status] = restarted.status()
    assert status["bundle_from"] == "endpoint" and status["jwt_keys"] == 1
    assert status["next_refresh"] > time.time() + 500  # fresh: no fetch needed yet
    assert await restarted.refresh() == {PARTNER: False}
    token = partner.issue_jwt_svid(AGENT, ["ztgate"])
    assert verify_jwt_svid(token, "ztgate", restarted.bundles(), time.time()).spiffe_id == AGENT
    again = Federation([peer], _clock(), state_dir=directory)
    assert again.status()[0]["last_error"] is not None, "the failure is on record"
    assert again.status()[0]["bundle_from"] == "endpoint"


async def test_a_state_file_for_another_endpoint_or_too_open_is_ignored(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    context, ca_file = web_pki
    directory = tmp_path / "state"
    async with serving(context) as endpoint:
        endpoint.serve(partner)
        peer = _web_peer(endpoint, ca_file)
        await Federation([peer], _clock(), state_dir=directory).refresh()
    moved = Peer(PARTNER, endpoint_url="https://elsewhere.example/bundle")
    assert Federation([moved], _clock(), state_dir=directory).bundles()[PARTNER].unavailable
    (directory / f"{PARTNER}.json").chmod(0o644)
    assert Federation([peer], _clock(), state_dir=directory).bundles()[PARTNER].unavailable


async def test_a_fetch_by_another_process_is_picked_up_on_the_next_call(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    context, ca_file = web_pki
    directory = tmp_path / "state"
    async with serving(context) as endpoint:
        peer = _web_peer(endpoint, ca_file)
        gateway = Federation([peer], _clock(), state_dir=directory)
        cli = Federation([peer], _clock(), state_dir=directory)
        first = gateway.bundles()
        assert first[PARTNER].unavailable
        endpoint.serve(partner)
        assert await cli.refresh() == {PARTNER: True}
        second = gateway.bundles()
        assert second is not first and second[PARTNER].jwt_keys
        assert gateway.bundles() is second, "unchanged until the file changes"
        authority = partner.rotate(start_in=0)
        endpoint.serve(partner)
        await cli.refresh()
        assert authority.jwt_kid in gateway.bundles()[PARTNER].jwt_keys


async def test_an_operator_updated_bootstrap_bundle_wins_over_an_older_fetch(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps(local_bundle(partner)))
    directory = tmp_path / "state"
    async with serving(_spiffe_server(partner, tmp_path / "srv")) as endpoint:
        endpoint.serve(partner)
        peer = Peer(
            PARTNER,
            bundle_file=bootstrap,
            endpoint_url=endpoint.url,
            profile="https_spiffe",
            endpoint_spiffe_id=SERVER_ID,
        )
        federation = Federation([peer], _clock(), state_dir=directory)
        await federation.refresh()
        assert federation.status()[0]["bundle_from"] == "endpoint"
    restarted = Federation([peer], _clock(), state_dir=directory)
    assert restarted.status()[0]["bundle_from"] == "endpoint"
    replacement = CertificateAuthority.create(tmp_path / "replacement", PARTNER, SystemClock())
    bootstrap.write_text(json.dumps(local_bundle(replacement)))
    later = time.time() + 60
    os.utime(bootstrap, (later, later))
    assert federation.bundles()[PARTNER].x509_roots == tuple(replacement.roots())
    assert federation.status()[0]["bundle_from"] == "bootstrap"
    assert Federation([peer], _clock(), state_dir=directory).status()[0]["bundle_from"] == (
        "bootstrap"
    )


# -- bundle files ---------------------------------------------------------------------------------


def test_a_bundle_file_is_read_again_when_it_changes_and_a_bad_one_is_not_adopted(
    partner: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "partner.json"
    file.write_text(json.dumps(local_bundle(partner)))
    federation = Federation([Peer(PARTNER, bundle_file=file)], _clock())
    good = federation.bundles()
    assert federation.bundles() is good
    file.write_text("{broken")
    with caplog.at_level(logging.WARNING, "ztgate.identity.federation"):
        assert federation.bundles() is good
    assert "keeping the last good bundle" in caplog.text
    assert "not a JWK set" in federation.status()[0]["last_error"]
    other = CertificateAuthority.create(tmp_path / "other", "other.example", SystemClock())
    file.write_text(json.dumps(local_bundle(other)))
    assert federation.bundles() is good
    partner.rotate(start_in=0)
    file.write_text(json.dumps(local_bundle(partner)))
    assert federation.bundles() is not good
    assert federation.status()[0]["last_error"] is None


@pytest.mark.parametrize("strict", [True, False])
def test_an_unusable_bundle_file_at_start(tmp_path: Path, strict: bool) -> None:
    peer = Peer(PARTNER, bundle_file=tmp_path / "missing.json")
    if strict:
        with pytest.raises(ConfigError, match="cannot read the bundle"):
            Federation([peer], _clock())
    else:
        [status] = Federation([peer], _clock(), strict=False).status()
        assert "cannot read the bundle" in status["last_error"]
        assert status["bundle_from"] is None


def test_the_local_trust_domain_cannot_be_federated(tmp_path: Path) -> None:
    peer = Peer("ztgate.local", endpoint_url="https://x.example/b")
    with pytest.raises(ConfigError, match="local trust domain"):
        Federation([peer], _clock(), local_trust_domain="ztgate.local")


# -- the background refresh and the call path ----------------------------------------------------


async def test_the_background_task_refreshes_per_the_hint(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = web_pki
    async with serving(context) as endpoint:
        endpoint.serve(partner, refresh_hint=0)  # bounded below by min_refresh
        federation = Federation(
            [_web_peer(endpoint, ca_file)], SystemClock(), min_refresh=0.05, default_refresh=0.05
        )
        metrics = Metrics()
        await federation.start(metrics)
        try:
            for _ in range(200):
                if len(endpoint.requests) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert len(endpoint.requests) >= 3
            authority = partner.rotate(start_in=0)
            endpoint.serve(partner, refresh_hint=0)
            for _ in range(200):
                if authority.jwt_kid in federation.bundles()[PARTNER].jwt_keys:
                    break
                await asyncio.sleep(0.02)
            assert authority.jwt_kid in federation.bundles()[PARTNER].jwt_keys
        finally:
            await federation.stop()
        count = len(endpoint.requests)
        await asyncio.sleep(0.2)
        assert len(endpoint.requests) == count, "stopped"
    text = metrics.render().decode()
    assert 'ztgate_federation_refreshes_total{result="ok",trust_domain="partner.example"}' in text
    assert (
        'ztgate_federation_bundle_keys{trust_domain="partner.example",use="jwt-svid"} 2.0' in text
    )
    assert "ztgate_federation_last_refresh_timestamp_seconds" in text


async def test_start_without_endpoints_starts_nothing(
    partner: CertificateAuthority, tmp_path: Path
) -> None:
    file = tmp_path / "p.json"
    file.write_text(json.dumps(local_bundle(partner)))
    federation = Federation([Peer(PARTNER, bundle_file=file)], _clock())
    metrics = Metrics()
    await federation.start(metrics)
    await federation.stop()
    assert 'use="x509-svid"} 1.0' in metrics.render().decode()


async def test_local_bundles_merge_the_federation_without_reloading_the_ca(
    partner: CertificateAuthority, web_pki: tuple[ssl.SSLContext, Path], tmp_path: Path
) -> None:
    local = CertificateAuthority.create(tmp_path / "ca", "ztgate.local", SystemClock())
    context, ca_file = web_pki
    clock = _clock()
    async with serving(context) as endpoint:
        federation = Federation([_web_peer(endpoint, ca_file)], clock)
        bundles = LocalBundles(local.directory, clock, federation=federation)
        first = bundles()
        assert set(first) == {"ztgate.local", PARTNER}
        assert first["ztgate.local"].local and first[PARTNER].unavailable
        sequence = bundles.sequence
        assert bundles() is first
        endpoint.serve(partner)
        await federation.refresh()
        second = bundles()
        assert second is not first and second[PARTNER].jwt_keys
        assert second["ztgate.local"] is first["ztgate.local"]
        assert bundles.sequence == sequence, "the local bundle did not change"
        assert bundles() is second


def test_peers_from_settings_resolve_paths(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "[[identity.federation]]\n"
        'trust_domain = "partner.example"\n'
        'bundle_endpoint_url = "https://bundles.partner.example/bundle"\n'
        'ca_file = "partner-ca.pem"\n\n'
        "[[identity.federation]]\n"
        'trust_domain = "spire.example"\n'
        'bundle_file = "spire-bootstrap.json"\n'
        'bundle_endpoint_url = "https://spire.example:8443"\n'
        'endpoint_profile = "https_spiffe"\n'
        'endpoint_spiffe_id = "spiffe://spire.example/spire/server"\n',
        init=False,
    )
    web, spire = peers_from_settings(settings)
    assert web == Peer(
        PARTNER,
        endpoint_url="https://bundles.partner.example/bundle",
        ca_file=tmp_path / "partner-ca.pem",
    )
    assert web.kind == "https_web" and web.endpoint_trust_domain is None
    assert spire.kind == "https_spiffe" and spire.endpoint_trust_domain == "spire.example"
    assert spire.bundle_file == tmp_path / "spire-bootstrap.json"
    assert state_dir(settings) == tmp_path / ".ztgate" / "federation"
