"""Hazardous materials: every raw key and certificate operation ztgate performs.

Like `cryptography.hazmat`, this is the one place that chooses curves,
extensions and signature algorithms; the rest of the code calls the recipes in
`authority.py` and `verify.py`. Everything here follows the X.509-SVID spec
(SPIFFE, "X509-SVID.md"): a leaf has exactly one URI SAN, is not a CA, and has
digitalSignature key usage; a signing certificate is a CA with keyCertSign and
carries its trust domain's SPIFFE ID.
"""

from __future__ import annotations

import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey


def generate_key() -> PrivateKey:
    """A new EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER (the Workload API's `x509_svid_key`)."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_pem(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load an EC private key from PEM.

    Raises:
        ValueError: not an EC private key, or the wrong passphrase.
        TypeError: a passphrase is missing or was given for an unencrypted key.
    """
    key = serialization.load_pem_private_key(data, password=passphrase or None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("not an EC private key")
    return key


def serial_number() -> int:
    """A random, positive 159-bit serial number (RFC 5280, section 4.1.2.2)."""
    return secrets.randbits(159) | 1


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def build_ca_certificate(
    *,
    subject_key: PublicKey,
    issuer_key: PrivateKey,
    issuer: x509.Certificate | None,
    trust_domain_id: str,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate for the trust domain: self-signed when `issuer` is None."""
    subject = _name(common_name, "ztgate")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(subject_key)
        .serial_number(serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(trust_domain_id)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def build_leaf_certificate(
    *,
    spiffe_id: str,
    subject_key: PublicKey,
    issuer_key: PrivateKey,
    issuer: x509.Certificate,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    serial: int,
) -> x509.Certificate:
    """An X.509-SVID: exactly one URI SAN, not a CA, digitalSignature."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(spiffe_id[:64], "SPIFFE"))
        .issuer_name(issuer.subject)
        .public_key(subject_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            # Not critical: the subject name is not empty (RFC 5280, section 4.2.1.6).
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """PEM of one certificate."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificate_der(certificate: x509.Certificate) -> bytes:
    """DER of one certificate."""
    return certificate.public_bytes(serialization.Encoding.DER)


def fingerprint(certificate: x509.Certificate) -> bytes:
    """SHA-256 over the certificate's DER."""
    return certificate.fingerprint(hashes.SHA256())
