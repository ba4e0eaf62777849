"""HTTPS to the gateway: its certificate checked against the trust roots *and* its SPIFFE ID.

The gateway's certificate names it by SPIFFE ID (a URI SAN), not by DNS
name, so hostname checking is off. Trusting the roots alone would accept
any workload of the trust domain — every agent holds an SVID that is valid
for server authentication — so the SDK also requires the peer's SPIFFE ID
to be the gateway's, checked as the handshake completes and before any
request (with its bearer token and proof) is written.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

log = logging.getLogger(__name__)
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def gateway_id(trust_domain: str) -> str:
    """The SPIFFE ID the gateway serves HTTPS with."""
    return f"spiffe://{trust_domain}/ztgate/gateway"


def peer_spiffe_ids(der: bytes | None) -> list[str]:
    """The URI SANs of a DER certificate (empty if there is none or it does not parse)."""
    if not der:
        return []
    try:
        certificate = x509.load_der_x509_certificate(der)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return []
    return [str(uri) for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier)]


def _check_peer(der: bytes | None, context: ssl.SSLContext) -> None:
    expected = getattr(context, "expected_spiffe_id", None)
    if expected is None:
        return
    found = peer_spiffe_ids(der)
    if found != [expected]:
        raise ssl.SSLCertVerificationError(
            f"the server is {found or 'no SPIFFE ID'}, not the gateway {expected}"
        )


class _CheckedSocket(ssl.SSLSocket):
    """Blocking sockets (httpx's sync client): checked when the handshake returns."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        try:
            _check_peer(self.getpeercert(binary_form=True), self.context)
        except ssl.SSLError:
            self.close()
            raise


class _CheckedObject(ssl.SSLObject):
    """Memory BIOs (httpx's async client over anyio): checked when the handshake completes."""

    def do_handshake(self) -> None:
        super().do_handshake()
        _check_peer(self.getpeercert(binary_form=True), self.context)


class GatewayContext(ssl.SSLContext):
    """A client TLS context that also requires the server's SPIFFE ID to be `expected_spiffe_id`."""

    expected_spiffe_id: str | None = None
    sslsocket_class = _CheckedSocket
    sslobject_class = _CheckedObject


def gateway_context(roots: Sequence[x509.Certificate], expected_spiffe_id: str) -> GatewayContext:
    """A TLS client context trusting `roots` and only a server named `expected_spiffe_id`."""
    context = GatewayContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    pem = "".join(root.public_bytes(Encoding.PEM).decode("ascii") for root in roots)
    if not pem:
        raise ValueError("no trust roots to verify the gateway with")
    context.load_verify_locations(cadata=pem)
    context.expected_spiffe_id = expected_spiffe_id
    return context


def client_verify(
    url: str,
    roots: Callable[[], Sequence[x509.Certificate]],
    spiffe_id: Callable[[], str],
    *,
    server_id: str | None = None,
    verify: ssl.SSLContext | None = None,
) -> ssl.SSLContext | bool:
    """What an httpx client to `url` verifies the server with.

    For https: `verify` if given, else the trust domain's `roots` and the
    gateway's SPIFFE ID (`server_id`, by default the gateway of the agent's
    own trust domain). For plain http there is nothing to verify: it is
    meant for loopback, and a warning is logged for any other host.
    """
    parsed = urlsplit(url)
    if parsed.scheme == "https":
        if verify is not None:
            return verify
        expected = server_id or gateway_id(urlsplit(spiffe_id()).netloc)
        return gateway_context(roots(), expected)
    if parsed.scheme != "http":
        raise ValueError(f"the gateway's URL must be http or https, not {url!r}")
    if parsed.hostname not in _LOOPBACK:
        log.warning(
            "talking to %s over plain HTTP: tokens and proofs travel in the clear", parsed.hostname
        )
    return True
