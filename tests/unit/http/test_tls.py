"""mTLS: the gateway's own SVID on disk, and the client's chain in the ASGI scope.

`test_uvicorn_puts_the_client_chain_in_the_scope` runs a real uvicorn server
with our protocol subclass and a real TLS handshake: it is the pin on the
uvicorn internals we hook into (`HttpToolsProtocol.connection_made` and
`on_message_begin`) and fails loudly if uvicorn changes them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ztgate.clock import SystemClock
from ztgate.http.server import uvicorn_config
from ztgate.http.tls import (
    CaIntermediates,
    client_chain_der,
    gateway_spiffe_id,
    keep_client_roots_fresh,
    keep_server_svid_fresh,
    mtls_protocol,
    peer_chain_der,
    rebuild_chain,
    server_ssl_settings,
    write_server_svid,
)
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.check import split_der_chain


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", "example.org", SystemClock())


def test_the_gateway_svid_is_written_0600_and_replaced_on_restart(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = write_server_svid(ca, tmp_path / "tls", ttl=3600)
    assert (
        first.spiffe_id
        == gateway_spiffe_id("example.org")
        == ("spiffe://example.org/ztgate/gateway")
    )
    for path in (first.certfile, first.keyfile, first.ca_certs):
        assert path.stat().st_mode & 0o777 == 0o600
    chain = x509.load_pem_x509_certificates(first.certfile.read_bytes())
    assert len(chain) == 2
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [first.spiffe_id]
    assert x509.load_pem_x509_certificates(first.ca_certs.read_bytes()) == ca.roots()
    second = write_server_svid(ca, tmp_path / "tls", ttl=3600)
    assert x509.load_pem_x509_certificates(second.certfile.read_bytes())[0] != chain[0]
    settings = server_ssl_settings(second)
    assert settings["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    assert settings["ssl_ca_certs"] == str(second.ca_certs)


def test_the_chain_is_rebuilt_with_the_intermediate_that_signed_the_leaf(
    ca: CertificateAuthority,
) -> None:
    svid = ca.issue_x509_svid("spiffe://example.org/a", ttl=60)
    leaf_der = _hazmat.certificate_der(svid.leaf)
    other = CertificateAuthority.create(ca.directory.parent / "other", "example.org", SystemClock())
    # Same subject name, different key: only the real issuer is appended.
    intermediates = [a.certificate for a in other.authorities()] + [
        a.certificate for a in ca.authorities()
    ]
    assert rebuild_chain(leaf_der, intermediates) == list(svid.chain)
    assert rebuild_chain(leaf_der, [a.certificate for a in other.authorities()]) == [svid.leaf]
    with pytest.raises(ValueError):
        rebuild_chain(b"not a certificate", intermediates)


def test_ca_intermediates_follow_a_rotation(ca: CertificateAuthority) -> None:
    intermediates = CaIntermediates(ca.directory)
    assert list(intermediates()) == [a.certificate for a in ca.authorities()]
    ca.rotate(start_in=0)
    assert list(intermediates()) == [a.certificate for a in ca.authorities()]
    assert len(intermediates()) == 2
    assert list(CaIntermediates(ca.directory.parent / "missing")()) == []


def test_client_chain_der_reads_the_tls_extension(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid("spiffe://example.org/a", ttl=60)
    pems = [_hazmat.certificate_pem(c).decode() for c in svid.chain]
    der = client_chain_der({"extensions": {"tls": {"client_cert_chain": pems}}})
    assert der is not None
    assert split_der_chain(der) == [_hazmat.certificate_der(c) for c in svid.chain]
    assert client_chain_der({}) is None
    assert client_chain_der({"extensions": {}}) is None
    assert client_chain_der({"extensions": {"tls": {"client_cert_chain": []}}}) is None
    with pytest.raises(ValueError):
        client_chain_der({"extensions": {"tls": {"client_cert_chain": ["garbage"]}}})


def test_the_protocol_subclasses_uvicorns_httptools_protocol() -> None:
    protocol = mtls_protocol(list)
    assert issubclass(protocol, HttpToolsProtocol)
    # The two hooks must still exist on uvicorn's class for the override to matter.
    assert callable(HttpToolsProtocol.connection_made)
    assert callable(HttpToolsProtocol.on_message_begin)


def _write_client(ca: CertificateAuthority, where: Path, spiffe_id: str) -> tuple[Path, Path]:
    svid = ca.issue_x509_svid(spiffe_id, ttl=300)
    assert svid.private_key is not None
    where.mkdir(parents=True, exist_ok=True)
    chain, key = where / "client.pem", where / "client.key"
    # The client sends its whole chain; the server sees the leaf only and rebuilds the rest.
    chain.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in svid.chain))
    key.write_bytes(_hazmat.private_pem(svid.private_key))
    return chain, key


async def test_uvicorn_puts_the_client_chain_in_the_scope(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    files = write_server_svid(ca, tmp_path / "tls", ttl=3600)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn_config(
        app,
        "127.0.0.1",
        port,
        "warning",
        http=mtls_protocol(CaIntermediates(ca.directory)),
        **server_ssl_settings(files),
    )
    import uvicorn

    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    agent = "spiffe://example.org/agents/a"
    chain, key = _write_client(ca, tmp_path / "client", agent)
    context = ssl.create_default_context(cafile=str(files.ca_certs))
    context.check_hostname = False
    with_cert = ssl.create_default_context(cafile=str(files.ca_certs))
    with_cert.check_hostname = False
    with_cert.load_cert_chain(chain, key)
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        async with httpx.AsyncClient(verify=with_cert) as client:
            for _ in range(2):  # two requests on one connection: each scope has it
                response = await client.get(f"https://127.0.0.1:{port}/")
                assert response.status_code == 200
        async with httpx.AsyncClient(verify=context) as client:
            response = await client.get(f"https://127.0.0.1:{port}/")
            assert response.status_code == 200
    finally:
        server.should_exit = True
        await task
        sock.close()
    assert len(seen) == 3
    for scope in seen[:2]:
        assert scope["scheme"] == "https"
        tls = scope["extensions"]["tls"]
        pems = tls["client_cert_chain"]
        assert len(pems) == 2, "leaf plus the rebuilt intermediate"
        leaf = x509.load_pem_x509_certificate(pems[0].encode())
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [agent]
        assert tls["client_cert_error"] is None
        assert tls["tls_version"] in (0x0303, 0x0304)
        assert client_chain_der(scope) is not None
    assert seen[2]["extensions"]["tls"]["client_cert_chain"] == []
    assert client_chain_der(seen[2]) is None


async def test_a_plain_http_connection_gets_no_tls_extension(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn_config(app, "127.0.0.1", port, "warning", http=mtls_protocol(list))
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200
    finally:
        server.should_exit = True
        await task
        sock.close()
    assert "tls" not in (seen[0].get("extensions") or {})


async def _served_serial(port: int) -> int:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_the_server_svid_is_renewed_into_the_live_context(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca", "example.org", SystemClock())
    directory = tmp_path / "tls"
    files = write_server_svid(ca, directory, ttl=3)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(files.certfile), str(files.keyfile))

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    renewal = asyncio.create_task(
        keep_server_svid_fresh(lambda: ca, directory, ttl=3, context=lambda: context, stop=stop)
    )
    try:
        first = await _served_serial(port)
        for _ in range(60):
            await asyncio.sleep(0.1)
            if await _served_serial(port) != first:
                break
        else:
            raise AssertionError("the served certificate was never renewed")
    finally:
        stop.set()
        await asyncio.wait_for(renewal, 5)
        server.close()
        await server.wait_closed()


# -- federated X.509-SVIDs in the handshake ---------------------------------------------------


class _SslObject:
    """An SSL object exposing what a given Python version exposes."""

    def __init__(self, public: list[bytes] | None = None, private: list[Any] | None = None):
        if public is not None:
            self.get_unverified_chain = lambda: public
        if private is not None:
            self._sslobj = type("S", (), {"get_unverified_chain": lambda _self: private})()


def test_peer_chain_der_reads_the_chain_the_client_sent(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid("spiffe://example.org/a", ttl=60)
    ders = [_hazmat.certificate_der(c) for c in svid.chain]

    class Certificate:
        def __init__(self, der: bytes) -> None:
            self.der = der

        def public_bytes(self, encoding: int) -> bytes:
            assert encoding == 2  # DER
            return self.der

    assert peer_chain_der(_SslObject(public=ders)) == ders  # Python 3.13+
    assert peer_chain_der(_SslObject(private=[Certificate(d) for d in ders])) == ders
    assert peer_chain_der(_SslObject()) is None  # then the chain is rebuilt


async def test_client_roots_are_added_to_the_live_context(ca: CertificateAuthority) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    roots: list[x509.Certificate] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        keep_client_roots_fresh(lambda: roots, lambda: context, stop=stop, interval=0.01)
    )
    try:
        await asyncio.sleep(0.05)
        assert context.cert_store_stats()["x509_ca"] == 0
        roots.extend(ca.roots())
        for _ in range(100):
            if context.cert_store_stats()["x509_ca"] == 1:
                break
            await asyncio.sleep(0.01)
        assert context.cert_store_stats()["x509_ca"] == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_federated_client_svid_passes_the_handshake_once_its_root_is_trusted(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """A second, independent CA (the foreign trust domain) and a real uvicorn mTLS handshake."""
    partner = CertificateAuthority.create(tmp_path / "partner", "partner.example", SystemClock())
    seen: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        seen.append(dict(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    import uvicorn

    files = write_server_svid(ca, tmp_path / "tls", ttl=3600)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn_config(
            app,
            "127.0.0.1",
            port,
            "warning",
            http=mtls_protocol(CaIntermediates(ca.directory)),
            **server_ssl_settings(files),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    agent = "spiffe://partner.example/agents/booking"
    chain, key = _write_client(partner, tmp_path / "client", agent)
    client = ssl.create_default_context(cafile=str(files.ca_certs))
    client.check_hostname = False
    client.load_cert_chain(chain, key)
    roots = list(ca.roots())
    stop = asyncio.Event()
    trust = asyncio.create_task(
        keep_client_roots_fresh(
            lambda: roots,
            lambda: server.config.ssl if server.started else None,
            stop=stop,
            interval=0.01,
        )
    )
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            async with httpx.AsyncClient(verify=client) as http:
                await http.get(f"https://127.0.0.1:{port}/")
        roots.extend(partner.roots())
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(verify=client) as http:
            response = await http.get(f"https://127.0.0.1:{port}/")
        assert response.status_code == 200
    finally:
        stop.set()
        await trust
        server.should_exit = True
        await task
        sock.close()
    [scope] = seen
    pems = scope["extensions"]["tls"]["client_cert_chain"]
    sent = [x509.load_pem_x509_certificate(pem.encode()) for pem in pems]
    sans = sent[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [agent]
    assert len(sent) == 2, "the leaf and the partner's intermediate, as the client sent them"
    assert sent[1] == partner.current().certificate
