"""Warrant tokens: issued and verified; every malformed, forged or stale token refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from ztgate.tasks.scope import parse_scope
from ztgate.warrants.jwk import b64url
from ztgate.warrants.keys import WarrantKey, load_or_create
from ztgate.warrants.token import (
    MAX_WARRANT_CHARS,
    TYP,
    Warrant,
    WarrantError,
    issue,
    verify,
    warrant_hash,
)

ISSUER = "spiffe://acme.example/ztgate"
AUDIENCE = "ztgate"
AGENT = "spiffe://acme.example/agent/mailer"
HELPER = "spiffe://acme.example/agent/helper"
PLANNER = "spiffe://acme.example/agent/planner"
NOW = float(int(time.time()))  # PyJWT checks expiry against the real clock too
JKT = "A" * 43
SCOPE = parse_scope({"tools": {"send": {"limits": {"to": {"domains": ["acme.example"]}}}}})


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> WarrantKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "warrant.pem")


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> WarrantKey:
    return load_or_create(tmp_path_factory.mktemp("other") / "warrant.pem")


def keys_of(*keys: WarrantKey) -> dict[str, Any]:
    return {k.kid: k.public_key for k in keys}


def make(key: WarrantKey, **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "warrant_id": "w-1",
        "task_id": "t-1",
        "agent": AGENT,
        "scope": SCOPE,
        "jkt": JKT,
        "issued_at": NOW,
        "expires_at": NOW + 600,
    }
    fields.update(overrides)
    return issue(key, **fields)


def check(token: str, key: WarrantKey, **overrides: Any) -> Warrant:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW + 1, "skew": 0}
    options.update(overrides)
    return verify(token, keys_of(key), **options)


def refused(token: str, key: WarrantKey, fragment: str, **overrides: Any) -> str:
    with pytest.raises(WarrantError) as caught:
        check(token, key, **overrides)
    assert fragment in caught.value.message, caught.value.message
    return caught.value.message


def claims_of(key: WarrantKey, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(make(key), options={"verify_signature": False})
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def signed(key: WarrantKey, claims: dict[str, Any], **headers: Any) -> str:
    header = {"typ": TYP, "kid": key.kid, **headers}
    return jwt.encode(claims, key.private_key, algorithm="ES256", headers=header)


def _segment(data: dict[str, Any]) -> str:
    return b64url(json.dumps(data).encode())


# -- the round trip ------------------------------------------------------------------------------


def test_issue_and_verify_round_trip(key: WarrantKey) -> None:
    token = make(key)
    warrant = check(token, key)
    assert warrant == Warrant(
        id="w-1",
        task_id="t-1",
        agent=AGENT,
        scope=SCOPE,
        jkt=JKT,
        issued_at=NOW,
        expires_at=NOW + 600,
        chain=(),
        actors=(),
        ath=warrant_hash(token),
    )
    assert warrant.depth == 0
    assert warrant.lineage == ("w-1",)


def test_the_header_and_claims_are_as_documented(key: WarrantKey) -> None:
    token = make(key)
    header = jwt.get_unverified_header(token)
    assert header == {"typ": TYP, "kid": key.kid, "alg": "ES256"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "iss": ISSUER,
        "sub": AGENT,
        "aud": AUDIENCE,
        "jti": "w-1",
        "iat": int(NOW),
        "exp": int(NOW + 600),
        "task": "t-1",
        "scope": SCOPE.to_json(),
        "cnf": {"jkt": JKT},
    }


def test_a_delegated_warrant_carries_act_nested_and_its_chain(key: WarrantKey) -> None:
    token = make(
        key, agent=HELPER, chain=["w-root", "w-mid"], actors=[AGENT, PLANNER], warrant_id="w-3"
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    # The nearest delegator is the outermost act.
    assert claims["act"] == {"sub": AGENT, "act": {"sub": PLANNER}}
    assert claims["chain"] == ["w-root", "w-mid"]
    warrant = check(token, key)
    assert warrant.actors == (AGENT, PLANNER)
    assert warrant.chain == ("w-root", "w-mid")
    assert warrant.depth == 2
    assert warrant.lineage == ("w-root", "w-mid", "w-3")


def test_warrant_hash_is_the_base64url_sha256_of_the_token() -> None:
    digest = hashlib.sha256(b"a.b.c").digest()
    assert warrant_hash("a.b.c") == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert warrant_hash("") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_any_of_several_keys_verifies_by_kid(key: WarrantKey, other_key: WarrantKey) -> None:
    for signer in (key, other_key):
        warrant = verify(
            make(signer), keys_of(key, other_key), issuer=ISSUER, audience=AUDIENCE, now=NOW
        )
        assert warrant.id == "w-1"


# -- refused: the token itself -------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "!!!.###.$$$"])
def test_not_a_jwt(key: WarrantKey, token: str) -> None:
    refused(token, key, "not a JWT")


def test_not_a_string(key: WarrantKey) -> None:
    with pytest.raises(WarrantError, match="a warrant is a JWT of at most"):
        verify(b"x.y.z", keys_of(key), issuer=ISSUER, audience=AUDIENCE, now=NOW)  # type: ignore[arg-type]


def test_too_long(key: WarrantKey) -> None:
    big = parse_scope(
        {"tools": {f"tool-{i:04d}": {"limits": {"a": {"pattern": "x" * 200}}} for i in range(200)}}
    )
    token = make(key, scope=big)
    assert len(token) > MAX_WARRANT_CHARS
    refused(token, key, f"a warrant is a JWT of at most {MAX_WARRANT_CHARS} characters")


@pytest.mark.parametrize("typ", [None, "JWT", "ztgate-proof+jwt", "at+jwt"])
def test_wrong_typ(key: WarrantKey, typ: str | None) -> None:
    token = signed(key, claims_of(key), typ=typ)
    refused(token, key, "not a warrant (typ must be 'ztgate-warrant+jwt')")


def test_alg_none(key: WarrantKey) -> None:
    header = _segment({"typ": TYP, "kid": key.kid, "alg": "none"})
    token = f"{header}.{_segment(claims_of(key))}."
    refused(token, key, "a warrant is signed with ES256")


def test_hs256_with_the_public_key_as_secret(key: WarrantKey) -> None:
    # The classic confusion: the HMAC secret is the verifier's public key.
    from cryptography.hazmat.primitives import serialization

    secret = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _segment({"typ": TYP, "kid": key.kid, "alg": "HS256"})
    payload = _segment(claims_of(key))
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    refused(f"{header}.{payload}.{b64url(mac)}", key, "a warrant is signed with ES256")


def test_es384_is_not_accepted(key: WarrantKey) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    token = jwt.encode(
        claims_of(key),
        ec.generate_private_key(ec.SECP384R1()),
        algorithm="ES384",
        headers={"typ": TYP, "kid": key.kid},
    )
    refused(token, key, "a warrant is signed with ES256")


def test_unknown_kid(key: WarrantKey, other_key: WarrantKey) -> None:
    refused(make(other_key), key, "signed by a key this gateway does not know")
    _, payload, signature = make(key).split(".")
    for kid in (None, "", "x" * 100):
        forged = _segment({"typ": TYP, "alg": "ES256", **({} if kid is None else {"kid": kid})})
        refused(f"{forged}.{payload}.{signature}", key, "signed by a key this gateway does not")
    numeric = _segment({"typ": TYP, "alg": "ES256", "kid": 5})
    refused(f"{numeric}.{payload}.{signature}", key, "Key ID header parameter must be a string")


def test_a_known_kid_with_another_keys_signature(key: WarrantKey, other_key: WarrantKey) -> None:
    token = jwt.encode(
        claims_of(key),
        other_key.private_key,
        algorithm="ES256",
        headers={"typ": TYP, "kid": key.kid},
    )
    refused(token, key, "Signature verification failed")


def test_a_tampered_payload(key: WarrantKey) -> None:
    header, _, signature = make(key).split(".")
    wider = claims_of(key, scope={"tools": {"send": {}, "delete": {}}})
    refused(f"{header}.{_segment(wider)}.{signature}", key, "Signature verification failed")


# -- refused: issuer, audience, lifetime ---------------------------------------------------------


def test_wrong_issuer(key: WarrantKey) -> None:
    refused(make(key, issuer="spiffe://evil.example/ztgate"), key, "Invalid issuer")


def test_wrong_audience(key: WarrantKey) -> None:
    refused(make(key, audience="another-gateway"), key, "Audience doesn't match")


def test_expired_by_our_clock(key: WarrantKey) -> None:
    token = make(key)
    assert check(token, key, now=NOW + 600).id == "w-1"
    refused(token, key, "expired", now=NOW + 600.5)
    refused(token, key, "expired", now=NOW + 10_000)


def test_skew_extends_expiry_by_as_much(key: WarrantKey) -> None:
    token = make(key)
    assert check(token, key, now=NOW + 629, skew=30).id == "w-1"
    assert check(token, key, now=NOW + 630, skew=30).id == "w-1"
    refused(token, key, "expired", now=NOW + 631, skew=30)


def test_only_the_gateways_clock_decides_the_lifetime(key: WarrantKey) -> None:
    # Long past by the real clock, valid by the (injected) gateway clock.
    token = make(key, issued_at=1_000_000_000, expires_at=1_000_000_600)
    assert check(token, key, now=1_000_000_001).id == "w-1"
    refused(token, key, "expired", now=1_000_000_601)


def test_issued_in_the_future(key: WarrantKey) -> None:
    token = make(key, issued_at=NOW + 100, expires_at=NOW + 700)
    refused(token, key, "issued in the future", now=NOW)
    refused(token, key, "issued in the future", now=NOW + 69, skew=30)
    assert check(token, key, now=NOW + 70, skew=30).id == "w-1"


@pytest.mark.parametrize(
    "claim", ["iss", "sub", "aud", "jti", "iat", "exp", "task", "scope", "cnf"]
)
def test_every_required_claim_must_be_present(key: WarrantKey, claim: str) -> None:
    claims = claims_of(key)
    del claims[claim]
    refused(signed(key, claims), key, "")


# -- refused: the claims' contents ---------------------------------------------------------------


@pytest.mark.parametrize("cnf", [{}, {"jkt": 5}, "jkt", ["x"], {"jwk": {}}])
def test_cnf_without_a_thumbprint(key: WarrantKey, cnf: Any) -> None:
    refused(signed(key, claims_of(key, cnf=cnf)), key, "cnf names no key thumbprint (jkt)")


@pytest.mark.parametrize("chain", ["w-1", [1], {"a": 1}, [None]])
def test_a_malformed_chain(key: WarrantKey, chain: Any) -> None:
    refused(signed(key, claims_of(key, chain=chain)), key, "chain is not a list of warrant ids")


@pytest.mark.parametrize("act", ["agent", {"sub": 5}, {"act": {}}, {"sub": AGENT, "act": "x"}])
def test_a_malformed_act(key: WarrantKey, act: Any) -> None:
    token = signed(key, claims_of(key, act=act, chain=["w-0", "w-00"]))
    refused(token, key, "act is not a delegation chain")


def test_act_and_chain_must_agree_about_the_depth(key: WarrantKey) -> None:
    # act without chain
    refused(make(key, actors=[AGENT], chain=[]), key, "act and chain disagree")
    # chain without act
    refused(signed(key, claims_of(key, chain=["w-0"])), key, "act and chain disagree")
    # one actor too many
    token = signed(key, claims_of(key, chain=["w-0"], act={"sub": AGENT, "act": {"sub": PLANNER}}))
    refused(token, key, "act and chain disagree about the delegation depth")


@pytest.mark.parametrize(
    ("claim", "value", "fragment"),
    [
        ("jti", "", "jti is not a string"),
        ("jti", 5, "JWT ID must be a string"),  # PyJWT's own check
        ("task", "", "task is not a string"),
        ("task", ["t"], "task is not a string"),
        ("sub", "", "sub is not a string"),
        ("sub", 7, "Subject must be a string"),  # PyJWT's own check
    ],
)
def test_ids_must_be_non_empty_strings(
    key: WarrantKey, claim: str, value: Any, fragment: str
) -> None:
    refused(signed(key, claims_of(key, **{claim: value})), key, fragment)


@pytest.mark.parametrize(
    "sub",
    [
        "mailer",
        "https://acme.example/agent",
        "spiffe://",
        "spiffe://ACME.example/a",
        "spiffe://a/b/",
    ],
)
def test_a_subject_that_is_not_a_spiffe_id(key: WarrantKey, sub: str) -> None:
    with pytest.raises(WarrantError):
        check(make(key, agent=sub), key)


@pytest.mark.parametrize(
    "scope",
    [
        {},
        {"tools": {}},
        {"tools": {"send": {"limits": {"to": {"domains": ["bücher.example"]}}}}},
        {"tools": {"send": {"limits": {"n": {"minimum": 5, "maximum": 1}}}}},
        "send",
        None,
    ],
)
def test_a_malformed_scope(key: WarrantKey, scope: Any) -> None:
    claims = claims_of(key)
    claims["scope"] = scope
    with pytest.raises(WarrantError):
        check(signed(key, claims), key)


def test_the_error_message_of_a_bad_scope_is_the_scopes(key: WarrantKey) -> None:
    token = signed(key, claims_of(key, scope={"tools": {}}))
    refused(token, key, "a scope names at least one tool")


def test_a_warrant_error_is_an_invalid_input_error() -> None:
    from ztgate.errors import InvalidInputError

    assert issubclass(WarrantError, InvalidInputError)


def test_tokens_of_a_real_key_file(tmp_path: Path) -> None:
    signer = load_or_create(tmp_path / "k.pem")
    again = load_or_create(tmp_path / "k.pem")
    assert check(make(signer), again).id == "w-1"
