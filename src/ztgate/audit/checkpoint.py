"""Signed checkpoints in the C2SP signed-note format, with Ed25519.

A checkpoint commits to a chain's length and head hash:

    ztgate-audit/<chain>
    <number of records>
    <base64 of the head hash>

    — <key name> <base64(key hash || signature)>

The key hash is the first four bytes of SHA-256(name || "\\n" || 0x01 ||
public key), as the signed-note spec defines for Ed25519, so a third party can
check a log it was given with any signed-note verifier and our public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztgate import keyfiles
from ztgate.errors import AuditError, ConfigError

_ED25519 = b"\x01"
_DASH = "\u2014"
DEFAULT_KEY_NAME = "ztgate-audit"


def origin(chain: str) -> str:
    """The checkpoint origin line for `chain`."""
    return f"ztgate-audit/{chain}"


def key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The signed-note key hash: four bytes naming the key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + raw).digest()[:4]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint: which chain, how many records, which head."""

    chain: str
    seq: int
    hash: str


class CheckpointSigner:
    """Signs checkpoints with the audit key."""

    def __init__(self, private_key: Ed25519PrivateKey, name: str = DEFAULT_KEY_NAME) -> None:
        self._key = private_key
        self.name = name
        self.public_key = private_key.public_key()
        self._key_hash = key_hash(name, self.public_key)

    def sign(self, chain: str, seq: int, head_hash: str) -> str:
        """The signed note for `chain` at `seq` records with head `head_hash`."""
        text = f"{origin(chain)}\n{seq}\n{base64.b64encode(bytes.fromhex(head_hash)).decode()}\n"
        signature = self._key.sign(text.encode())
        blob = base64.b64encode(self._key_hash + signature).decode()
        return f"{text}\n{_DASH} {self.name} {blob}\n"


def verify_note(
    note: str, public_key: Ed25519PublicKey, name: str = DEFAULT_KEY_NAME
) -> Checkpoint:
    """Check a checkpoint's signature and return what it commits to.

    Raises:
        AuditError: malformed, signed by another key, or a bad signature.
    """
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise AuditError("checkpoint has no signature block")
    text += "\n"
    lines = text.splitlines()
    if len(lines) < 3 or not lines[0].startswith("ztgate-audit/"):
        raise AuditError("checkpoint text is malformed")
    expected = key_hash(name, public_key)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError):
            continue  # not a signature of ours
        if blob[:4] != expected:
            continue
        try:
            public_key.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise AuditError("checkpoint signature is invalid") from exc
        try:
            return Checkpoint(
                lines[0].removeprefix("ztgate-audit/"),
                int(lines[1]),
                base64.b64decode(lines[2], validate=True).hex(),
            )
        except ValueError as exc:
            raise AuditError("checkpoint text is malformed") from exc
    raise AuditError(f"checkpoint is not signed by key {name!r}")


def generate_key(private_path: Path, public_path: Path) -> None:
    """Create the audit signing key pair (private 0600, public 0644)."""
    key = Ed25519PrivateKey.generate()
    keyfiles.write_private(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    keyfiles.write_public(public_path, public_pem(key.public_key()))


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo of `public_key`."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signer(private_path: Path, name: str = DEFAULT_KEY_NAME) -> CheckpointSigner:
    """Load the audit signing key.

    Raises:
        ConfigError: missing, too widely readable, or not an Ed25519 key.
    """
    key = serialization.load_pem_private_key(keyfiles.read_private(private_path), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(str(private_path), "", "the audit key must be an Ed25519 private key")
    return CheckpointSigner(key, name)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an audit public key from PEM.

    Raises:
        ConfigError: missing or not an Ed25519 public key.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), "", f"cannot read the audit public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(str(path), "", "not an Ed25519 public key")
    return key
