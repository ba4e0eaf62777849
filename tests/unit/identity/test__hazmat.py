"""The hazmat tier: keys, serials, CA and leaf certificates as the X.509-SVID spec wants them."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ztgate.identity import _hazmat

NOW = datetime.datetime(2027, 1, 15, 8, 0, tzinfo=datetime.UTC)
DOMAIN_ID = "spiffe://acme.example"
AGENT_ID = "spiffe://acme.example/agent/mailer"


def _root(key: _hazmat.PrivateKey) -> x509.Certificate:
    return _hazmat.build_ca_certificate(
        subject_key=key.public_key(),
        issuer_key=key,
        issuer=None,
        trust_domain_id=DOMAIN_ID,
        common_name="ztgate root acme.example",
        not_before=NOW - datetime.timedelta(minutes=1),
        not_after=NOW + datetime.timedelta(days=365),
        path_length=1,
    )


@pytest.fixture
def root_key() -> _hazmat.PrivateKey:
    return _hazmat.generate_key()


@pytest.fixture
def root(root_key: _hazmat.PrivateKey) -> x509.Certificate:
    return _root(root_key)


@pytest.fixture
def signing_key() -> _hazmat.PrivateKey:
    return _hazmat.generate_key()


@pytest.fixture
def intermediate(
    root: x509.Certificate, root_key: _hazmat.PrivateKey, signing_key: _hazmat.PrivateKey
) -> x509.Certificate:
    return _hazmat.build_ca_certificate(
        subject_key=signing_key.public_key(),
        issuer_key=root_key,
        issuer=root,
        trust_domain_id=DOMAIN_ID,
        common_name="ztgate signing acme.example",
        not_before=NOW - datetime.timedelta(minutes=1),
        not_after=NOW + datetime.timedelta(days=30),
        path_length=0,
    )


@pytest.fixture
def leaf_key() -> _hazmat.PrivateKey:
    return _hazmat.generate_key()


@pytest.fixture
def leaf(
    intermediate: x509.Certificate,
    signing_key: _hazmat.PrivateKey,
    leaf_key: _hazmat.PrivateKey,
) -> x509.Certificate:
    return _hazmat.build_leaf_certificate(
        spiffe_id=AGENT_ID,
        subject_key=leaf_key.public_key(),
        issuer_key=signing_key,
        issuer=intermediate,
        not_before=NOW,
        not_after=NOW + datetime.timedelta(minutes=10),
        serial=12345,
    )


def ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def uris(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


# -- keys ----------------------------------------------------------------------------


def test_generated_keys_are_p256_and_distinct() -> None:
    first, second = _hazmat.generate_key(), _hazmat.generate_key()
    assert isinstance(first, ec.EllipticCurvePrivateKey)
    assert isinstance(first.curve, ec.SECP256R1)
    assert first.private_numbers() != second.private_numbers()


def test_unencrypted_pem_round_trips(root_key: _hazmat.PrivateKey) -> None:
    pem = _hazmat.private_pem(root_key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert _hazmat.load_private_pem(pem).private_numbers() == root_key.private_numbers()


def test_encrypted_pem_round_trips_with_the_passphrase(root_key: _hazmat.PrivateKey) -> None:
    pem = _hazmat.private_pem(root_key, b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = _hazmat.load_private_pem(pem, b"correct horse")
    assert loaded.private_numbers() == root_key.private_numbers()


def test_wrong_passphrase_fails(root_key: _hazmat.PrivateKey) -> None:
    pem = _hazmat.private_pem(root_key, b"correct horse")
    with pytest.raises(ValueError):
        _hazmat.load_private_pem(pem, b"battery staple")


def test_missing_passphrase_fails(root_key: _hazmat.PrivateKey) -> None:
    pem = _hazmat.private_pem(root_key, b"correct horse")
    with pytest.raises(TypeError):
        _hazmat.load_private_pem(pem)


def test_passphrase_for_an_unencrypted_key_fails(root_key: _hazmat.PrivateKey) -> None:
    with pytest.raises(TypeError):
        _hazmat.load_private_pem(_hazmat.private_pem(root_key), b"unexpected")


def test_empty_passphrase_means_unencrypted(root_key: _hazmat.PrivateKey) -> None:
    pem = _hazmat.private_pem(root_key, b"")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _hazmat.load_private_pem(pem, b"").private_numbers() == root_key.private_numbers()


def test_a_non_ec_key_is_refused() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="not an EC private key"):
        _hazmat.load_private_pem(pem)


def test_private_der_is_unencrypted_pkcs8(root_key: _hazmat.PrivateKey) -> None:
    der = _hazmat.private_der(root_key)
    loaded = serialization.load_der_private_key(der, password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == root_key.private_numbers()


# -- serial numbers --------------------------------------------------------------------


def test_serials_are_positive_below_2_159_and_random() -> None:
    serials = [_hazmat.serial_number() for _ in range(2000)]
    assert all(0 < s < 2**159 for s in serials)
    assert len(set(serials)) == len(serials)
    # 159 random bits: with 2000 draws some use the top bit, so it is not a fixed width.
    assert max(serials).bit_length() == 159
    # At most 20 octets in DER (RFC 5280, section 4.1.2.2), positive without a sign octet.
    assert all((s.bit_length() + 8) // 8 <= 20 for s in serials)


# -- CA certificates ---------------------------------------------------------------------


def test_root_is_a_self_signed_critical_ca(
    root: x509.Certificate, root_key: _hazmat.PrivateKey
) -> None:
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 1
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    assert ski(root) == x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()).digest
    with pytest.raises(x509.ExtensionNotFound):
        root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert isinstance(root.signature_hash_algorithm, hashes.SHA256)
    assert 0 < root.serial_number < 2**159


def test_ca_carries_the_trust_domain_id_as_its_only_uri(root: x509.Certificate) -> None:
    assert uris(root) == [DOMAIN_ID]


def test_intermediate_is_signed_by_the_root(
    root: x509.Certificate,
    root_key: _hazmat.PrivateKey,
    intermediate: x509.Certificate,
    signing_key: _hazmat.PrivateKey,
) -> None:
    intermediate.verify_directly_issued_by(root)
    assert intermediate.issuer == root.subject
    assert intermediate.subject != root.subject
    constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0
    assert intermediate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    aki = intermediate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski(root)
    assert ski(intermediate) == (
        x509.SubjectKeyIdentifier.from_public_key(signing_key.public_key()).digest
    )
    assert uris(intermediate) == [DOMAIN_ID]


@pytest.mark.parametrize("path_length", [None, 0, 3])
def test_ca_path_length_is_what_was_asked(
    root_key: _hazmat.PrivateKey, path_length: int | None
) -> None:
    certificate = _hazmat.build_ca_certificate(
        subject_key=root_key.public_key(),
        issuer_key=root_key,
        issuer=None,
        trust_domain_id=DOMAIN_ID,
        common_name="x",
        not_before=NOW,
        not_after=NOW + datetime.timedelta(days=1),
        path_length=path_length,
    )
    assert (
        certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        == path_length
    )


def test_ca_validity_is_what_was_asked(root: x509.Certificate) -> None:
    assert root.not_valid_before_utc == NOW - datetime.timedelta(minutes=1)
    assert root.not_valid_after_utc == NOW + datetime.timedelta(days=365)


def test_ca_serials_differ(root_key: _hazmat.PrivateKey) -> None:
    assert _root(root_key).serial_number != _root(root_key).serial_number


# -- leaf certificates -----------------------------------------------------------------------


def test_leaf_is_not_a_ca(leaf: x509.Certificate) -> None:
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    assert constraints.value.path_length is None


def test_leaf_key_usage_is_digital_signature_only(leaf: x509.Certificate) -> None:
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    value = usage.value
    assert value.digital_signature
    assert not value.key_cert_sign
    assert not value.crl_sign
    assert not value.content_commitment
    assert not value.key_encipherment
    assert not value.data_encipherment
    assert not value.key_agreement


def test_leaf_has_exactly_one_uri_san_and_nothing_else(leaf: x509.Certificate) -> None:
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(AGENT_ID)]


def test_leaf_eku_is_client_and_server_auth(leaf: x509.Certificate) -> None:
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}


def test_leaf_key_identifiers(
    leaf: x509.Certificate,
    leaf_key: _hazmat.PrivateKey,
    intermediate: x509.Certificate,
) -> None:
    assert ski(leaf) == x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()).digest
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski(intermediate)


def test_leaf_is_signed_by_the_intermediate(
    leaf: x509.Certificate, intermediate: x509.Certificate, root: x509.Certificate
) -> None:
    leaf.verify_directly_issued_by(intermediate)
    assert leaf.issuer == intermediate.subject
    with pytest.raises(ValueError):  # not by the root
        leaf.verify_directly_issued_by(root)


def test_leaf_carries_its_key_serial_and_validity(
    leaf: x509.Certificate, leaf_key: _hazmat.PrivateKey
) -> None:
    assert leaf.public_key() == leaf_key.public_key()
    assert leaf.serial_number == 12345
    assert leaf.not_valid_before_utc == NOW
    assert leaf.not_valid_after_utc == NOW + datetime.timedelta(minutes=10)
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)


def test_leaf_subject_names_the_id(leaf: x509.Certificate) -> None:
    common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [name.value for name in common_names] == [AGENT_ID]


def test_a_long_id_is_kept_whole_in_the_san(
    intermediate: x509.Certificate, signing_key: _hazmat.PrivateKey
) -> None:
    long_id = "spiffe://acme.example/" + "a" * 1500
    certificate = _hazmat.build_leaf_certificate(
        spiffe_id=long_id,
        subject_key=_hazmat.generate_key().public_key(),
        issuer_key=signing_key,
        issuer=intermediate,
        not_before=NOW,
        not_after=NOW + datetime.timedelta(minutes=10),
        serial=1,
    )
    assert uris(certificate) == [long_id]
    common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(common_name) <= 64  # ub-common-name
    assert long_id.startswith(str(common_name))


# -- encodings --------------------------------------------------------------------------------


def test_certificate_encodings_round_trip(leaf: x509.Certificate) -> None:
    assert x509.load_pem_x509_certificate(_hazmat.certificate_pem(leaf)) == leaf
    assert x509.load_der_x509_certificate(_hazmat.certificate_der(leaf)) == leaf
    assert _hazmat.certificate_pem(leaf).startswith(b"-----BEGIN CERTIFICATE-----")


def test_fingerprint_is_sha256_of_the_der(leaf: x509.Certificate, root: x509.Certificate) -> None:
    assert _hazmat.fingerprint(leaf) == hashlib.sha256(_hazmat.certificate_der(leaf)).digest()
    assert _hazmat.fingerprint(leaf) != _hazmat.fingerprint(root)
