"""A SPIFFE bundle endpoint for the integration tests: HTTPS on 127.0.0.1, serving what a test sets.

Its certificate comes from a private Web PKI CA made here (`ca_file`), for
the `https_web` profile with `ca_file`. A real server (the standard library's
threaded HTTP server with its socket wrapped in TLS), in a thread of the test
process, while the gateway under test is another process.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztgate.identity import _hazmat


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, Any] | None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=2))
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    else:
        builder = (
            builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(subject))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


class BundleServer:
    """`GET <url>` answers `document` (JSON); every request path is recorded."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("bundle-server test CA", ca_key, None)
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate("127.0.0.1", key, (ca.subject, ca_key))
        self.ca_file = directory / "bundle-server-ca.pem"
        self.ca_file.write_bytes(_hazmat.certificate_pem(ca))
        certfile, keyfile = directory / "bundle-server.pem", directory / "bundle-server.key"
        certfile.write_bytes(_hazmat.certificate_pem(leaf))
        keyfile.write_bytes(_hazmat.private_pem(key))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.document = b'{"keys": []}'
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                body = owner.document
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}/partner/bundle.json"

    def start(self) -> BundleServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
