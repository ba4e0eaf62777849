"""Verifying SVIDs: X.509-SVID chains and JWT-SVID tokens, against trust bundles.

Both verifiers pick the trust bundle by the trust domain the SVID names, and
verify against that bundle only. cryptography's path validation would accept a
leaf naming `spiffe://evil.example/...` if our CA signed it; choosing the
roots by the claimed trust domain makes such a leaf fail (no bundle for it),
and a leaf claiming our domain but signed by a federated CA fail too.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ztgate.errors import IdentityError, InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.spiffe_id import parse_spiffe_id

# JWT-SVID spec, section 3: the algorithms a JWT-SVID may use. Never none, never HMAC.
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """What one trust domain's SVIDs are verified with."""

    trust_domain: str
    x509_roots: tuple[x509.Certificate, ...] = ()
    jwt_keys: Mapping[str, Any] = field(default_factory=dict)  # kid -> public key
    local: bool = False
    # Why a federated domain has no keys (its bundle was never obtained, ...):
    # the reason its SVIDs are refused. Empty for a bundle that was read.
    unavailable: str = ""


@dataclass(frozen=True, slots=True)
class VerifiedSvid:
    """An SVID that verified: who it names and until when it is good."""

    spiffe_id: str
    trust_domain: str
    not_after: float
    kind: str  # "x509" or "jwt"
    serial: int | None = None
    local: bool = True


def _fail(step: str, reason: str) -> IdentityError:
    return IdentityError(f"{step}: {reason}")


def verify_x509_svid(
    chain: Sequence[x509.Certificate],
    bundles: Mapping[str, TrustBundle],
    now: float,
    *,
    skew: float = 30.0,
) -> VerifiedSvid:
    """Verify an X.509-SVID chain (leaf first) presented by a client.

    Raises:
        IdentityError: the chain is not a valid SVID of a trusted domain; the
            message names the step that failed.
    """
    if not chain:
        raise _fail("certificate", "no certificate presented")
    leaf, intermediates = chain[0], list(chain[1:])
    # (1) exactly one URI SAN, a canonical SPIFFE ID with a path
    spiffe_id = _single_uri_san(leaf)
    try:
        parsed = parse_spiffe_id(spiffe_id)
    except InvalidInputError as exc:
        raise _fail("SPIFFE ID", exc.message) from exc
    if parsed.path in ("", "/"):
        raise _fail("SPIFFE ID", "an SVID must name a workload (a path), not a trust domain")
    # (2) a leaf: not a CA, signs (digitalSignature), does not sign certificates
    _check_leaf_extensions(leaf)
    # (3) validity window, with the allowed clock skew
    not_before = leaf.not_valid_before_utc.timestamp()
    not_after = leaf.not_valid_after_utc.timestamp()
    if now + skew < not_before:
        raise _fail("validity", "the certificate is not valid yet")
    if now - skew > not_after:
        raise _fail("validity", "the certificate has expired")
    # (4) the bundle of the trust domain the leaf names, and no other
    domain = parsed.trust_domain.name
    bundle = bundles.get(domain)
    if bundle is None or not bundle.x509_roots:
        raise _fail("trust domain", _untrusted(domain, bundle))
    # (5) the chain up to one of that domain's roots (RFC 5280 path validation)
    when = min(max(now, not_before), not_after)  # skew already allowed for above
    verifier = (
        PolicyBuilder()
        .store(Store(list(bundle.x509_roots)))
        .time(datetime.datetime.fromtimestamp(when, datetime.UTC))
        .max_chain_depth(4)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise _fail("chain", f"does not chain to a root of {domain}: {exc}") from exc
    return VerifiedSvid(
        spiffe_id=spiffe_id,
        trust_domain=domain,
        not_after=not_after,
        kind="x509",
        serial=leaf.serial_number,
        local=bundle.local,
    )


def _untrusted(domain: str, bundle: TrustBundle | None) -> str:
    if bundle is not None and bundle.unavailable:
        return f"{domain} is federated, but {bundle.unavailable}"
    return f"{domain} is not a trusted trust domain"


def _single_uri_san(leaf: x509.Certificate) -> str:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise _fail("SPIFFE ID", "the certificate has no subject alternative name") from exc
    except (x509.DuplicateExtension, ValueError) as exc:
        raise _fail("certificate", f"malformed extensions: {exc}") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise _fail("SPIFFE ID", f"an SVID has exactly one URI SAN, this one has {len(uris)}")
    return uris[0]


def _check_leaf_extensions(leaf: x509.Certificate) -> None:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    except (x509.DuplicateExtension, ValueError) as exc:
        raise _fail("certificate", f"malformed extensions: {exc}") from exc
    if constraints is not None and constraints.ca:
        raise _fail("leaf", "the certificate is a CA (CA:TRUE), not an SVID")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise _fail("leaf", "the certificate has no key usage") from exc
    if not usage.digital_signature:
        raise _fail("leaf", "the certificate lacks the digitalSignature key usage")
    if usage.key_cert_sign or usage.crl_sign:
        raise _fail("leaf", "a leaf SVID must not sign certificates or CRLs")


def verify_jwt_svid(
    token: str,
    audience: str,
    bundles: Mapping[str, TrustBundle],
    now: float,
    *,
    skew: float = 30.0,
) -> VerifiedSvid:
    """Verify a JWT-SVID for `audience`.

    Raises:
        IdentityError: malformed, a forbidden algorithm, an unknown key, a bad
            signature, the wrong audience, expired, or an untrusted domain.
    """
    # (1) the header: an allowed asymmetric algorithm and a key id
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _fail("token", f"not a JWT: {exc}") from exc
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in JWT_ALGORITHMS:
        raise _fail("token", f"algorithm {algorithm!r} is not allowed for a JWT-SVID")
    if header.get("typ") not in (None, "JWT", "JOSE"):
        raise _fail("token", f"type {header.get('typ')!r} is not a JWT-SVID")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail("token", "the header names no key (kid)")
    # (2) the subject's trust domain picks the bundle; the kid picks the key
    subject = unverified.get("sub")
    try:
        parsed = parse_spiffe_id(subject if isinstance(subject, str) else "")
    except InvalidInputError as exc:
        raise _fail("SPIFFE ID", exc.message) from exc
    if parsed.path in ("", "/"):
        raise _fail("SPIFFE ID", "an SVID must name a workload (a path), not a trust domain")
    domain = parsed.trust_domain.name
    bundle = bundles.get(domain)
    if bundle is None or bundle.unavailable:
        raise _fail("trust domain", _untrusted(domain, bundle))
    key = bundle.jwt_keys.get(kid)
    if key is None:
        raise _fail("token", f"key {kid!r} is not in the bundle of {domain}")
    if algorithm.startswith(("ES",)) != isinstance(key, ec.EllipticCurvePublicKey) or (
        algorithm.startswith(("RS", "PS")) != isinstance(key, rsa.RSAPublicKey)
    ):
        raise _fail("token", f"algorithm {algorithm} does not match the key {kid!r}")
    # (3) signature, audience, expiry (with skew); sub/aud/exp are required
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            leeway=skew,
            # Expiry is checked below against the injected clock, not PyJWT's.
            options={
                "require": ["sub", "aud", "exp"],
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidAudienceError as exc:
        raise _fail("audience", f"the token is not for {audience!r}") from exc
    except jwt.PyJWTError as exc:
        raise _fail("token", str(exc)) from exc
    expires = claims["exp"]
    if not isinstance(expires, int | float) or isinstance(expires, bool) or expires < now - skew:
        raise _fail("validity", "the token has expired")
    not_before = claims.get("nbf")
    if not_before is not None and (
        not isinstance(not_before, int | float) or isinstance(not_before, bool)
    ):
        raise _fail("validity", "the token's nbf is not a number")
    if not_before is not None and not_before > now + skew:
        raise _fail("validity", "the token is not valid yet")
    return VerifiedSvid(
        spiffe_id=str(parsed),
        trust_domain=domain,
        not_after=float(claims["exp"]),
        kind="jwt",
        local=bundle.local,
    )


def certificate_fingerprint(certificate: x509.Certificate) -> bytes:
    """The SHA-256 fingerprint used to cache verified chains."""
    return _hazmat.fingerprint(certificate)
