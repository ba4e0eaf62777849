"""SPIFFE trust bundles in their JSON form (SPIFFE Trust Domain and Bundle spec, section 4).

A bundle is an RFC 7517 JWK Set: `x509-svid` keys carry a root certificate in
`x5c`, `jwt-svid` keys carry a `kid`; `spiffe_sequence` and
`spiffe_refresh_hint` say how fresh it is. The same document is served to
relying parties and read back from federated trust domains.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ztgate.errors import InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.spiffe_id import parse_trust_domain
from ztgate.identity.verify import TrustBundle

X509_USE = "x509-svid"
JWT_USE = "jwt-svid"


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


def parse_bundle(trust_domain: str, document: str | bytes) -> TrustBundle:
    """Read a (federated) trust domain's SPIFFE bundle.

    Raises:
        InvalidInputError: not a SPIFFE bundle, or a key that cannot be used.
    """
    domain = parse_trust_domain(trust_domain).name
    try:
        data = json.loads(document)
        keys = data["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"bundle of {domain} is not a JWK set: {exc}") from exc
    roots: list[x509.Certificate] = []
    jwt_keys: dict[str, Any] = {}
    for index, jwk in enumerate(keys if isinstance(keys, list) else []):
        where = f"bundle of {domain}, key {index}"
        if not isinstance(jwk, dict):
            raise InvalidInputError(f"{where}: not an object")
        use = jwk.get("use")
        try:
            if use == X509_USE:
                chain = jwk.get("x5c")
                if not isinstance(chain, list) or len(chain) != 1:
                    raise InvalidInputError(f"{where}: an x509-svid key has exactly one x5c entry")
                roots.append(
                    x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
                )
            elif use == JWT_USE:
                kid = jwk.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise InvalidInputError(f"{where}: a jwt-svid key needs a kid")
                jwt_keys[kid] = _load_public_jwk(jwk)
        except InvalidInputError:
            raise
        except (ValueError, TypeError, KeyError, jwt.PyJWTError) as exc:
            raise InvalidInputError(f"{where}: unusable key: {exc}") from exc
    if not roots and not jwt_keys:
        raise InvalidInputError(f"bundle of {domain} has no x509-svid or jwt-svid keys")
    return TrustBundle(domain, tuple(roots), jwt_keys, local=False)


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
