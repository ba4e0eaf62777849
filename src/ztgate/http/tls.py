"""mTLS at the front door: the gateway's own X.509-SVID and the client's chain in the scope.

With `[gateway] tls = true`, `serve` issues the gateway an X.509-SVID
(`spiffe://<trust domain>/ztgate/gateway`, a URI SAN only: clients verify the
server by its SPIFFE ID or by the trust domain's roots with hostname checking
off), writes it to the data directory and runs uvicorn with HTTPS, asking for
(but not requiring) a client certificate checked against the trust domain's
roots. A client without a certificate can still present a bearer token.

uvicorn does not put the peer certificate in the ASGI scope. `mtls_protocol`
returns a subclass of uvicorn's `HttpToolsProtocol` that, once per connection
(`connection_made`, after the handshake verified the chain against the trust
store), reads the chain the client sent and adds it to every request's scope
(`on_message_begin`) as the ASGI TLS extension,
`scope["extensions"]["tls"]["client_cert_chain"]`: PEM strings, leaf first.
The chain the client sent comes from `SSLObject.get_unverified_chain()`
(public from Python 3.13; on 3.11 and 3.12 the same method of the underlying
`_ssl` object). Where neither exists, only the leaf is available, and the
chain is rebuilt by appending the local CA's intermediate that signed it.
The `authenticate` check verifies the whole chain again, against the bundle
of the trust domain the leaf names.

The handshake's trust store holds the local roots and, kept current by
`keep_client_roots_fresh`, every federated trust domain's X.509 roots, so
federated agents can present their X.509-SVIDs too. OpenSSL can add roots
to a live context but not remove them: a root dropped from a federated bundle
still passes the handshake until the gateway restarts, and the `authenticate`
check refuses its SVIDs from the very next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ztgate import keyfiles
from ztgate.errors import GatewayError
from ztgate.identity import _hazmat
from ztgate.identity.authority import STATE_FILE, CertificateAuthority

logger = logging.getLogger(__name__)

GATEWAY_PATH = "/ztgate/gateway"
TLS_DIR = "tls"
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_ENCODING_DER = 2  # `_ssl.ENCODING_DER`
MAX_CHAIN = 5  # as many certificates as the `authenticate` check accepts

Intermediates = Callable[[], Sequence[x509.Certificate]]


@dataclass(frozen=True, slots=True)
class ServerFiles:
    """The files uvicorn's TLS settings point at."""

    spiffe_id: str
    certfile: Path
    keyfile: Path
    ca_certs: Path
    not_after: float


def gateway_spiffe_id(trust_domain: str) -> str:
    """The gateway's own SPIFFE ID in `trust_domain`."""
    return f"spiffe://{trust_domain}{GATEWAY_PATH}"


def write_server_svid(ca: CertificateAuthority, directory: Path, *, ttl: float) -> ServerFiles:
    """Issue the gateway its X.509-SVID and write chain, key and roots (mode 0600).

    Files written before (by an earlier start) are replaced.

    Raises:
        IdentityError: the CA has no active signing authority.
    """
    spiffe_id = gateway_spiffe_id(ca.trust_domain.name)
    svid = ca.issue_x509_svid(spiffe_id, ttl=ttl)
    assert svid.private_key is not None  # noqa: S101 - the CA generated the key
    files = ServerFiles(
        spiffe_id,
        directory / "gateway.pem",
        directory / "gateway.key",
        directory / "roots.pem",
        svid.not_after,
    )
    contents = {
        files.certfile: b"".join(_hazmat.certificate_pem(c) for c in svid.chain),
        files.keyfile: _hazmat.private_pem(svid.private_key),
        files.ca_certs: b"".join(_hazmat.certificate_pem(root) for root in ca.roots()),
    }
    for path, data in contents.items():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        keyfiles.write_private(path, data)
    return files


class CaIntermediates:
    """The local CA's signing certificates, re-read when its `state.json` changes.

    Only the public `signing-<id>.pem` files are read: no private key, no passphrase.
    """

    def __init__(self, ca_dir: Path) -> None:
        """Read the intermediates now (none if the CA cannot be read)."""
        self._ca_dir = ca_dir
        self._stamp: tuple[int, int] | None = None
        self._certificates: tuple[x509.Certificate, ...] = ()
        self()

    def __call__(self) -> Sequence[x509.Certificate]:
        """The intermediates, reloaded first if the CA's state changed."""
        try:
            status = os.stat(self._ca_dir / STATE_FILE)
        except OSError:
            return self._certificates
        stamp = (status.st_mtime_ns, status.st_size)
        if stamp != self._stamp:
            try:
                state = json.loads((self._ca_dir / STATE_FILE).read_text(encoding="utf-8"))
                self._certificates = tuple(
                    x509.load_pem_x509_certificate(
                        (self._ca_dir / f"signing-{a['id']}.pem").read_bytes()
                    )
                    for a in state["authorities"]
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("cannot read the CA's intermediates in %s: %s", self._ca_dir, exc)
                return self._certificates
            self._stamp = stamp
        return self._certificates


def rebuild_chain(
    leaf_der: bytes, intermediates: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The leaf followed by the intermediate that signed it, when one of ours did.

    Raises:
        ValueError: `leaf_der` is not a certificate.
    """
    leaf = x509.load_der_x509_certificate(leaf_der)
    for candidate in intermediates:
        if candidate.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return [leaf, candidate]
    return [leaf]


def peer_chain_der(ssl_object: Any) -> list[bytes] | None:
    """The certificates the peer sent (DER, leaf first), or None if that cannot be read."""
    public = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return list(public() or [])
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if private is None:
        return None
    return [certificate.public_bytes(_ENCODING_DER) for certificate in private() or []]


def tls_extension(ssl_object: Any, intermediates: Intermediates) -> dict[str, Any]:
    """The ASGI TLS extension for a connection's SSL object (client chain as PEM, leaf first)."""
    extension: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return extension
    try:
        sent = peer_chain_der(ssl_object) or [leaf]
        if len(sent) > 1 and sent[0] == leaf:
            chain = [x509.load_der_x509_certificate(der) for der in sent[:MAX_CHAIN]]
        else:
            chain = rebuild_chain(leaf, intermediates())
    except ValueError as exc:
        extension["client_cert_error"] = f"unreadable client certificate: {exc}"
        return extension
    extension["client_cert_chain"] = [_hazmat.certificate_pem(c).decode() for c in chain]
    extension["client_cert_name"] = chain[0].subject.rfc4514_string()
    return extension


def mtls_protocol(intermediates: Intermediates) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, adding the ASGI TLS extension to every request's scope.

    Hooks: `connection_made` (the asyncio protocol API; on a TLS transport it
    runs after the handshake) reads the peer's certificate once per
    connection; `on_message_begin` (the httptools parser callback that
    creates `self.scope`) adds the extension to each request's scope.
    """

    class MtlsHttpToolsProtocol(HttpToolsProtocol):
        tls: dict[str, Any] | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                self.tls = None
                return
            try:
                self.tls = tls_extension(ssl_object, intermediates)
            except Exception as exc:  # a bad certificate must not kill the connection
                logger.warning("cannot read the client certificate: %r", exc)
                self.tls = {"client_cert_chain": [], "client_cert_error": repr(exc)[:200]}

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.tls is not None:
                extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
                extensions["tls"] = dict(self.tls)

    return MtlsHttpToolsProtocol


def client_chain_der(scope: Any) -> bytes | None:
    """The client's certificate chain from the scope's TLS extension, as concatenated DER.

    None when there is no TLS extension or the client presented no certificate.

    Raises:
        ValueError: a PEM entry is not a certificate.
    """
    extensions = scope.get("extensions") or {}
    tls = extensions.get("tls") if isinstance(extensions, dict) else None
    if not isinstance(tls, dict):
        return None
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return b"".join(ssl.PEM_cert_to_DER_cert(pem) for pem in chain)


def server_ssl_settings(files: ServerFiles) -> dict[str, Any]:
    """uvicorn `Config` keyword arguments for HTTPS with optional client certificates."""
    return {
        "ssl_certfile": str(files.certfile),
        "ssl_keyfile": str(files.keyfile),
        "ssl_ca_certs": str(files.ca_certs),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
    }


async def keep_server_svid_fresh(
    load_ca: Callable[[], CertificateAuthority],
    directory: Path,
    *,
    ttl: float,
    context: Callable[[], ssl.SSLContext | None],
    stop: asyncio.Event,
    retry_seconds: float = 60.0,
) -> None:
    """Re-issue the gateway's X.509-SVID before half its lifetime, into the live TLS context.

    `SSLContext.load_cert_chain` on the context the server already uses makes
    every later handshake present the new certificate; connections already
    open keep theirs. If the CA cannot sign (e.g. no active authority), the
    error is logged and retried; the current certificate serves until then.
    """
    not_after = _served_not_after(directory / "gateway.pem")
    while not stop.is_set():
        wait = max(1.0, (not_after - time.time()) / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
            return
        try:
            files = await asyncio.to_thread(write_server_svid, load_ca(), directory, ttl=ttl)
        except GatewayError as exc:
            logger.error("could not renew the gateway's TLS certificate: %s", exc)
            not_after = time.time() + 2 * retry_seconds
            continue
        live = context()
        if live is not None:
            live.load_cert_chain(str(files.certfile), str(files.keyfile))
        not_after = files.not_after
        logger.info("renewed the gateway's TLS certificate until %.0f", not_after)


async def keep_client_roots_fresh(
    roots: Callable[[], Iterable[x509.Certificate]],
    context: Callable[[], ssl.SSLContext | None],
    *,
    stop: asyncio.Event,
    interval: float = 1.0,
) -> None:
    """Add every root `roots()` lists (local and federated) to the live TLS context's trust store.

    Looks every `interval` seconds; a root not yet in the store is loaded with
    `SSLContext.load_verify_locations`, so the next handshakes accept client
    certificates chaining to it. Roots are never removed (OpenSSL cannot): the
    `authenticate` check is what refuses an SVID whose domain dropped its root.
    """
    loaded: set[bytes] | None = None
    while not stop.is_set():
        live = context()
        if live is not None:
            try:
                if loaded is None:  # what the context was created with
                    loaded = {hashlib.sha256(der).digest() for der in live.get_ca_certs(True)}
                new = {_hazmat.fingerprint(r): r for r in roots()}
                added = [r for fp, r in new.items() if fp not in loaded]
                if added:
                    cadata = b"".join(_hazmat.certificate_pem(r) for r in added).decode()
                    live.load_verify_locations(cadata=cadata)
                    loaded.update(_hazmat.fingerprint(r) for r in added)
                    logger.info("TLS: %d more client root(s) trusted in the handshake", len(added))
            except (GatewayError, ssl.SSLError, ValueError) as exc:
                logger.warning("TLS: could not update the client roots: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def _served_not_after(certfile: Path) -> float:
    try:
        leaf = x509.load_pem_x509_certificate(certfile.read_bytes())
    except (OSError, ValueError):
        return time.time()  # unknown: renew soon
    return leaf.not_valid_after_utc.timestamp()
