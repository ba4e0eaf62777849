"""Public JWKs: conversion, RFC 7638 thumbprints, and loading that refuses private keys."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from ztgate.errors import InvalidInputError
from ztgate.warrants.jwk import (
    MAX_MEMBER_CHARS,
    b64url,
    key_thumbprint,
    load_public_jwk,
    public_jwk,
    thumbprint,
)

# RFC 7638 section 3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _raw(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_b64url_is_unpadded_and_url_safe() -> None:
    assert b64url(b"") == ""
    assert b64url(b"\xfb\xff") == "-_8"
    assert b64url(b"a") == "YQ"
    assert "=" not in b64url(bytes(range(256)))


def test_the_rfc_7638_example_thumbprint() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    # Optional members (alg, kid, use) are not part of it, nor is the members' order.
    bare = {"e": RFC7638_JWK["e"], "n": RFC7638_JWK["n"], "kty": "RSA"}
    assert thumbprint(bare) == RFC7638_THUMBPRINT
    assert thumbprint({**bare, "use": "sig", "x5c": ["..."]}) == RFC7638_THUMBPRINT


def test_the_rfc_7638_key_loads_and_round_trips() -> None:
    key = load_public_jwk(RFC7638_JWK)
    assert isinstance(key, rsa.RSAPublicKey)
    assert public_jwk(key) == {"e": "AQAB", "kty": "RSA", "n": RFC7638_JWK["n"]}
    assert key_thumbprint(key) == RFC7638_THUMBPRINT


def test_an_ec_key_is_thumbprinted_over_crv_kty_x_y() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private)
    assert list(jwk) == ["crv", "kty", "x", "y"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert "d" not in jwk
    expected = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":")
    )
    digest = hashlib.sha256(expected.encode()).digest()
    assert thumbprint(jwk) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert key_thumbprint(private) == key_thumbprint(private.public_key()) == thumbprint(jwk)
    loaded = load_public_jwk(jwk)
    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    assert loaded.public_numbers() == private.public_key().public_numbers()


@pytest.mark.parametrize(("curve", "name"), [(ec.SECP384R1(), "P-384"), (ec.SECP521R1(), "P-521")])
def test_other_ec_curves(curve: ec.EllipticCurve, name: str) -> None:
    key = ec.generate_private_key(curve)
    jwk = public_jwk(key)
    assert jwk["crv"] == name
    assert load_public_jwk(jwk).public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_an_ed25519_key_is_thumbprinted_over_crv_kty_x() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = public_jwk(private)
    assert jwk == {"crv": "Ed25519", "kty": "OKP", "x": b64url(_raw(private.public_key()))}
    text = '{"crv":"Ed25519","kty":"OKP","x":"' + jwk["x"] + '"}'
    assert thumbprint(jwk) == b64url(hashlib.sha256(text.encode()).digest())
    loaded = load_public_jwk(jwk)
    assert isinstance(loaded, ed25519.Ed25519PublicKey)
    assert _raw(loaded) == _raw(private.public_key())


def test_an_rsa_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = public_jwk(private)
    assert set(jwk) == {"e", "kty", "n"}
    assert key_thumbprint(load_public_jwk(jwk)) == key_thumbprint(private)


def test_different_keys_have_different_thumbprints() -> None:
    prints = {key_thumbprint(ec.generate_private_key(ec.SECP256R1())) for _ in range(5)}
    assert len(prints) == 5
    assert all(len(p) == 43 for p in prints)


@pytest.mark.parametrize(
    "key",
    [
        ed448.Ed448PrivateKey.generate(),
        x25519.X25519PrivateKey.generate(),
        "not a key",
        None,
    ],
)
def test_public_jwk_refuses_unsupported_keys(key: Any) -> None:
    with pytest.raises(InvalidInputError, match="unsupported key type"):
        public_jwk(key)


@pytest.mark.parametrize(
    ("jwk", "fragment"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "unsupported JWK key type 'oct'"),
        ({"kty": "ec", "crv": "P-256", "x": "a", "y": "b"}, "unsupported JWK key type 'ec'"),
        ({"crv": "P-256", "x": "a", "y": "b"}, "unsupported JWK key type None"),
        ({"kty": "EC", "crv": "P-256", "x": "a"}, "no usable 'y'"),
        ({"kty": "EC", "crv": "P-256", "x": "a", "y": ""}, "no usable 'y'"),
        ({"kty": "EC", "crv": "P-256", "x": 5, "y": "b"}, "no usable 'x'"),
        ({"kty": "RSA", "n": "a"}, "no usable 'e'"),
        ({"kty": "OKP", "x": "a"}, "no usable 'crv'"),
        ({"kty": "RSA", "e": "AQAB", "n": "a" * (MAX_MEMBER_CHARS + 1)}, "no usable 'n'"),
    ],
)
def test_thumbprint_refuses_unknown_or_incomplete_keys(jwk: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        thumbprint(jwk)
    assert fragment in caught.value.message


def test_the_longest_allowed_member_is_accepted() -> None:
    assert len(thumbprint({"kty": "RSA", "e": "AQAB", "n": "a" * MAX_MEMBER_CHARS})) == 43


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_load_refuses_private_members(member: str) -> None:
    jwk = {**public_jwk(ec.generate_private_key(ec.SECP256R1())), member: "AAAA"}
    with pytest.raises(InvalidInputError, match="carries private key members"):
        load_public_jwk(jwk)


def test_load_refuses_a_complete_private_jwk() -> None:
    from jwt.algorithms import ECAlgorithm

    private = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    assert "d" in private
    with pytest.raises(InvalidInputError, match="private key members"):
        load_public_jwk(private)


@pytest.mark.parametrize(
    ("jwk", "fragment"),
    [
        ("not an object", "not an object"),
        ([("kty", "EC")], "not an object"),
        ({"kty": "oct", "k2": "x"}, "unsupported JWK key type 'oct'"),
        ({"kty": None}, "unsupported JWK key type None"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "BBBB"}, "unusable JWK"),
        ({"kty": "EC", "crv": "P-999", "x": "AAAA", "y": "BBBB"}, "unusable JWK"),
        ({"kty": "EC", "crv": "P-256"}, "unusable JWK"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "unusable JWK"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, "unusable JWK"),
        ({"kty": "OKP", "crv": "Nope", "x": "AAAA"}, "unusable JWK"),
    ],
)
def test_load_refuses_unusable_keys(jwk: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        load_public_jwk(jwk)
    assert fragment in caught.value.message


def test_load_refuses_okp_keys_that_do_not_sign_with_ed25519() -> None:
    ed = ed448.Ed448PrivateKey.generate().public_key()
    with pytest.raises(InvalidInputError, match="not a public key"):
        load_public_jwk({"kty": "OKP", "crv": "Ed448", "x": b64url(_raw(ed))})
    exchange = x25519.X25519PrivateKey.generate().public_key()
    with pytest.raises(InvalidInputError):
        load_public_jwk({"kty": "OKP", "crv": "X25519", "x": b64url(_raw(exchange))})


def test_load_ignores_members_beyond_the_required_ones() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()))
    loaded = load_public_jwk({**jwk, "kid": "k1", "use": "sig", "alg": "ES256", "x5c": 7})
    assert public_jwk(loaded) == jwk
