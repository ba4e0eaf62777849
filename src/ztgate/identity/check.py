"""The `authenticate` check: who is calling, proven by an SVID, registered and not revoked.

The caller presents one of (or both, naming the same SPIFFE ID):

- an X.509-SVID from its mTLS handshake, in `credentials.client_certificate`
  as the DER of the leaf followed by the DER of each intermediate, simply
  concatenated (each certificate is one self-delimiting DER SEQUENCE; this is
  what a front door gets by joining the peer's chain), leaf first;
- a JWT-SVID in `credentials.bearer`, verified for the gateway's audience.

The SVID must verify against the trust bundle of the trust domain it names;
a local identity (the gateway's own trust domain) must also have a
registration entry; and neither its SPIFFE ID nor (for X.509) its serial may
be revoked. On success the verdict's facts say who the principal is, for later
checks (policy) to read.

Verified X.509 chains are cached by the SHA-256 of the leaf's DER until the
leaf expires, so a caller that reuses its SVID pays for path validation once.
The cache is dropped whenever the bundles or the revocation set change (the
providers return a different object), and revocation and registration are
checked on every call, hit or miss, so a revoked or rotated-out identity is
refused on the very next call.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509

from ztgate.errors import GatewayError
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import RevocationSet
from ztgate.identity.verify import TrustBundle, VerifiedSvid, verify_jwt_svid, verify_x509_svid
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext

NAME = "authenticate"
NO_CREDENTIALS = "no credentials: present an X.509-SVID (mTLS) or a JWT-SVID bearer token"
MAX_CHAIN_LENGTH = 5  # a leaf and up to four intermediates (the verifier's max depth is 4)
MAX_CHAIN_BYTES = 64 * 1024
MAX_TOKEN_CHARS = 16 * 1024
DEFAULT_CACHE_SIZE = 10_000

BundleProvider = Callable[[], Mapping[str, TrustBundle]]
RevocationProvider = Callable[[], RevocationSet]
Registered = Callable[[str], bool]
X509Verifier = Callable[..., VerifiedSvid]
JwtVerifier = Callable[..., VerifiedSvid]


class ChainFormatError(ValueError):
    """The presented certificate bytes are not a sequence of DER certificates."""


def split_der_chain(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates (leaf first) into one bytes each.

    Only the outer SEQUENCE headers are read (definite lengths, as DER
    requires); the certificates themselves are parsed later.

    Raises:
        ChainFormatError: empty, too long, or not whole DER SEQUENCEs.
    """
    if not data:
        raise ChainFormatError("no certificate presented")
    if len(data) > MAX_CHAIN_BYTES:
        raise ChainFormatError(f"the certificate chain is larger than {MAX_CHAIN_BYTES} bytes")
    parts: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(parts) == MAX_CHAIN_LENGTH:
            raise ChainFormatError(f"a chain has at most {MAX_CHAIN_LENGTH} certificates")
        if data[offset] != 0x30 or offset + 2 > len(data):
            raise ChainFormatError("not a DER certificate (expected a SEQUENCE)")
        first = data[offset + 1]
        header = 2
        if first < 0x80:
            length = first
        else:
            count = first & 0x7F
            if count == 0 or count > 3 or offset + 2 + count > len(data):
                raise ChainFormatError("not a DER certificate (bad length)")
            length = int.from_bytes(data[offset + 2 : offset + 2 + count], "big")
            header += count
        end = offset + header + length
        if end > len(data):
            raise ChainFormatError("a certificate is truncated")
        parts.append(data[offset:end])
        offset = end
    return parts


def registered_in(registry: EntryRegistry) -> Registered:
    """A registration lookup over an `EntryRegistry` (reads the table on every call).

    For the hot path prefer a callable over an in-memory set that is reloaded
    when the "entries" generation moves.
    """

    def registered(spiffe_id: str) -> bool:
        return any(entry.spiffe_id == spiffe_id for entry in registry.list())

    return registered


class AuthenticationCheck:
    """Pre-call check: the caller's SVID verifies, is registered (if local) and is not revoked."""

    name = NAME

    def __init__(
        self,
        *,
        audience: str,
        bundles: BundleProvider,
        revocations: RevocationProvider,
        registered: Registered | EntryRegistry,
        skew: float = 30.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
        x509_verifier: X509Verifier = verify_x509_svid,
        jwt_verifier: JwtVerifier = verify_jwt_svid,
    ) -> None:
        """Build the check.

        `bundles` and `revocations` are called on every call and must return
        the same object until their content changes (a new object drops the
        chain cache). `registered` says whether a local SPIFFE ID has a
        registration entry. The verifiers are injectable for tests.
        """
        if not audience:
            raise ValueError("the gateway's JWT-SVID audience must not be empty")
        self._audience = audience
        self._bundles = bundles
        self._revocations = revocations
        self._registered: Registered = (
            registered_in(registered) if isinstance(registered, EntryRegistry) else registered
        )
        self._skew = skew
        self._cache_size = max(0, cache_size)
        self._verify_x509 = x509_verifier
        self._verify_jwt = jwt_verifier
        self._cache: OrderedDict[bytes, VerifiedSvid] = OrderedDict()
        self._cache_bundles: object = None
        self._cache_revocations: object = None

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow with the principal's facts, or deny with the reason."""
        credentials = call.credentials
        certificate, token = credentials.client_certificate, credentials.bearer
        if not certificate and not token:
            return self._deny(NO_CREDENTIALS)
        bundles = self._bundles()
        revocations = self._revocations()
        if bundles is not self._cache_bundles or revocations is not self._cache_revocations:
            self._cache.clear()
            self._cache_bundles, self._cache_revocations = bundles, revocations
        now = ctx.clock.now()
        svid: VerifiedSvid | None = None
        try:
            if certificate:
                svid = self._x509(certificate, bundles, now)
            if token:
                if len(token) > MAX_TOKEN_CHARS:
                    return self._deny(f"token: longer than {MAX_TOKEN_CHARS} characters")
                from_token = self._jwt(token, bundles, now)
                if svid is not None and from_token.spiffe_id != svid.spiffe_id:
                    return self._deny("the X.509-SVID and the JWT-SVID name different SPIFFE IDs")
                svid = svid or from_token
        except (GatewayError, ChainFormatError) as exc:
            message = exc.message if isinstance(exc, GatewayError) else str(exc)
            if token:
                message = message.replace(token, "<token>")
            return self._deny(message[:500])
        assert svid is not None  # noqa: S101 - one of the two was present and verified
        refused = revocations.why(svid.spiffe_id, svid.serial)
        if refused is not None:
            return self._deny(f"revoked: {refused}")
        if svid.local and not self._registered(svid.spiffe_id):
            return self._deny(f"not registered: {svid.spiffe_id} has no registration entry")
        facts: dict[str, Any] = {
            "principal.spiffe_id": svid.spiffe_id,
            "principal.trust_domain": svid.trust_domain,
            "principal.local": svid.local,
            "principal.credential": "x509" if certificate else "jwt",
        }
        return Verdict(NAME, Outcome.ALLOW, f"authenticated {svid.spiffe_id}", facts)

    def clear_cache(self) -> None:
        """Forget every verified chain and token."""
        self._cache.clear()

    @property
    def cached(self) -> int:
        """How many verified chains are cached."""
        return len(self._cache)

    def _x509(self, data: bytes, bundles: Mapping[str, TrustBundle], now: float) -> VerifiedSvid:
        parts = split_der_chain(data)

        def verify() -> VerifiedSvid:
            try:
                chain: Sequence[x509.Certificate] = [
                    x509.load_der_x509_certificate(p) for p in parts
                ]
            except ValueError as exc:
                raise ChainFormatError(f"certificate: not a valid DER certificate: {exc}") from exc
            return self._verify_x509(chain, bundles, now, skew=self._skew)

        return self._cached(hashlib.sha256(parts[0]).digest(), now, verify)

    def _jwt(self, token: str, bundles: Mapping[str, TrustBundle], now: float) -> VerifiedSvid:
        # Verified tokens are cached by hash until they expire, like chains:
        # the signature, audience and expiry do not change for a given token,
        # while revocation and registration are still checked on every call.
        key = b"jwt:" + hashlib.sha256(token.encode()).digest()
        return self._cached(
            key, now, lambda: self._verify_jwt(token, self._audience, bundles, now, skew=self._skew)
        )

    def _cached(self, key: bytes, now: float, verify: Callable[[], VerifiedSvid]) -> VerifiedSvid:
        """The cached credential while unexpired, else `verify()` (cached if it succeeds)."""
        hit = self._cache.get(key)
        if hit is not None:
            if now - self._skew <= hit.not_after:
                self._cache.move_to_end(key)
                return hit
            del self._cache[key]  # expired: verify again, which refuses it
        svid = verify()
        if self._cache_size:
            self._cache[key] = svid
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return svid

    @staticmethod
    def _deny(reason: str) -> Verdict:
        return Verdict(NAME, Outcome.DENY, reason)
