"""Public JWKs: conversion from keys, RFC 7638 thumbprints, and loading with limits."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from ztgate.errors import InvalidInputError

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# RFC 7638 section 3.2: the required members of each key type, in the hash.
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_MEMBER_CHARS = 1400  # an RSA-8192 modulus in base64url


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: Any) -> dict[str, str]:
    """The public JWK of a public or private key (private members never included).

    Raises:
        InvalidInputError: an unsupported key type.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        key = key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        text = ECAlgorithm.to_jwk(key)
    elif isinstance(key, rsa.RSAPublicKey):
        text = RSAAlgorithm.to_jwk(key)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        text = OKPAlgorithm.to_jwk(key)
    else:
        raise InvalidInputError(f"unsupported key type {type(key).__name__}")
    jwk: dict[str, str] = json.loads(text)
    return {name: jwk[name] for name in _REQUIRED[jwk["kty"]]}


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url.

    Raises:
        InvalidInputError: an unknown key type or a missing required member.
    """
    required = _REQUIRED.get(str(jwk.get("kty")))
    if required is None:
        raise InvalidInputError(f"unsupported JWK key type {jwk.get('kty')!r}")
    members = {}
    for name in required:
        value = jwk.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_MEMBER_CHARS:
            raise InvalidInputError(f"the JWK has no usable {name!r}")
        members[name] = value
    # The required members in lexicographic order, no whitespace (RFC 7638 section 3).
    text = json.dumps(members, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return b64url(hashlib.sha256(text.encode()).digest())


def key_thumbprint(key: Any) -> str:
    """The RFC 7638 thumbprint of a key's public part."""
    return thumbprint(public_jwk(key))


def load_public_jwk(jwk: Any) -> PublicKey:
    """A public key from a JWK that must not carry private members.

    Raises:
        InvalidInputError: not an object, private members, or an unusable key.
    """
    if not isinstance(jwk, Mapping):
        raise InvalidInputError("the JWK is not an object")
    if _PRIVATE & set(jwk):
        raise InvalidInputError("the JWK carries private key members")
    kty = jwk.get("kty")
    material = json.dumps({k: jwk[k] for k in _REQUIRED.get(str(kty), ()) if k in jwk})
    try:
        if kty == "EC":
            key: Any = ECAlgorithm.from_jwk(material)
        elif kty == "RSA":
            key = RSAAlgorithm.from_jwk(material)
        elif kty == "OKP":
            key = OKPAlgorithm.from_jwk(material)
        else:
            raise InvalidInputError(f"unsupported JWK key type {kty!r}")
    except InvalidInputError:
        raise
    except Exception as exc:  # PyJWT raises several types for malformed keys
        raise InvalidInputError(f"unusable JWK: {type(exc).__name__}") from exc
    if not isinstance(key, PublicKey):
        raise InvalidInputError("the JWK is not a public key")
    return key
