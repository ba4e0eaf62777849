"""The gateway's TLS check against a real TLS server on loopback, through httpx (sync and async)."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ztgate.clock import SystemClock
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.sdk.tls import (
    GatewayContext,
    client_verify,
    gateway_context,
    gateway_id,
    peer_spiffe_ids,
)

from .conftest import AGENT, DOMAIN

GATEWAY = gateway_id(DOMAIN)


class _Handler(BaseHTTPRequestHandler):
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


def _serve(ca: CertificateAuthority, spiffe_id: str, where: Path) -> Iterator[str]:
    svid = ca.issue_x509_svid(spiffe_id)
    assert svid.private_key is not None
    chain, key = where / "chain.pem", where / "key.pem"
    chain.write_bytes(b"".join(_hazmat.certificate_pem(c) for c in svid.chain))
    key.write_bytes(_hazmat.private_pem(svid.private_key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    _Handler.requests = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gateway_url(ca: CertificateAuthority, tmp_path: Path) -> Iterator[str]:
    yield from _serve(ca, GATEWAY, tmp_path)


@pytest.fixture
def impostor_url(ca: CertificateAuthority, tmp_path: Path) -> Iterator[str]:
    """A workload of the same trust domain: its SVID is valid for server authentication too."""
    yield from _serve(ca, AGENT, tmp_path)


def test_gateway_id() -> None:
    assert gateway_id("acme.example") == "spiffe://acme.example/ztgate/gateway"


def test_peer_spiffe_ids(ca: CertificateAuthority) -> None:
    leaf = ca.issue_x509_svid(AGENT).leaf
    assert peer_spiffe_ids(leaf.public_bytes(Encoding.DER)) == [AGENT]
    assert peer_spiffe_ids(ca.roots()[0].public_bytes(Encoding.DER)) == [f"spiffe://{DOMAIN}"]
    assert peer_spiffe_ids(None) == []
    assert peer_spiffe_ids(b"not a certificate") == []


def test_the_sync_client_accepts_the_gateway(ca: CertificateAuthority, gateway_url: str) -> None:
    with httpx.Client(verify=gateway_context(ca.roots(), GATEWAY)) as client:
        assert client.get(gateway_url).text == "ok"


def test_the_sync_client_refuses_another_workload_before_sending(
    ca: CertificateAuthority, impostor_url: str
) -> None:
    with (
        httpx.Client(verify=gateway_context(ca.roots(), GATEWAY)) as client,
        pytest.raises(httpx.ConnectError, match="not the gateway"),
    ):
        client.get(impostor_url)
    assert _Handler.requests == 0


async def test_the_async_client_accepts_the_gateway(
    ca: CertificateAuthority, gateway_url: str
) -> None:
    async with httpx.AsyncClient(verify=gateway_context(ca.roots(), GATEWAY)) as client:
        assert (await client.get(gateway_url)).text == "ok"


async def test_the_async_client_refuses_another_workload_before_sending(
    ca: CertificateAuthority, impostor_url: str
) -> None:
    async with httpx.AsyncClient(verify=gateway_context(ca.roots(), GATEWAY)) as client:
        with pytest.raises(httpx.ConnectError, match="not the gateway"):
            await client.get(impostor_url)
    assert _Handler.requests == 0


def test_another_trust_domain_is_refused(tmp_path: Path, gateway_url: str) -> None:
    other = CertificateAuthority.create(tmp_path / "other", "other.example", SystemClock())
    with (
        httpx.Client(verify=gateway_context(other.roots(), GATEWAY)) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(gateway_url)


def test_no_roots_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trust roots"):
        gateway_context([], GATEWAY)


def test_client_verify(ca: CertificateAuthority, caplog: pytest.LogCaptureFixture) -> None:
    def roots() -> list[object]:
        raise AssertionError("plain http needs no roots")

    for url in ("http://127.0.0.1:8470", "http://localhost", "http://[::1]:1"):
        assert client_verify(url, roots, lambda: AGENT) is True  # type: ignore[arg-type]
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="ztgate.sdk.tls"):
        assert client_verify("http://gateway.internal", roots, lambda: AGENT) is True  # type: ignore[arg-type]
    assert "in the clear" in caplog.text
    with pytest.raises(ValueError, match="http or https"):
        client_verify("ftp://x", roots, lambda: AGENT)  # type: ignore[arg-type]

    context = client_verify("https://gw:8470", ca.roots, lambda: AGENT)
    assert isinstance(context, GatewayContext)
    assert context.expected_spiffe_id == GATEWAY
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is False
    pinned = client_verify("https://gw", ca.roots, lambda: AGENT, server_id="spiffe://x/gw")
    assert isinstance(pinned, GatewayContext)
    assert pinned.expected_spiffe_id == "spiffe://x/gw"
    mine = ssl.create_default_context()
    assert client_verify("https://gw", ca.roots, lambda: AGENT, verify=mine) is mine
