from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ztgate.identity.authority import CertificateAuthority
from ztgate.sdk.models import (
    BoundWarrant,
    Delegation,
    Grant,
    Reason,
    SvidKey,
    as_grant,
    encode_x5c,
)
from ztgate.warrants.jwk import key_thumbprint

from .conftest import AGENT


def test_reason_from_json() -> None:
    assert Reason.from_json({"check": "scope", "outcome": "deny", "reason": "no"}) == Reason(
        "scope", "deny", "no"
    )
    assert Reason.from_json({"check": "x"}) == Reason("x", "", "")
    assert Reason.from_json("odd") == Reason("", "", "odd")


def test_grants_and_delegations_round_trip() -> None:
    assert Grant("t1").to_json() == {"task_id": "t1"}
    assert Grant("t1", "w1").to_json() == {"task_id": "t1", "warrant_id": "w1"}
    delegation = Delegation("w2", "t1", 100.0, 1)
    assert delegation.grant == Grant("t1", "w2")
    assert as_grant(delegation.to_json()) == Grant("t1", "w2")
    assert as_grant(delegation) == Grant("t1", "w2")
    assert as_grant(Grant("t")) == Grant("t")
    assert as_grant({"task_id": "t"}) == Grant("t")
    bound = BoundWarrant("tok", "w1", "t1", "jkt", 1.0)
    assert bound.grant == Grant("t1", "w1")
    assert "tok" not in repr(bound)


@pytest.mark.parametrize(
    "data", [{}, {"task_id": ""}, {"task_id": 3}, {"task_id": "t", "warrant_id": ""}]
)
def test_as_grant_refuses_malformed_json(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"task_id|warrant_id"):
        as_grant(data)


def test_svid_key_from_chain(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid(AGENT)
    key = SvidKey.from_chain(AGENT, svid.private_key, svid.chain)
    assert key.jkt == key_thumbprint(svid.private_key)
    assert key.jwk["kty"] == "EC"
    assert "d" not in key.jwk
    assert key.serial == svid.serial
    assert key.not_after == svid.not_after
    assert [x509.load_der_x509_certificate(base64.b64decode(c)) for c in key.x5c] == list(
        svid.chain
    )
    assert "private_key" not in repr(key)


def test_x5c_is_standard_padded_base64() -> None:
    data = bytes(range(250, 256)) + b"\xff\xfe"  # would need + and / and padding
    [encoded] = encode_x5c([data])
    assert base64.b64decode(encoded, validate=True) == data
    assert encoded.endswith("=")
    assert "-" not in encoded and "_" not in encoded


def test_x5c_matches_der(ca: CertificateAuthority) -> None:
    svid = ca.issue_x509_svid(AGENT)
    assert encode_x5c([svid.leaf.public_bytes(Encoding.DER)]) == [
        base64.b64encode(svid.leaf.public_bytes(Encoding.DER)).decode()
    ]
