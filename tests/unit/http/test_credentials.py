"""Reading an agent's credentials from a request: bearer, mTLS chain, warrant and proof."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ztgate.http.credentials import CHALLENGE, read_client_chain, read_credentials
from ztgate.http.problems import Problem
from ztgate.identity.authority import CertificateAuthority
from ztgate.models import Credentials
from ztgate.testing import FrozenClock

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def malformed(authorization: str) -> Problem:
    with pytest.raises(Problem) as caught:
        read_credentials(authorization)
    problem = caught.value
    assert problem.status == 401
    assert problem.slug == "unauthenticated"
    assert "malformed Authorization header" in problem.detail
    assert problem.headers["WWW-Authenticate"] == CHALLENGE + ', error="invalid_request"'
    return problem


# -- read_credentials ----------------------------------------------------------------------------


def test_no_header_no_credentials() -> None:
    assert read_credentials(None) == Credentials()


def test_a_bearer_token() -> None:
    assert read_credentials(f"Bearer {TOKEN}") == Credentials(bearer=TOKEN)


@pytest.mark.parametrize(
    "header",
    [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer {TOKEN}  ", f"Bearer   {TOKEN}"],
)
def test_the_scheme_is_case_insensitive_and_whitespace_is_trimmed(header: str) -> None:
    assert read_credentials(header).bearer == TOKEN


@pytest.mark.parametrize("token", ["abc", "a.b.c", "a-b_c~d+e/f", "abc==", "x" * 5000])
def test_token68_forms(token: str) -> None:
    assert read_credentials(f"Bearer {token}").bearer == token


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
        "Bearer two tokens",
        "Bearer a=b",
        "Bearer =abc",
        "Bearer ab\x00c",
        'Bearer "quoted"',
        "Bearer tök",
        "Bearer a,b",
    ],
)
def test_a_malformed_authorization_header(header: str) -> None:
    malformed(header)


def test_warrant_and_proof_are_passed_through_unread() -> None:
    credentials = read_credentials(
        f"Bearer {TOKEN}", b"\x30\x00", warrant="not even a JWT", proof="w.x.y"
    )
    assert credentials == Credentials(
        bearer=TOKEN, client_certificate=b"\x30\x00", warrant="not even a JWT", proof="w.x.y"
    )
    without_bearer = read_credentials(None, None, warrant="w", proof="p")
    assert without_bearer == Credentials(warrant="w", proof="p")
    chain_only = read_credentials(None, b"der")
    assert chain_only == Credentials(client_certificate=b"der")


def test_a_malformed_header_is_refused_even_with_a_warrant() -> None:
    with pytest.raises(Problem):
        read_credentials("Basic x", warrant="w", proof="p")


# -- read_client_chain ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    ca = CertificateAuthority.create(
        tmp_path_factory.mktemp("ca"), "acme.example", FrozenClock(1_800_000_000.0)
    )
    svid = ca.issue_x509_svid("spiffe://acme.example/agent")
    return [c.public_bytes(serialization.Encoding.PEM).decode() for c in svid.chain]


def scope_with(tls: Any) -> dict[str, Any]:
    return {"type": "http", "extensions": {"tls": tls}}


def test_a_chain_from_the_tls_extension(pems: list[str]) -> None:
    der = read_client_chain(scope_with({"client_cert_chain": pems}))
    assert der == b"".join(ssl.PEM_cert_to_DER_cert(pem) for pem in pems)
    assert der is not None
    leaf = x509.load_der_x509_certificate(ssl.PEM_cert_to_DER_cert(pems[0]))
    assert der.startswith(leaf.public_bytes(serialization.Encoding.DER))


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "http"},
        {"type": "http", "extensions": None},
        {"type": "http", "extensions": {}},
        {"type": "http", "extensions": []},
        scope_with(None),
        scope_with("tls"),
        scope_with({}),
        scope_with({"client_cert_chain": []}),
        scope_with({"client_cert_chain": None}),
    ],
)
def test_no_chain(scope: dict[str, Any]) -> None:
    assert read_client_chain(scope) is None


@pytest.mark.parametrize(
    "chain",
    [
        ["not a PEM"],
        ["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ],
)
def test_an_unreadable_chain_is_a_401(chain: list[Any]) -> None:
    with pytest.raises(Problem) as caught:
        read_client_chain(scope_with({"client_cert_chain": chain}))
    assert caught.value.status == 401
    assert caught.value.slug == "unauthenticated"
    assert caught.value.detail == "the client certificate cannot be read"
    assert caught.value.headers["WWW-Authenticate"] == CHALLENGE + ', error="invalid_request"'
