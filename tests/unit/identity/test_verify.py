"""Verifying SVIDs: every attack is refused with an IdentityError naming the failing step."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ztgate.errors import IdentityError
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority, SigningAuthority
from ztgate.identity.verify import (
    JWT_ALGORITHMS,
    TrustBundle,
    VerifiedSvid,
    certificate_fingerprint,
    verify_jwt_svid,
    verify_x509_svid,
)
from ztgate.testing import FrozenClock

OURS = "acme.example"
PARTNER = "partner.example"
AGENT = "spiffe://acme.example/agent/mailer"
PARTNER_AGENT = "spiffe://partner.example/agent/billing"
AUDIENCE = "ztgate"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def ours(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ours", OURS, clock)


@pytest.fixture
def partner(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "partner", PARTNER, clock)


@pytest.fixture
def rogue(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    """An attacker's CA that claims our trust domain."""
    return CertificateAuthority.create(tmp_path / "rogue", OURS, clock)


@pytest.fixture
def evil(tmp_path: Path, clock: FrozenClock) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "evil", "evil.example", clock)


def bundle_of(ca: CertificateAuthority, *, local: bool) -> TrustBundle:
    return TrustBundle(
        trust_domain=ca.trust_domain.name,
        x509_roots=tuple(ca.roots()),
        jwt_keys={a.jwt_kid: a.jwt_key.public_key() for a in ca.published()},
        local=local,
    )


@pytest.fixture
def bundles(ours: CertificateAuthority, partner: CertificateAuthority) -> dict[str, TrustBundle]:
    """Our trust domain and one federated domain."""
    return {OURS: bundle_of(ours, local=True), PARTNER: bundle_of(partner, local=False)}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- forging certificates ----------------------------------------------------------------------


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def key_usage(**flags: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names})


_DEFAULT = object()


def forge_leaf(
    issuer: SigningAuthority,
    now: float,
    *,
    names: Sequence[x509.GeneralName] | object | None = _DEFAULT,
    ca: bool | None = False,
    usage: x509.KeyUsage | object | None = _DEFAULT,
    eku: Sequence[ObjectIdentifier] | None = (
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ),
    not_before: float | None = None,
    not_after: float | None = None,
    issuer_certificate: x509.Certificate | None = None,
    issuer_key: _hazmat.PrivateKey | None = None,
) -> x509.Certificate:
    """A leaf built by hand, as an attacker would: a valid SVID unless told otherwise."""
    certificate = issuer_certificate or issuer.certificate
    signing_key = issuer_key or issuer.key
    subject_key = _hazmat.generate_key().public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
        .issuer_name(certificate.subject)
        .public_key(subject_key)
        .serial_number(_hazmat.serial_number())
        .not_valid_before(_utc(now - 30 if not_before is None else not_before))
        .not_valid_after(_utc(now + 600 if not_after is None else not_after))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    if usage is _DEFAULT:
        usage = key_usage(digital_signature=True)
    if usage is not None:
        assert isinstance(usage, x509.KeyUsage)
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if names is _DEFAULT:
        names = [x509.UniformResourceIdentifier(AGENT)]
    if names is not None:
        assert isinstance(names, Sequence)
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


# -- forging tokens ----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """`header.claims.` with the JSON given, for hand-made signatures."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"


def hand_signed(
    key: ec.EllipticCurvePrivateKey,
    header: dict[str, Any],
    payload: dict[str, Any],
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> str:
    """A JWS signed by hand with an EC key (raw r||s), whatever the header says."""
    signing_input = unsigned(header, payload)
    der = key.sign(signing_input.encode(), ec.ECDSA(hash_algorithm or hashes.SHA256()))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return f"{signing_input}.{b64(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


def claims(now: float, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": AGENT,
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": int(now) + 300,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def es256(authority: SigningAuthority, payload: dict[str, Any], **header: Any) -> str:
    headers = {"kid": authority.jwt_kid, **header}
    return jwt.encode(payload, authority.jwt_key, algorithm="ES256", headers=headers)


# -- X.509-SVIDs: what verifies ------------------------------------------------------------------


def test_an_issued_svid_verifies(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT)
    verified = verify_x509_svid(svid.chain, bundles, clock.now())
    assert verified == VerifiedSvid(
        spiffe_id=AGENT,
        trust_domain=OURS,
        not_after=svid.leaf.not_valid_after_utc.timestamp(),
        kind="x509",
        serial=svid.serial,
        local=True,
    )


def test_a_federated_svid_verifies_as_not_local(
    partner: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = partner.issue_x509_svid(PARTNER_AGENT)
    verified = verify_x509_svid(list(svid.chain), bundles, clock.now())
    assert verified.spiffe_id == PARTNER_AGENT
    assert verified.trust_domain == PARTNER
    assert verified.local is False
    assert verified.serial == svid.leaf.serial_number
    assert verified.kind == "x509"


def test_the_hand_built_control_leaf_verifies(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    """Every forged leaf below differs from this one by a single defect."""
    leaf = forge_leaf(ours.current(), clock.now())
    assert verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now()).local


def test_svids_of_both_authorities_verify_during_a_rotation(
    ours: CertificateAuthority, clock: FrozenClock
) -> None:
    old = ours.issue_x509_svid(AGENT)
    ours.rotate(start_in=60)
    clock.advance(60)
    new = ours.issue_x509_svid(AGENT)
    assert new.chain[1] != old.chain[1]
    bundles = {OURS: bundle_of(ours, local=True)}
    for svid in (old, new):
        assert verify_x509_svid(svid.chain, bundles, clock.now()).serial == svid.serial


def test_other_san_types_beside_the_uri_are_allowed(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    names = [x509.DNSName("mailer.internal"), x509.UniformResourceIdentifier(AGENT)]
    leaf = forge_leaf(ours.current(), clock.now(), names=names)
    verified = verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())
    assert verified.spiffe_id == AGENT


def test_fingerprint_is_sha256_of_the_der(ours: CertificateAuthority) -> None:
    leaf = ours.issue_x509_svid(AGENT).leaf
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert certificate_fingerprint(leaf) == hashlib.sha256(der).digest()


# -- X.509-SVIDs: validity and skew ------------------------------------------------------------


@pytest.mark.parametrize("skew", [0.0, 30.0, 120.0])
def test_x509_expiry_honours_the_skew_at_the_edge(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], skew: float
) -> None:
    svid = ours.issue_x509_svid(AGENT, ttl=600)
    not_after = svid.leaf.not_valid_after_utc.timestamp()
    verify_x509_svid(svid.chain, bundles, not_after + skew, skew=skew)
    with pytest.raises(IdentityError, match=r"^validity: .*expired"):
        verify_x509_svid(svid.chain, bundles, not_after + skew + 1, skew=skew)


@pytest.mark.parametrize("skew", [0.0, 30.0, 120.0])
def test_x509_not_yet_valid_honours_the_skew_at_the_edge(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], skew: float
) -> None:
    svid = ours.issue_x509_svid(AGENT)
    not_before = svid.leaf.not_valid_before_utc.timestamp()
    verify_x509_svid(svid.chain, bundles, not_before - skew, skew=skew)
    with pytest.raises(IdentityError, match=r"^validity: .*not valid yet"):
        verify_x509_svid(svid.chain, bundles, not_before - skew - 1, skew=skew)


def test_a_long_expired_svid_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT, ttl=600)
    with pytest.raises(IdentityError, match=r"^validity: "):
        verify_x509_svid(svid.chain, bundles, clock.now() + 86400)


def test_a_leaf_valid_only_in_the_future_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    now = clock.now()
    leaf = forge_leaf(ours.current(), now, not_before=now + 3600, not_after=now + 7200)
    with pytest.raises(IdentityError, match=r"^validity: .*not valid yet"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, now)


def test_a_leaf_outliving_its_expired_intermediate_is_refused(
    tmp_path: Path, clock: FrozenClock
) -> None:
    ca = CertificateAuthority.create(tmp_path / "short", OURS, clock, signing_ttl=1000)
    authority = ca.current()
    now = clock.now()
    leaf = forge_leaf(authority, now, not_after=now + 100_000)
    bundles = {OURS: bundle_of(ca, local=True)}
    verify_x509_svid([leaf, authority.certificate], bundles, now + 500)
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([leaf, authority.certificate], bundles, now + 5000)


# -- X.509-SVIDs: the wrong signer -------------------------------------------------------------


def test_a_leaf_signed_by_an_unknown_ca_is_refused(
    rogue: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = rogue.issue_x509_svid(AGENT)  # a CA of its own that claims acme.example
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid(svid.chain, bundles, clock.now())


def test_an_unknown_root_in_the_chain_is_refused(
    rogue: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = rogue.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([*svid.chain, *rogue.roots()], bundles, clock.now())


def test_our_ca_cannot_vouch_for_another_trust_domain(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    names = [x509.UniformResourceIdentifier("spiffe://evil.example/agent/mailer")]
    leaf = forge_leaf(ours.current(), clock.now(), names=names)
    with pytest.raises(IdentityError, match=r"^trust domain: evil\.example"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_our_ca_cannot_vouch_for_a_federated_trust_domain(
    ours: CertificateAuthority,
    evil: CertificateAuthority,
    bundles: dict[str, TrustBundle],
    clock: FrozenClock,
) -> None:
    bundles = {**bundles, "evil.example": bundle_of(evil, local=False)}
    for spiffe_id in ("spiffe://evil.example/agent/mailer", PARTNER_AGENT):
        names = [x509.UniformResourceIdentifier(spiffe_id)]
        leaf = forge_leaf(ours.current(), clock.now(), names=names)
        with pytest.raises(IdentityError, match=r"^chain: "):
            verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_a_federated_ca_cannot_vouch_for_our_trust_domain(
    partner: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    leaf = forge_leaf(partner.current(), clock.now())  # names spiffe://acme.example/...
    with pytest.raises(IdentityError, match=r"^chain: does not chain to a root of acme"):
        verify_x509_svid([leaf, partner.current().certificate], bundles, clock.now())


def test_a_self_signed_leaf_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    key = _hazmat.generate_key()
    now = clock.now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_utc(now - 30))
        .not_valid_after(_utc(now + 600))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(AGENT)]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([leaf], bundles, now)


def test_a_chain_without_its_intermediate_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([svid.leaf], bundles, clock.now())


def test_a_chain_with_the_wrong_intermediate_is_refused(
    ours: CertificateAuthority, clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT)
    new = ours.rotate(start_in=0)  # same subject name, different key
    bundles = {OURS: bundle_of(ours, local=True)}
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([svid.leaf, new.certificate], bundles, clock.now())


@pytest.mark.parametrize("chain", [[], ()])
def test_an_empty_chain_is_refused(
    bundles: dict[str, TrustBundle], clock: FrozenClock, chain: Sequence[x509.Certificate]
) -> None:
    with pytest.raises(IdentityError, match=r"^certificate: "):
        verify_x509_svid(chain, bundles, clock.now())


def test_no_bundles_trust_nothing(ours: CertificateAuthority, clock: FrozenClock) -> None:
    svid = ours.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError, match=r"^trust domain: "):
        verify_x509_svid(svid.chain, {}, clock.now())
    jwt_only = {OURS: TrustBundle(OURS, (), {}, local=True)}
    with pytest.raises(IdentityError, match=r"^trust domain: "):
        verify_x509_svid(svid.chain, jwt_only, clock.now())


def test_the_bundle_is_chosen_by_the_trust_domain_the_leaf_names(
    ours: CertificateAuthority, clock: FrozenClock
) -> None:
    # Our roots are present, but only as the partner's bundle: they do not vouch for us.
    bundles = {PARTNER: bundle_of(ours, local=False)}
    svid = ours.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError, match=r"^trust domain: acme\.example"):
        verify_x509_svid(svid.chain, bundles, clock.now())


# -- X.509-SVIDs: the wrong shape --------------------------------------------------------------


def test_a_ca_certificate_as_leaf_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), ca=True)
    with pytest.raises(IdentityError, match=r"^leaf: .*CA"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_the_intermediate_presented_as_leaf_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    # Its SAN is the trust domain's own ID: no workload path.
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: "):
        verify_x509_svid([ours.current().certificate], bundles, clock.now())


def test_two_uri_sans_are_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    names = [
        x509.UniformResourceIdentifier(AGENT),
        x509.UniformResourceIdentifier("spiffe://acme.example/agent/admin"),
    ]
    leaf = forge_leaf(ours.current(), clock.now(), names=names)
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: .*exactly one URI SAN.* 2"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_no_san_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), names=None)
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: .*no subject alternative name"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_a_san_without_a_uri_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), names=[x509.DNSName("mailer.acme.example")])
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: .* 0"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://ACME.example/agent/mailer",
        "SPIFFE://acme.example/agent/mailer",
        "https://acme.example/agent/mailer",
        "spiffe://acme.example/agent/../admin",
        "spiffe://acme.example/agent//mailer",
        "spiffe://acme.example/agent/mailer/",
        "spiffe://acme.example/agent/mailer?admin=1",
        "spiffe://acme.example/agent/mailer#x",
        "spiffe://acme.example:443/agent/mailer",
        "spiffe://admin@acme.example/agent/mailer",
        "spiffe://acme.example/agent/%6dailer",
        "spiffe://acme.example/agent/mailer\n",
        "spiffe://acme.example/" + "a" * 2100,
    ],
)
def test_a_malformed_spiffe_id_in_the_san_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, uri: str
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), names=[x509.UniformResourceIdentifier(uri)])
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: "):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_an_id_without_a_path_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    names = [x509.UniformResourceIdentifier("spiffe://acme.example")]
    leaf = forge_leaf(ours.current(), clock.now(), names=names)
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: .*path"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        (key_usage(key_encipherment=True), "digitalSignature"),
        (key_usage(key_agreement=True), "digitalSignature"),
        (None, "no key usage"),
        (key_usage(digital_signature=True, key_cert_sign=True), "must not sign"),
        (key_usage(digital_signature=True, crl_sign=True), "must not sign"),
    ],
    ids=["keyEncipherment only", "keyAgreement only", "no key usage", "keyCertSign", "cRLSign"],
)
def test_a_leaf_with_the_wrong_key_usage_is_refused(
    ours: CertificateAuthority,
    bundles: dict[str, TrustBundle],
    clock: FrozenClock,
    usage: x509.KeyUsage | None,
    reason: str,
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), usage=usage)
    with pytest.raises(IdentityError, match=rf"^leaf: .*{reason}"):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_a_server_only_leaf_is_refused_from_a_client(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    leaf = forge_leaf(ours.current(), clock.now(), eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(IdentityError, match=r"^chain: "):
        verify_x509_svid([leaf, ours.current().certificate], bundles, clock.now())


def test_the_leaf_must_come_first(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    svid = ours.issue_x509_svid(AGENT)
    with pytest.raises(IdentityError):
        verify_x509_svid(list(reversed(svid.chain)), bundles, clock.now())


def test_a_leaf_with_a_duplicated_san_is_an_identity_error(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    """Two SAN extensions (forbidden by RFC 5280) must be refused, not crash the verifier."""
    placeholder = ObjectIdentifier("2.5.29.99")
    second_san = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier("spiffe://acme.example/agent/admin")]
    ).public_bytes()
    authority = ours.current()
    now = clock.now()
    key = _hazmat.generate_key()
    built = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dup")]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(_hazmat.serial_number())
        .not_valid_before(_utc(now - 30))
        .not_valid_after(_utc(now + 600))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(AGENT)]), False)
        .add_extension(x509.UnrecognizedExtension(placeholder, second_san), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    der = built.public_bytes(serialization.Encoding.DER)
    # OID 2.5.29.99 -> 2.5.29.17 (subjectAltName), same length.
    oid_99, oid_san = bytes([6, 3, 0x55, 0x1D, 99]), bytes([6, 3, 0x55, 0x1D, 17])
    assert der.count(oid_99) == 1
    leaf = x509.load_der_x509_certificate(der.replace(oid_99, oid_san))
    with pytest.raises(IdentityError):
        verify_x509_svid([leaf, authority.certificate], bundles, now)


# -- JWT-SVIDs: what verifies --------------------------------------------------------------------


def test_an_issued_token_verifies(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE], ttl=300)
    verified = verify_jwt_svid(token, AUDIENCE, bundles, clock.now())
    assert verified == VerifiedSvid(
        spiffe_id=AGENT,
        trust_domain=OURS,
        not_after=clock.now() + 300,
        kind="jwt",
        serial=None,
        local=True,
    )


def test_a_federated_token_verifies_as_not_local(
    partner: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = partner.issue_jwt_svid(PARTNER_AGENT, [AUDIENCE])
    verified = verify_jwt_svid(token, AUDIENCE, bundles, clock.now())
    assert (verified.spiffe_id, verified.trust_domain, verified.local) == (
        PARTNER_AGENT,
        PARTNER,
        False,
    )


def test_one_of_several_audiences_is_enough(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, ["billing", AUDIENCE])
    assert verify_jwt_svid(token, AUDIENCE, bundles, clock.now()).spiffe_id == AGENT


@pytest.mark.parametrize("typ", [None, "JWT", "JOSE"])
def test_allowed_types(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, typ: str | None
) -> None:
    authority = ours.current()
    header: dict[str, Any] = {"alg": "ES256", "kid": authority.jwt_kid}
    if typ is not None:
        header["typ"] = typ
    token = hand_signed(authority.jwt_key, header, claims(clock.now()))
    assert verify_jwt_svid(token, AUDIENCE, bundles, clock.now()).spiffe_id == AGENT


def test_tokens_of_both_authorities_verify_during_a_rotation(
    ours: CertificateAuthority, clock: FrozenClock
) -> None:
    old = ours.issue_jwt_svid(AGENT, [AUDIENCE])
    ours.rotate(start_in=60)
    clock.advance(60)
    new = ours.issue_jwt_svid(AGENT, [AUDIENCE])
    assert jwt.get_unverified_header(old)["kid"] != jwt.get_unverified_header(new)["kid"]
    bundles = {OURS: bundle_of(ours, local=True)}
    for token in (old, new):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_an_rsa_token_verifies_against_an_rsa_key(
    rsa_key: rsa.RSAPrivateKey, clock: FrozenClock
) -> None:
    bundles = {OURS: TrustBundle(OURS, (), {"rsa-1": rsa_key.public_key()})}
    for algorithm in ("RS256", "PS256"):
        token = jwt.encode(
            claims(clock.now()), rsa_key, algorithm=algorithm, headers={"kid": "rsa-1"}
        )
        verified = verify_jwt_svid(token, AUDIENCE, bundles, clock.now())
        assert verified.spiffe_id == AGENT
        assert verified.local is False  # the TrustBundle default


# -- JWT-SVIDs: algorithms ---------------------------------------------------------------------


def test_only_asymmetric_algorithms_are_allowed() -> None:
    assert "none" not in JWT_ALGORITHMS
    assert not any(a.startswith("HS") for a in JWT_ALGORITHMS)
    assert "ES256" in JWT_ALGORITHMS


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, alg: str
) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": ours.current().jwt_kid}
    token = unsigned(header, claims(clock.now())) + "."
    with pytest.raises(IdentityError, match=r"^token: algorithm .* is not allowed"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_alg_none_made_by_pyjwt_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = jwt.encode(
        claims(clock.now()), None, algorithm="none", headers={"kid": ours.current().jwt_kid}
    )
    with pytest.raises(IdentityError, match=r"^token: algorithm 'none' is not allowed"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, alg: str
) -> None:
    token = jwt.encode(
        claims(clock.now()), "s" * 64, algorithm=alg, headers={"kid": ours.current().jwt_kid}
    )
    with pytest.raises(IdentityError, match=rf"^token: algorithm '{alg}' is not allowed"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize(
    "encoding",
    [serialization.Encoding.PEM, serialization.Encoding.DER],
)
def test_hmac_keyed_with_the_public_key_is_refused(
    ours: CertificateAuthority,
    bundles: dict[str, TrustBundle],
    clock: FrozenClock,
    encoding: serialization.Encoding,
) -> None:
    """The classic confusion: HS256 keyed with the (public) verification key's bytes."""
    authority = ours.current()
    public_bytes = authority.jwt_key.public_key().public_bytes(
        encoding, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": authority.jwt_kid}
    signing_input = unsigned(header, claims(clock.now()))
    mac = hmac.new(public_bytes, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    with pytest.raises(IdentityError, match=r"^token: algorithm 'HS256' is not allowed"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_rs256_with_our_ec_kid_is_refused(
    ours: CertificateAuthority,
    bundles: dict[str, TrustBundle],
    clock: FrozenClock,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    kid = ours.current().jwt_kid
    for algorithm in ("RS256", "PS256"):
        token = jwt.encode(claims(clock.now()), rsa_key, algorithm=algorithm, headers={"kid": kid})
        with pytest.raises(IdentityError, match=rf"^token: algorithm {algorithm} does not match"):
            verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_es256_with_an_rsa_kid_is_refused(
    ours: CertificateAuthority, rsa_key: rsa.RSAPrivateKey, clock: FrozenClock
) -> None:
    bundles = {OURS: TrustBundle(OURS, (), {"rsa-1": rsa_key.public_key()}, local=True)}
    token = es256(ours.current(), claims(clock.now()), kid="rsa-1")
    with pytest.raises(IdentityError, match=r"^token: algorithm ES256 does not match"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_es384_header_with_a_p256_key_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    authority = ours.current()
    header = {"alg": "ES384", "typ": "JWT", "kid": authority.jwt_kid}
    token = hand_signed(authority.jwt_key, header, claims(clock.now()), hashes.SHA384())
    with pytest.raises(IdentityError, match=r"^token: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("alg", [["ES256"], {"ES256": 1}, 256, None])
def test_a_non_string_alg_is_an_identity_error(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, alg: Any
) -> None:
    authority = ours.current()
    header = {"alg": alg, "typ": "JWT", "kid": authority.jwt_kid}
    token = unsigned(header, claims(clock.now())) + "." + b64(b"\x00" * 64)
    with pytest.raises(IdentityError, match=r"^token: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


# -- JWT-SVIDs: keys and signatures --------------------------------------------------------------


def test_a_kid_not_in_the_bundle_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = es256(ours.current(), claims(clock.now()), kid="ztgate-000000000000")
    with pytest.raises(IdentityError, match=r"^token: key 'ztgate-000000000000' is not in"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("kid", [None, "", 7])
def test_a_missing_or_empty_kid_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, kid: Any
) -> None:
    authority = ours.current()
    header: dict[str, Any] = {"alg": "ES256", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    token = hand_signed(authority.jwt_key, header, claims(clock.now()))
    with pytest.raises(IdentityError, match=r"^token: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_our_kid_on_someone_elses_key_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    attacker = _hazmat.generate_key()
    token = jwt.encode(
        claims(clock.now()),
        attacker,
        algorithm="ES256",
        headers={"kid": ours.current().jwt_kid},
    )
    with pytest.raises(IdentityError, match=r"^token: .*[Ss]ignature"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_a_token_signed_with_the_x509_signing_key_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    authority = ours.current()
    token = jwt.encode(
        claims(clock.now()), authority.key, algorithm="ES256", headers={"kid": authority.jwt_kid}
    )
    with pytest.raises(IdentityError, match=r"^token: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_a_tampered_payload_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE])
    header, _, signature = token.split(".")
    forged = claims(clock.now(), sub="spiffe://acme.example/agent/admin")
    tampered = f"{header}.{b64(json.dumps(forged).encode())}.{signature}"
    with pytest.raises(IdentityError, match=r"^token: .*[Ss]ignature"):
        verify_jwt_svid(tampered, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b", "..."])
def test_not_a_jwt_is_refused(
    bundles: dict[str, TrustBundle], clock: FrozenClock, token: str
) -> None:
    with pytest.raises(IdentityError, match=r"^token: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


# -- JWT-SVIDs: claims ---------------------------------------------------------------------------


def test_the_wrong_audience_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, ["billing", "payroll"])
    with pytest.raises(IdentityError, match=r"^audience: .*'ztgate'"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_an_audience_prefix_is_not_the_audience(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = ours.issue_jwt_svid(AGENT, ["ztgate-staging"])
    with pytest.raises(IdentityError, match=r"^audience: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("missing", ["exp", "aud", "sub"])
def test_a_required_claim_missing_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, missing: str
) -> None:
    payload = claims(clock.now(), **{missing: None})
    assert missing not in payload
    token = es256(ours.current(), payload)
    step = "SPIFFE ID" if missing == "sub" else "token"
    with pytest.raises(IdentityError, match=rf"^{step}: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize("typ", ["at+jwt", "secevent+jwt", "JWS", "dpop+jwt", ""])
def test_other_types_are_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, typ: str
) -> None:
    authority = ours.current()
    header = {"alg": "ES256", "typ": typ, "kid": authority.jwt_kid}
    token = hand_signed(authority.jwt_key, header, claims(clock.now()))
    assert jwt.get_unverified_header(token)["typ"] == typ
    with pytest.raises(IdentityError, match=r"^token: type .* is not a JWT-SVID"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_a_subject_in_an_untrusted_domain_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = es256(ours.current(), claims(clock.now(), sub="spiffe://evil.example/agent/mailer"))
    with pytest.raises(IdentityError, match=r"^trust domain: evil\.example"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_our_key_cannot_vouch_for_a_federated_subject(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = es256(ours.current(), claims(clock.now(), sub=PARTNER_AGENT))
    with pytest.raises(IdentityError, match=r"^token: key .* is not in the bundle of partner"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_a_federated_key_cannot_vouch_for_our_subject(
    partner: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    token = es256(partner.current(), claims(clock.now()))  # sub: spiffe://acme.example/...
    with pytest.raises(IdentityError, match=r"^token: key .* is not in the bundle of acme"):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


@pytest.mark.parametrize(
    "subject",
    [
        "spiffe://acme.example",
        "spiffe://ACME.example/agent/mailer",
        "spiffe://acme.example/agent/../admin",
        "acme.example/agent/mailer",
        "spiffe://acme.example/agent/mailer\n",
        42,
        ["spiffe://acme.example/agent/mailer"],
    ],
)
def test_a_bad_subject_is_refused(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, subject: Any
) -> None:
    token = es256(ours.current(), claims(clock.now(), sub=subject))
    with pytest.raises(IdentityError, match=r"^SPIFFE ID: "):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


# -- JWT-SVIDs: time (the injected clock, never the wall clock) -----------------------------------


@pytest.mark.parametrize("skew", [0.0, 30.0, 120.0])
def test_jwt_expiry_honours_the_skew_at_the_edge(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock, skew: float
) -> None:
    token = ours.issue_jwt_svid(AGENT, [AUDIENCE], ttl=300)
    exp = clock.now() + 300
    verify_jwt_svid(token, AUDIENCE, bundles, exp + skew, skew=skew)
    with pytest.raises(IdentityError, match=r"^validity: .*expired"):
        verify_jwt_svid(token, AUDIENCE, bundles, exp + skew + 1, skew=skew)


def test_expiry_follows_the_injected_clock_not_the_wall_clock(
    tmp_path: Path,
) -> None:
    # Far in the future: the token is valid by the wall clock, expired by `now`.
    future = FrozenClock(2_500_000_000.0)
    ca = CertificateAuthority.create(tmp_path / "future", OURS, future)
    bundles = {OURS: bundle_of(ca, local=True)}
    token = ca.issue_jwt_svid(AGENT, [AUDIENCE], ttl=300)
    verify_jwt_svid(token, AUDIENCE, bundles, future.now())
    with pytest.raises(IdentityError, match=r"^validity: "):
        verify_jwt_svid(token, AUDIENCE, bundles, future.now() + 3600)


def test_a_token_valid_by_the_injected_clock_verifies_though_the_wall_clock_passed_it(
    tmp_path: Path,
) -> None:
    past = FrozenClock(1_000_000_000.0)  # 2001: long expired by the wall clock
    ca = CertificateAuthority.create(tmp_path / "past", OURS, past)
    bundles = {OURS: bundle_of(ca, local=True)}
    token = ca.issue_jwt_svid(AGENT, [AUDIENCE], ttl=300)
    assert verify_jwt_svid(token, AUDIENCE, bundles, past.now()).not_after == 1_000_000_300


@pytest.mark.parametrize("skew", [0.0, 30.0])
def test_nbf_in_the_future_is_refused_with_the_skew_at_the_edge(
    tmp_path: Path, skew: float
) -> None:
    # In 2001, so that only the injected clock can find the token premature.
    clock = FrozenClock(1_000_000_000.0)
    ca = CertificateAuthority.create(tmp_path / "past", OURS, clock)
    bundles = {OURS: bundle_of(ca, local=True)}
    now = clock.now()
    at_edge = es256(ca.current(), claims(now, nbf=int(now + skew)))
    verify_jwt_svid(at_edge, AUDIENCE, bundles, now, skew=skew)
    premature = es256(ca.current(), claims(now, nbf=int(now + skew) + 1))
    with pytest.raises(IdentityError, match=r"^validity: .*not valid yet"):
        verify_jwt_svid(premature, AUDIENCE, bundles, now, skew=skew)


def test_nbf_in_the_past_by_the_injected_clock_verifies(tmp_path: Path) -> None:
    # In 2049: nbf is in the past by `now` but in the future by the wall clock.
    clock = FrozenClock(2_500_000_000.0)
    ca = CertificateAuthority.create(tmp_path / "future", OURS, clock)
    bundles = {OURS: bundle_of(ca, local=True)}
    token = es256(ca.current(), claims(clock.now(), nbf=int(clock.now()) - 10))
    assert verify_jwt_svid(token, AUDIENCE, bundles, clock.now()).spiffe_id == AGENT


@pytest.mark.parametrize(("field", "offset"), [("exp", 300), ("nbf", 3600)])
def test_non_numeric_times_are_refused(tmp_path: Path, field: str, offset: int) -> None:
    # A string exp that is still ahead, a string nbf that is still ahead: in 2001, so the
    # wall clock sees neither as a reason to refuse.
    clock = FrozenClock(1_000_000_000.0)
    ca = CertificateAuthority.create(tmp_path / "past", OURS, clock)
    bundles = {OURS: bundle_of(ca, local=True)}
    value = str(int(clock.now()) + offset)
    token = es256(ca.current(), claims(clock.now(), **{field: value}))
    with pytest.raises(IdentityError):
        verify_jwt_svid(token, AUDIENCE, bundles, clock.now())


def test_an_iat_in_the_future_is_not_a_reason_to_refuse(
    ours: CertificateAuthority, bundles: dict[str, TrustBundle], clock: FrozenClock
) -> None:
    # iat is informational for a JWT-SVID; exp and nbf bound its validity.
    token = es256(ours.current(), claims(clock.now(), iat=int(clock.now()) + 3600))
    assert verify_jwt_svid(token, AUDIENCE, bundles, clock.now()).spiffe_id == AGENT
