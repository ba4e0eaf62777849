"""SPIFFE trust bundles in their JSON form (SPIFFE Trust Domain and Bundle spec, section 4).

A bundle is an RFC 7517 JWK Set: `x509-svid` keys carry a root certificate in
`x5c`, `jwt-svid` keys carry a `kid`; `spiffe_sequence` and
`spiffe_refresh_hint` say how fresh it is. The same document is served to
relying parties and read back from federated trust domains (from a file or
their bundle endpoint, see `ztgate.identity.federation`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ztgate.errors import InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.spiffe_id import parse_trust_domain
from ztgate.identity.verify import TrustBundle

X509_USE = "x509-svid"
JWT_USE = "jwt-svid"
KEY_TYPES = frozenset({"EC", "RSA"})


def local_bundle(
    ca: CertificateAuthority, *, sequence: int = 1, refresh_hint: int = 300
) -> dict[str, Any]:
    """The SPIFFE bundle of the local trust domain."""
    return bundle_document(trust_bundle(ca), sequence=sequence, refresh_hint=refresh_hint)


def bundle_document(
    bundle: TrustBundle, *, sequence: int = 1, refresh_hint: int = 300
) -> dict[str, Any]:
    """A trust bundle as its SPIFFE bundle JSON document (public keys only)."""
    keys: list[dict[str, Any]] = []
    for root in bundle.x509_roots:
        jwk = _public_jwk(root.public_key())
        jwk.update(use=X509_USE, x5c=[base64.b64encode(_hazmat.certificate_der(root)).decode()])
        keys.append(jwk)
    for kid, public_key in bundle.jwt_keys.items():
        jwk = _public_jwk(public_key)
        jwk.update(use=JWT_USE, kid=kid)
        keys.append(jwk)
    return {"keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": refresh_hint}


def trust_bundle(ca: CertificateAuthority) -> TrustBundle:
    """The local trust domain's bundle, ready for verification."""
    return TrustBundle(
        trust_domain=ca.trust_domain.name,
        x509_roots=tuple(ca.roots()),
        jwt_keys={a.jwt_kid: a.jwt_key.public_key() for a in ca.published()},
        local=True,
    )


@dataclass(frozen=True, slots=True)
class SpiffeBundle:
    """A parsed SPIFFE bundle document: its keys, and how fresh its publisher says it is."""

    bundle: TrustBundle
    sequence: int | None = None
    refresh_hint: int | None = None

    @property
    def empty(self) -> bool:
        """True if the bundle trusts nothing (no X.509 root, no JWT key)."""
        return not self.bundle.x509_roots and not self.bundle.jwt_keys


def parse_bundle(trust_domain: str, document: str | bytes) -> TrustBundle:
    """Read a (federated) trust domain's SPIFFE bundle.

    Raises:
        InvalidInputError: not a SPIFFE bundle, a key that cannot be used, a
            root of another trust domain, or no usable key at all.
    """
    return read_bundle(trust_domain, document).bundle


def read_bundle(
    trust_domain: str, document: str | bytes, *, allow_empty: bool = False
) -> SpiffeBundle:
    """Read a SPIFFE bundle document, with its `spiffe_sequence` and `spiffe_refresh_hint`.

    Keys of an unknown `use` or `kty` are ignored, as the SPIFFE Trust Domain
    and Bundle spec (section 4) requires. An X.509 root must be a CA
    certificate, and a root that names a trust domain (a `spiffe://` URI SAN,
    as SPIRE's and ztgate's roots do) must name `trust_domain`: a bundle
    fetched for the wrong trust domain is refused. A sequence or refresh hint
    that is not a non-negative integer is treated as absent.

    `allow_empty`: a bundle with no usable key is valid (a peer's bundle
    endpoint can withdraw every key); otherwise it is refused.

    Raises:
        InvalidInputError: not a SPIFFE bundle, an unusable or foreign key,
            or (unless `allow_empty`) no usable key.
    """
    domain = parse_trust_domain(trust_domain).name
    try:
        data = json.loads(document)
        keys = data["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"bundle of {domain} is not a JWK set: {exc}") from exc
    if not isinstance(keys, list):
        raise InvalidInputError(f"bundle of {domain}: keys is not an array")
    roots: list[x509.Certificate] = []
    jwt_keys: dict[str, Any] = {}
    for index, jwk in enumerate(keys):
        where = f"bundle of {domain}, key {index}"
        if not isinstance(jwk, dict):
            raise InvalidInputError(f"{where}: not an object")
        use = jwk.get("use")
        try:
            if use == X509_USE:
                roots.append(_read_root(jwk, domain, where))
            elif use == JWT_USE:
                kid = jwk.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise InvalidInputError(f"{where}: a jwt-svid key needs a kid")
                if jwk.get("kty") not in KEY_TYPES:
                    continue  # an unknown key type: ignored (spec, section 4.2.1)
                jwt_keys[kid] = _load_public_jwk(jwk)
        except InvalidInputError:
            raise
        except (ValueError, TypeError, KeyError, jwt.PyJWTError) as exc:
            raise InvalidInputError(f"{where}: unusable key: {exc}") from exc
    if not roots and not jwt_keys and not allow_empty:
        raise InvalidInputError(f"bundle of {domain} has no x509-svid or jwt-svid keys")
    return SpiffeBundle(
        TrustBundle(domain, tuple(roots), jwt_keys, local=False),
        sequence=_counter(data.get("spiffe_sequence")),
        refresh_hint=_counter(data.get("spiffe_refresh_hint")),
    )


def _read_root(jwk: dict[str, Any], domain: str, where: str) -> x509.Certificate:
    chain = jwk.get("x5c")
    if not isinstance(chain, list) or len(chain) != 1 or not isinstance(chain[0], str):
        raise InvalidInputError(f"{where}: an x509-svid key has exactly one x5c entry")
    root = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidInputError(f"{where}: an x509-svid key must be a CA certificate")
    for named in _uri_trust_domains(root):
        if named != domain:
            raise InvalidInputError(f"{where}: a root of trust domain {named}, not of {domain}")
    stated = _load_public_jwk(jwk) if jwk.get("kty") in KEY_TYPES else None
    if stated is not None and _spki(stated) != _spki(root.public_key()):
        raise InvalidInputError(f"{where}: the key does not match its x5c certificate")
    return root


def _uri_trust_domains(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        uri[len("spiffe://") :].split("/", 1)[0]
        for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith("spiffe://")
    ]


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _counter(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _public_jwk(key: Any) -> dict[str, Any]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(key))
    elif isinstance(key, rsa.RSAPublicKey):
        jwk = json.loads(RSAAlgorithm.to_jwk(key))
    else:
        raise InvalidInputError(f"unsupported key type {type(key).__name__}")
    return jwk


def _load_public_jwk(jwk: dict[str, Any]) -> Any:
    material = json.dumps({k: v for k, v in jwk.items() if k not in {"use", "kid", "x5c"}})
    key: Any
    if jwk.get("kty") == "EC":
        key = ECAlgorithm.from_jwk(material)
    elif jwk.get("kty") == "RSA":
        key = RSAAlgorithm.from_jwk(material)
    else:
        raise InvalidInputError(f"unsupported key type {jwk.get('kty')!r}")
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvalidInputError("a bundle must not contain private keys")
    return key
