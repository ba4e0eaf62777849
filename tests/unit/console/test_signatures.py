"""Session-bound signatures: the statement, the session key, WebCrypto's P1363 signatures."""

from __future__ import annotations

import base64

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ztgate.console.signatures import (
    STATEMENT_TYPE,
    SignatureError,
    p1363_signature,
    session_key,
    statement,
    verify,
)
from ztgate.errors import InvalidInputError
from ztgate.warrants.jwk import key_thumbprint, public_jwk

FIELDS = {
    "approval_id": "01abc",
    "decision": "approve",
    "comment": 'ok "quoted"\nünï € \u0001',
    "request_sha256": "f" * 64,
    "session_id": "s1",
}


def test_the_statement_is_canonical_json_with_sorted_string_fields() -> None:
    signed = statement(**FIELDS)
    parsed = orjson.loads(signed)
    assert list(parsed) == sorted(parsed)
    assert parsed["type"] == STATEMENT_TYPE and parsed["comment"] == FIELDS["comment"]
    # What the browser's JSON.stringify gives for the same object (RFC 8785 strings).
    assert b'"comment":"ok \\"quoted\\"\\n\xc3\xbcn\xc3\xaf \xe2\x82\xac \\u0001"' in signed
    with pytest.raises(InvalidInputError):
        statement(**{**FIELDS, "decision": "maybe"})


def test_a_session_key_is_a_public_p256_jwk_and_its_thumbprint() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sent = {**public_jwk(key), "ext": True, "key_ops": ["verify"]}
    jwk, thumbprint = session_key(orjson.dumps(sent).decode())
    assert jwk == public_jwk(key)
    assert thumbprint == key_thumbprint(key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        orjson.dumps(public_jwk(ec.generate_private_key(ec.SECP384R1()))).decode(),
        orjson.dumps(public_jwk(ed25519.Ed25519PrivateKey.generate())).decode(),
        orjson.dumps({**public_jwk(ec.generate_private_key(ec.SECP256R1())), "d": "x"}).decode(),
        "x" * 2000,
    ],
    ids=["empty", "not-json", "array", "p384", "ed25519", "private", "long"],
)
def test_anything_else_is_refused_as_a_session_key(text: str) -> None:
    with pytest.raises(InvalidInputError):
        session_key(text)


def test_a_signature_verifies_only_with_its_key_over_its_statement() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(key)
    signed = statement(**FIELDS)
    signature = p1363_signature(key, signed)
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64
    verify(jwk, signed, signature)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(jwk, statement(**{**FIELDS, "decision": "reject"}), signature)
    other = p1363_signature(ec.generate_private_key(ec.SECP256R1()), signed)
    with pytest.raises(SignatureError, match="does not verify"):
        verify(jwk, signed, other)


@pytest.mark.parametrize(
    ("signature", "why"),
    [("", "base64url"), ("!" * 86, "base64url"), ("QUJD", "base64url")],
)
def test_malformed_signatures_are_refused(signature: str, why: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match=why):
        verify(public_jwk(key), b"x", signature)


def test_an_unusable_session_key_refuses() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = p1363_signature(key, b"x")
    with pytest.raises(SignatureError, match="unusable"):
        verify({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, b"x", signature)
    p384 = public_jwk(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(SignatureError, match="P-256"):
        verify(p384, b"x", signature)
