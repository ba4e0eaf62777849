"""SPIFFE bundle documents: the local one, and federated ones read back."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.errors import InvalidInputError
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import (
    bundle_document,
    local_bundle,
    parse_bundle,
    read_bundle,
    trust_bundle,
)
from ztgate.identity.verify import verify_jwt_svid, verify_x509_svid
from ztgate.testing import FrozenClock


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca", "acme.example", FrozenClock(time.time()))


def test_local_bundle_lists_roots_and_published_jwt_keys(ca: CertificateAuthority) -> None:
    ca.rotate(start_in=600)
    document = local_bundle(ca, sequence=7, refresh_hint=60)
    assert document["spiffe_sequence"] == 7 and document["spiffe_refresh_hint"] == 60
    x509_keys = [k for k in document["keys"] if k["use"] == "x509-svid"]
    jwt_keys = [k for k in document["keys"] if k["use"] == "jwt-svid"]
    assert len(x509_keys) == 1 and len(jwt_keys) == 2
    root_der = base64.b64decode(x509_keys[0]["x5c"][0])
    assert root_der == _hazmat.certificate_der(ca.roots()[0])
    assert {k["kid"] for k in jwt_keys} == {a.jwt_kid for a in ca.published()}
    assert all("d" not in key for key in document["keys"]), "no private key material"


def test_a_federated_bundle_verifies_that_domains_svids(ca: CertificateAuthority) -> None:
    document = json.dumps(local_bundle(ca))
    federated = parse_bundle("acme.example", document)
    assert not federated.local
    bundles = {"acme.example": federated}
    svid = ca.issue_x509_svid("spiffe://acme.example/agent/a")
    verified = verify_x509_svid(list(svid.chain), bundles, time.time())
    assert verified.spiffe_id == "spiffe://acme.example/agent/a" and not verified.local
    token = ca.issue_jwt_svid("spiffe://acme.example/agent/a", ["ztgate"])
    assert verify_jwt_svid(token, "ztgate", bundles, time.time()).kind == "jwt"


def test_trust_bundle_is_local(ca: CertificateAuthority) -> None:
    bundle = trust_bundle(ca)
    assert bundle.local and bundle.trust_domain == "acme.example"
    assert set(bundle.jwt_keys) == {ca.current().jwt_kid}


def _bundle_with(key: dict[str, Any]) -> str:
    return json.dumps({"keys": [key]})


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        '{"keys": "nope"}',
        '{"keys": []}',
        _bundle_with({"use": "x509-svid", "x5c": []}),
        _bundle_with({"use": "x509-svid", "x5c": ["!!!"]}),
        _bundle_with({"use": "x509-svid", "x5c": ["AAAA", "AAAA"]}),
        _bundle_with({"use": "jwt-svid", "kty": "EC", "crv": "P-256"}),
        _bundle_with({"use": "jwt-svid", "kid": "k", "kty": "oct", "k": "c2VjcmV0"}),
        _bundle_with({"use": "jwt-svid", "kid": "k", "kty": "EC", "crv": "P-256", "x": "A"}),
    ],
)
def test_malformed_bundles_are_refused(document: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_bundle("acme.example", document)


def test_a_bundle_carrying_a_private_key_is_refused() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private))
    jwk.update(use="jwt-svid", kid="k")
    with pytest.raises(InvalidInputError, match="private"):
        parse_bundle("acme.example", _bundle_with(jwk))


def test_an_invalid_trust_domain_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidInputError):
        parse_bundle("Acme.Example", json.dumps(local_bundle(ca)))


def test_bundle_document_of_a_trust_bundle_is_the_local_bundle(ca: CertificateAuthority) -> None:
    ca.rotate(start_in=60)
    assert bundle_document(trust_bundle(ca), sequence=3) == local_bundle(ca, sequence=3)


# -- what federation relies on -----------------------------------------------------------


def test_read_bundle_gives_the_sequence_and_refresh_hint(ca: CertificateAuthority) -> None:
    read = read_bundle("acme.example", json.dumps(local_bundle(ca, sequence=4, refresh_hint=90)))
    assert (read.sequence, read.refresh_hint) == (4, 90)
    assert not read.empty
    bare = {"keys": local_bundle(ca)["keys"], "spiffe_sequence": "4", "spiffe_refresh_hint": -1}
    read = read_bundle("acme.example", json.dumps(bare))
    assert (read.sequence, read.refresh_hint) == (None, None), "not integers: as if absent"


def test_an_empty_key_set_only_where_allowed() -> None:
    with pytest.raises(InvalidInputError, match="no x509-svid or jwt-svid keys"):
        read_bundle("acme.example", '{"keys": []}')
    assert read_bundle("acme.example", '{"keys": []}', allow_empty=True).empty


def test_keys_of_unknown_use_or_type_are_ignored(ca: CertificateAuthority) -> None:
    document = local_bundle(ca)
    document["keys"] += [
        {"use": "warrant", "kty": "EC", "kid": "w"},
        {"use": "jwt-svid", "kid": "ed", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
    ]
    bundle = parse_bundle("acme.example", json.dumps(document))
    assert set(bundle.jwt_keys) == {ca.current().jwt_kid}


def test_a_root_of_another_trust_domain_is_refused(tmp_path: Path) -> None:
    other = CertificateAuthority.create(tmp_path / "other", "other.example", FrozenClock())
    with pytest.raises(InvalidInputError, match=r"a root of trust domain other\.example"):
        parse_bundle("acme.example", json.dumps(local_bundle(other)))


def test_an_x509_key_must_be_a_ca_matching_its_jwk(ca: CertificateAuthority) -> None:
    document = local_bundle(ca)
    [root] = [k for k in document["keys"] if k["use"] == "x509-svid"]
    leaf = ca.issue_x509_svid("spiffe://acme.example/a").chain[0]
    root["x5c"] = [base64.b64encode(_hazmat.certificate_der(leaf)).decode()]
    with pytest.raises(InvalidInputError, match="must be a CA certificate"):
        parse_bundle("acme.example", json.dumps(document))
    document = local_bundle(ca)
    [root] = [k for k in document["keys"] if k["use"] == "x509-svid"]
    [jwt_key] = [k for k in document["keys"] if k["use"] == "jwt-svid"]
    root["x"], root["y"] = jwt_key["x"], jwt_key["y"]
    with pytest.raises(InvalidInputError, match="does not match its x5c certificate"):
        parse_bundle("acme.example", json.dumps(document))
