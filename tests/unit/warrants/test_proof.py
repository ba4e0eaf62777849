"""Proofs: one signature over one request, by the warrant's key; every mismatch is named."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.canonical import canonical_json
from ztgate.errors import InvalidInputError
from ztgate.warrants.jwk import b64url, key_thumbprint, public_jwk
from ztgate.warrants.proof import (
    ALGORITHMS,
    DEFAULT_WINDOW,
    MAX_PROOF_CHARS,
    TYP,
    Proof,
    ProofError,
    ProofVerifier,
    algorithm_for,
    arguments_hash,
    expect,
    sign,
)

AUDIENCE = "ztgate"
TASK = "task-1"
WARRANT = "eyJ.warrant.token"
ATH = b64url(hashlib.sha256(WARRANT.encode()).digest())
NOW = 1_800_000_000.0
ARGS = {"to": "bob@acme.example", "amount": 5}
CANONICAL = canonical_json(ARGS)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jkt(key: ec.EllipticCurvePrivateKey) -> str:
    return key_thumbprint(key)


@pytest.fixture
def verifier() -> ProofVerifier:
    return ProofVerifier()


def make(private: Any, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "audience": AUDIENCE,
        "task_id": TASK,
        "warrant": WARRANT,
        "canonical": CANONICAL,
        "tool": "send",
        "issued_at": NOW,
    }
    fields.update(overrides)
    return sign(private, **fields)


def expect_ok(proof: Proof, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "audience": AUDIENCE,
        "task_id": TASK,
        "ath": ATH,
        "canonical": CANONICAL,
        "now": NOW,
        "window": DEFAULT_WINDOW,
        "tool": "send",
    }
    fields.update(overrides)
    expect(proof, **fields)


def mismatch(proof: Proof, fragment: str, **overrides: Any) -> None:
    with pytest.raises(ProofError) as caught:
        expect_ok(proof, **overrides)
    assert fragment in caught.value.message, caught.value.message


def not_verified(verifier: ProofVerifier, token: str, jkt: str, fragment: str) -> None:
    with pytest.raises(ProofError) as caught:
        verifier.verify(token, jkt=jkt)
    assert fragment in caught.value.message, caught.value.message


def _segment(data: Any) -> str:
    return b64url(json.dumps(data).encode())


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "==")),
        json.loads(base64.urlsafe_b64decode(payload + "==")),
        signature,
    )


def hand_signed(private: Any, header: dict[str, Any], claims: dict[str, Any], alg: str) -> str:
    return jwt.encode(claims, private, algorithm=alg, headers=header)


# -- the round trip ------------------------------------------------------------------------------


def test_sign_verify_expect_round_trip(
    key: ec.EllipticCurvePrivateKey, jkt: str, verifier: ProofVerifier
) -> None:
    token = make(key, jti="a-unique-proof-id-0001")
    proof = verifier.verify(token, jkt=jkt)
    assert proof.jkt == jkt
    assert proof.jti == "a-unique-proof-id-0001"
    assert proof.issued_at == NOW
    assert dict(proof.claims) == {
        "aud": AUDIENCE,
        "iat": int(NOW),
        "jti": "a-unique-proof-id-0001",
        "task": TASK,
        "ath": ATH,
        "args": arguments_hash(CANONICAL),
        "tool": "send",
    }
    expect_ok(proof)


def test_the_header_carries_typ_alg_and_the_public_jwk(key: ec.EllipticCurvePrivateKey) -> None:
    header, _, _ = _parts(make(key))
    assert header == {"typ": TYP, "alg": "ES256", "jwk": public_jwk(key)}
    assert "d" not in header["jwk"]


def test_a_given_jwk_is_used_as_is(key: ec.EllipticCurvePrivateKey) -> None:
    jwk = public_jwk(key)
    header, _, _ = _parts(make(key, jwk=jwk))
    assert header["jwk"] == jwk


def test_every_proof_gets_a_fresh_jti(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    verifier = ProofVerifier()
    ids = {verifier.verify(make(key), jkt=jkt).jti for _ in range(20)}
    assert len(ids) == 20
    assert all(16 <= len(i) <= 128 for i in ids)


def test_arguments_hash_is_base64url_sha256() -> None:
    assert arguments_hash(b"{}") == b64url(hashlib.sha256(b"{}").digest())
    assert len(arguments_hash(CANONICAL)) == 43


def test_a_proof_for_an_operation(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    body = canonical_json({"task_id": TASK})
    proof = ProofVerifier().verify(make(key, tool=None, op="bind", canonical=body), jkt=jkt)
    assert proof.claims["op"] == "bind" and "tool" not in proof.claims
    expect_ok(proof, tool=None, op="bind", canonical=body)
    mismatch(
        proof, "not made for the 'delegate' operation", tool=None, op="delegate", canonical=body
    )
    mismatch(proof, "made for another tool", canonical=body)


def test_a_proof_is_for_exactly_one_tool_or_operation(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(InvalidInputError, match="exactly one tool or one operation"):
        make(key, tool=None)
    with pytest.raises(InvalidInputError, match="exactly one tool or one operation"):
        make(key, tool="send", op="bind")


@pytest.mark.parametrize(
    ("private", "alg"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "PS256"),
    ],
    ids=["P-256", "P-384", "P-521", "Ed25519", "RSA"],
)
def test_every_supported_key_type_signs_and_verifies(private: Any, alg: str) -> None:
    assert algorithm_for(private) == alg
    token = make(private)
    assert _parts(token)[0]["alg"] == alg
    proof = ProofVerifier().verify(token, jkt=key_thumbprint(private))
    expect_ok(proof)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS384", "PS512"])
def test_rsa_proofs_with_other_allowed_algorithms(alg: str) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"aud": AUDIENCE, "iat": int(NOW), "jti": "j" * 16}
    token = hand_signed(private, {"typ": TYP, "jwk": public_jwk(private)}, claims, alg)
    assert ProofVerifier().verify(token, jkt=key_thumbprint(private)).jti == "j" * 16


def test_algorithm_for_refuses_other_keys() -> None:
    with pytest.raises(InvalidInputError, match="unsupported key type"):
        algorithm_for(ed448.Ed448PrivateKey.generate())
    with pytest.raises(InvalidInputError, match="unsupported key type"):
        algorithm_for(ec.generate_private_key(ec.SECP256R1()).public_key())


def test_algorithms_are_asymmetric_only() -> None:
    assert "none" not in ALGORITHMS
    assert not any(a.startswith("HS") for a in ALGORITHMS)


# -- expect: every mismatch named ----------------------------------------------------------------


@pytest.fixture
def proof(key: ec.EllipticCurvePrivateKey, jkt: str) -> Proof:
    return ProofVerifier().verify(make(key), jkt=jkt)


def test_another_tool(proof: Proof) -> None:
    mismatch(proof, "made for another tool", tool="delete")


def test_an_operation_instead_of_the_tool(proof: Proof) -> None:
    mismatch(proof, "not made for the 'bind' operation", tool=None, op="bind")


def test_other_arguments(proof: Proof) -> None:
    mismatch(
        proof,
        "made for other arguments (args hash differs)",
        canonical=canonical_json({**ARGS, "amount": 6}),
    )
    mismatch(proof, "made for other arguments", canonical=canonical_json({}))


def test_another_task(proof: Proof) -> None:
    mismatch(proof, "made for another task", task_id="task-2")


def test_another_warrant(proof: Proof) -> None:
    mismatch(proof, "made for another warrant (ath)", ath=b64url(hashlib.sha256(b"x").digest()))


def test_another_gateway(proof: Proof) -> None:
    mismatch(proof, "aud is not this gateway", audience="other-gateway")


def test_the_window_on_both_sides(proof: Proof) -> None:
    expect_ok(proof, now=NOW + 30)
    expect_ok(proof, now=NOW - 30)
    mismatch(proof, "iat is outside the +-30 s window", now=NOW + 30.5)
    mismatch(proof, "iat is outside the +-30 s window", now=NOW - 30.5)
    mismatch(proof, "iat is outside the +-5 s window", now=NOW + 6, window=5)
    mismatch(proof, "outside the +-2.5 s window", now=NOW - 3, window=2.5)


def test_the_window_is_checked_before_the_claims(proof: Proof) -> None:
    mismatch(proof, "window", now=NOW + 100, tool="delete", task_id="other")


def test_a_proof_with_both_tool_and_op_claims_matches_neither(
    key: ec.EllipticCurvePrivateKey, jkt: str
) -> None:
    claims = {
        "aud": AUDIENCE,
        "iat": int(NOW),
        "jti": "j" * 20,
        "task": TASK,
        "ath": ATH,
        "args": arguments_hash(CANONICAL),
        "tool": "send",
        "op": "bind",
    }
    token = hand_signed(key, {"typ": TYP, "jwk": public_jwk(key)}, claims, "ES256")
    both = ProofVerifier().verify(token, jkt=jkt)
    mismatch(both, "made for another tool")
    mismatch(both, "not made for the 'bind' operation", tool=None, op="bind")


# -- verify: signature, key and header -----------------------------------------------------------


def test_another_keys_proof_is_not_bound(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    verifier = ProofVerifier()
    not_verified(verifier, make(other), jkt, "signed by a key the warrant is not bound to")
    # Still refused once its header is cached.
    not_verified(verifier, make(other), jkt, "not bound")
    # And the right key verifies with the same verifier.
    assert verifier.verify(make(key), jkt=jkt).jkt == jkt


def test_another_keys_signature_under_our_jwk(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    token = make(other, jwk=public_jwk(key))
    not_verified(ProofVerifier(), token, jkt, "signature does not verify")


def test_a_tampered_payload(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    header, _, signature = make(key).split(".")
    _, claims, _ = _parts(make(key))
    claims["tool"] = "delete"
    token = f"{header}.{_segment(claims)}.{signature}"
    not_verified(ProofVerifier(), token, jkt, "signature does not verify")


def test_a_tampered_signature(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    header, payload, signature = make(key).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[5] ^= 1
    not_verified(
        ProofVerifier(), f"{header}.{payload}.{b64url(bytes(raw))}", jkt, "signature does not"
    )
    # A signature of the wrong size for the curve.
    not_verified(ProofVerifier(), f"{header}.{payload}.{b64url(b'short')}", jkt, "signature")


def test_a_tampered_header_changes_the_signing_input(
    key: ec.EllipticCurvePrivateKey, jkt: str
) -> None:
    _, payload, signature = make(key).split(".")
    decoded, _, _ = _parts(make(key))
    decoded["extra"] = 1
    not_verified(
        ProofVerifier(), f"{_segment(decoded)}.{payload}.{signature}", jkt, "does not verify"
    )


def test_alg_none(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    _, claims, _ = _parts(make(key))
    header = _segment({"typ": TYP, "alg": "none", "jwk": public_jwk(key)})
    # No signature at all: the last segment is empty.
    not_verified(ProofVerifier(), f"{header}.{_segment(claims)}.", jkt, "not a compact JWS")
    not_verified(
        ProofVerifier(), f"{header}.{_segment(claims)}.AAAA", jkt, "algorithm 'none' is not"
    )


def test_hs256_with_the_jwk_as_the_secret(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    _, claims, _ = _parts(make(key))
    header = _segment({"typ": TYP, "alg": "HS256", "jwk": public_jwk(key)})
    payload = _segment(claims)
    secret = json.dumps(public_jwk(key)).encode()
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    not_verified(
        ProofVerifier(), f"{header}.{payload}.{b64url(mac)}", jkt, "algorithm 'HS256' is not"
    )


def test_an_algorithm_that_does_not_fit_the_key(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    _, claims, signature = _parts(make(key))
    header = _segment({"typ": TYP, "alg": "RS256", "jwk": public_jwk(key)})
    not_verified(
        ProofVerifier(), f"{header}.{_segment(claims)}.{signature}", jkt, "jwk does not fit RS256"
    )
    header = _segment({"typ": TYP, "alg": "ES384", "jwk": public_jwk(key)})
    with pytest.raises(ProofError):
        ProofVerifier().verify(f"{header}.{_segment(claims)}.{signature}", jkt=jkt)


def test_a_crit_header_is_refused(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    token = hand_signed(
        key,
        {"typ": TYP, "jwk": public_jwk(key), "crit": ["exp"], "exp": 1},
        {"aud": AUDIENCE, "iat": int(NOW), "jti": "j" * 16},
        "ES256",
    )
    not_verified(ProofVerifier(), token, jkt, "critical header extensions are not understood")


@pytest.mark.parametrize("typ", [None, "JWT", "dpop+jwt", "ztgate-warrant+jwt"])
def test_wrong_typ(key: ec.EllipticCurvePrivateKey, jkt: str, typ: str | None) -> None:
    header = {"jwk": public_jwk(key), **({"typ": typ} if typ else {})}
    token = hand_signed(key, header, {"iat": int(NOW), "jti": "j" * 16}, "ES256")
    if typ is None:  # PyJWT adds "typ": "JWT" unless told otherwise
        assert _parts(token)[0]["typ"] == "JWT"
    not_verified(ProofVerifier(), token, jkt, "not a proof (typ must be 'ztgate-proof+jwt')")


def test_a_jwk_with_the_private_d(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    from jwt.algorithms import ECAlgorithm

    private_jwk = json.loads(ECAlgorithm.to_jwk(key))
    assert "d" in private_jwk
    token = hand_signed(
        key, {"typ": TYP, "jwk": private_jwk}, {"iat": int(NOW), "jti": "j" * 16}, "ES256"
    )
    not_verified(ProofVerifier(), token, jkt, "jwk: the JWK carries private key members")


@pytest.mark.parametrize(
    ("jwk", "fragment"),
    [
        (None, "the header carries no jwk"),
        ("jwk", "the header carries no jwk"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "jwk: unsupported JWK key type 'oct'"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "jwk: unusable JWK"),
    ],
)
def test_an_unusable_jwk(
    key: ec.EllipticCurvePrivateKey, jkt: str, jwk: Any, fragment: str
) -> None:
    _, claims, signature = _parts(make(key))
    header = _segment({"typ": TYP, "alg": "ES256", **({"jwk": jwk} if jwk is not None else {})})
    not_verified(ProofVerifier(), f"{header}.{_segment(claims)}.{signature}", jkt, fragment)


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("", "not a compact JWS"),
        ("a.b", "not a compact JWS"),
        ("a.b.c.d", "not a compact JWS"),
        ("a b.c.d", "not a compact JWS"),
        ("a=.b.c", "not a compact JWS"),
        ("a+/.b.c", "not a compact JWS"),
        (f"{b64url(b'not json')}.e30.AAAA", "the header is not JSON"),
        (f"{b64url(b'[1]')}.e30.AAAA", "the header is not a JSON object"),
        ("x" * (MAX_PROOF_CHARS + 1), "a proof is a JWS of at most"),
    ],
)
def test_malformed_proofs(jkt: str, token: str, fragment: str) -> None:
    not_verified(ProofVerifier(), token, jkt, fragment)


def test_not_a_string(jkt: str) -> None:
    not_verified(ProofVerifier(), None, jkt, "a proof is a JWS of at most")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        ({"iat": int(NOW)}, "jti must be 16-128 printable ASCII characters"),
        ({"iat": int(NOW), "jti": "j" * 15}, "jti must be 16-128"),
        ({"iat": int(NOW), "jti": "j" * 129}, "jti must be 16-128"),
        ({"iat": int(NOW), "jti": "has a space in it!"}, "jti must be 16-128"),
        ({"iat": int(NOW), "jti": "é" * 16}, "jti must be 16-128"),
        ({"iat": int(NOW), "jti": 1234567890123456789}, "jti must be 16-128"),
        ({"jti": "j" * 16}, "iat is missing or not a number"),
        ({"jti": "j" * 16, "iat": "1800000000"}, "iat is missing or not a number"),
        ({"jti": "j" * 16, "iat": True}, "iat is missing or not a number"),
    ],
)
def test_required_claims(
    key: ec.EllipticCurvePrivateKey, jkt: str, claims: dict[str, Any], fragment: str
) -> None:
    token = hand_signed(key, {"typ": TYP, "jwk": public_jwk(key)}, claims, "ES256")
    not_verified(ProofVerifier(), token, jkt, fragment)


def test_the_longest_and_shortest_jti_are_accepted(
    key: ec.EllipticCurvePrivateKey, jkt: str
) -> None:
    for jti in ("j" * 16, "~" * 128, "!#$%&'()*+,-./:;"):
        proof = ProofVerifier().verify(make(key, jti=jti), jkt=jkt)
        assert proof.jti == jti


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"'])
def test_a_signed_payload_that_is_not_an_object(
    key: ec.EllipticCurvePrivateKey, jkt: str, payload: bytes
) -> None:
    from jwt.algorithms import ECAlgorithm

    header = _segment({"typ": TYP, "alg": "ES256", "jwk": public_jwk(key)})
    body = b64url(payload)
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(f"{header}.{body}".encode(), key)
    token = f"{header}.{body}.{b64url(signature)}"
    not_verified(ProofVerifier(), token, jkt, "the payload is not")


def test_the_header_cache_is_bounded(jkt: str) -> None:
    verifier = ProofVerifier(cache_size=3)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(5)]
    for private in keys:
        assert verifier.verify(make(private), jkt=key_thumbprint(private)).jti
    assert len(verifier._headers) <= 3
    # A refused header is never cached.
    with pytest.raises(ProofError):
        verifier.verify(f"{b64url(b'[1]')}.e30.AAAA", jkt=jkt)
    assert f"{b64url(b'[1]')}" not in verifier._headers


def test_a_cached_header_still_has_its_signature_checked(
    key: ec.EllipticCurvePrivateKey, jkt: str
) -> None:
    verifier = ProofVerifier()
    first = make(key)
    verifier.verify(first, jkt=jkt)
    header, payload, _ = make(key).split(".")
    _, _, other_signature = first.split(".")
    not_verified(verifier, f"{header}.{payload}.{other_signature}", jkt, "does not verify")


def test_a_proof_error_is_an_invalid_input_error() -> None:
    assert issubclass(ProofError, InvalidInputError)


# -- canonical arguments (property-based) --------------------------------------------------------

_SAFE = 2**53 - 1
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-_SAFE, _SAFE)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)
_arguments = st.dictionaries(st.text(max_size=6), _values, max_size=5)


def _reformatted(value: Any) -> Any:
    """The same JSON value written differently: keys reversed, integers as floats and back."""
    if isinstance(value, dict):
        return {k: _reformatted(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reformatted(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) <= 2**53 else value
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


@pytest.fixture(scope="module")
def prover() -> tuple[ec.EllipticCurvePrivateKey, str, ProofVerifier]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, key_thumbprint(private), ProofVerifier()


@settings(max_examples=150, deadline=None)
@given(_arguments)
def test_a_proof_over_one_spelling_verifies_for_another(
    prover: tuple[ec.EllipticCurvePrivateKey, str, ProofVerifier], arguments: dict[str, Any]
) -> None:
    private, jkt, verifier = prover
    other = _reformatted(arguments)
    assert canonical_json(other) == canonical_json(arguments)
    token = make(private, canonical=canonical_json(arguments))
    expect_ok(verifier.verify(token, jkt=jkt), canonical=canonical_json(other))


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**9), 10**9), st.integers(0, 5))
def test_number_spellings_of_one_value_prove_alike(
    prover: tuple[ec.EllipticCurvePrivateKey, str, ProofVerifier], mantissa: int, exponent: int
) -> None:
    private, jkt, verifier = prover
    texts = [f"{mantissa * 10**exponent}", f"{mantissa}e{exponent}", f"{mantissa}.0E+{exponent}"]
    parsed = [orjson.loads(f'{{"n": {text}, "b": 1, "a": 2}}') for text in texts]
    spellings = {canonical_json(p) for p in parsed}
    assert len(spellings) == 1
    token = make(private, canonical=canonical_json(parsed[0]))
    proof = verifier.verify(token, jkt=jkt)
    for value in parsed[1:]:
        expect_ok(proof, canonical=canonical_json(value))


@settings(max_examples=150, deadline=None)
@given(_arguments, st.text(max_size=6), _values)
def test_a_proof_over_other_values_does_not_verify(
    prover: tuple[ec.EllipticCurvePrivateKey, str, ProofVerifier],
    arguments: dict[str, Any],
    name: str,
    value: Any,
) -> None:
    private, jkt, verifier = prover
    changed = {**arguments, name: value}
    if canonical_json(changed) == canonical_json(arguments):
        return  # the "change" set an equal value
    token = make(private, canonical=canonical_json(arguments))
    with pytest.raises(ProofError, match="made for other arguments"):
        expect_ok(verifier.verify(token, jkt=jkt), canonical=canonical_json(changed))


def test_specific_spellings(key: ec.EllipticCurvePrivateKey, jkt: str) -> None:
    proof = ProofVerifier().verify(
        make(key, canonical=canonical_json({"a": 1, "b": [1e2, {"y": 1, "x": 2}]})), jkt=jkt
    )
    for same in (
        {"b": [100, {"x": 2, "y": 1.0}], "a": 1.0},
        orjson.loads(b'{"b":[1E2,{"x":2.0,"y":10e-1}],"a":1}'),
    ):
        expect_ok(proof, canonical=canonical_json(same))
    for different in (
        {"a": 1, "b": [100, {"x": 2, "y": 1}], "c": None},
        {"a": 1, "b": [{"x": 2, "y": 1}, 100]},
        {"a": "1", "b": [100, {"x": 2, "y": 1}]},
        {"a": True, "b": [100, {"x": 2, "y": 1}]},
        {"a": 1, "b": [100.5, {"x": 2, "y": 1}]},
    ):
        mismatch(proof, "made for other arguments", canonical=canonical_json(different))


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET + ".=+/ \n\x00é", max_size=40))
def test_the_compact_form_check_is_the_split_and_per_segment_check(text: str) -> None:
    from ztgate.warrants import proof as module

    parts = text.split(".")
    slow = len(parts) == 3 and all(module._SEGMENT.fullmatch(part) for part in parts)
    assert (module._COMPACT.fullmatch(text) is not None) == slow


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, min_size=1, max_size=64))
def test_segment_decoding_is_urlsafe_b64decode(segment: str) -> None:
    from ztgate.warrants import proof as module

    padded = segment + "=" * (-len(segment) % 4)
    try:
        expected: bytes | type[Exception] = base64.urlsafe_b64decode(padded)
    except ValueError:
        expected = ValueError
    try:
        got: bytes | type[Exception] = module._b64decode(segment)
    except ValueError:
        got = ValueError
    assert got == expected
