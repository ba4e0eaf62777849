"""Signed checkpoints: the C2SP signed-note format, verification, key files."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ztgate.audit.checkpoint import (
    DEFAULT_KEY_NAME,
    Checkpoint,
    CheckpointSigner,
    generate_key,
    key_hash,
    load_public_key,
    load_signer,
    origin,
    verify_note,
)
from ztgate.errors import AuditError, ConfigError

HEAD = hashlib.sha256(b"head").hexdigest()
DASH = "\u2014"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def note(key: Ed25519PrivateKey) -> str:
    return CheckpointSigner(key).sign("main", 42, HEAD)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_note_follows_the_signed_note_format(key: Ed25519PrivateKey, note: str) -> None:
    text, blank, signature_block = note.partition("\n\n")
    lines = (text + "\n").splitlines()

    assert blank == "\n\n"
    assert lines == ["ztgate-audit/main", "42", base64.b64encode(bytes.fromhex(HEAD)).decode()]
    assert note.endswith("\n")
    [signature_line] = signature_block.splitlines()
    dash, name, blob64 = signature_line.split(" ")
    assert dash == DASH
    assert name == DEFAULT_KEY_NAME
    blob = base64.b64decode(blob64, validate=True)
    expected_hash = hashlib.sha256(name.encode() + b"\n" + b"\x01" + _raw(key)).digest()[:4]
    assert blob[:4] == expected_hash
    assert len(blob) == 4 + 64
    # An independent Ed25519 check over the note text, final newline included.
    key.public_key().verify(blob[4:], (text + "\n").encode())


def test_key_hash_is_sha256_of_name_newline_type_and_key(key: Ed25519PrivateKey) -> None:
    expected = hashlib.sha256(b"some-name\n\x01" + _raw(key)).digest()[:4]

    assert key_hash("some-name", key.public_key()) == expected
    assert key_hash("other-name", key.public_key()) != expected


def test_origin_names_the_chain() -> None:
    assert origin("main") == "ztgate-audit/main"


def test_a_good_note_verifies_and_says_what_it_commits_to(
    key: Ed25519PrivateKey, note: str
) -> None:
    assert verify_note(note, key.public_key()) == Checkpoint("main", 42, HEAD)


def test_a_custom_key_name_is_part_of_the_signature(key: Ed25519PrivateKey) -> None:
    note = CheckpointSigner(key, name="auditor-1").sign("main", 1, HEAD)

    assert verify_note(note, key.public_key(), "auditor-1") == Checkpoint("main", 1, HEAD)
    with pytest.raises(AuditError, match="not signed by key"):
        verify_note(note, key.public_key())


def test_a_note_with_extra_signatures_verifies(key: Ed25519PrivateKey, note: str) -> None:
    other = CheckpointSigner(Ed25519PrivateKey.generate(), name="witness")
    witness_line = other.sign("main", 42, HEAD).partition("\n\n")[2]

    text, _, ours = note.partition("\n\n")

    for multi in (note + witness_line, f"{text}\n\n{witness_line}{ours}"):
        assert verify_note(multi, key.public_key()) == Checkpoint("main", 42, HEAD)


def _replace_line(note: str, index: int, value: str) -> str:
    lines = note.split("\n")
    lines[index] = value
    return "\n".join(lines)


def test_an_altered_count_is_rejected(key: Ed25519PrivateKey, note: str) -> None:
    with pytest.raises(AuditError, match="signature is invalid"):
        verify_note(_replace_line(note, 1, "43"), key.public_key())


def test_an_altered_hash_is_rejected(key: Ed25519PrivateKey, note: str) -> None:
    forged = base64.b64encode(hashlib.sha256(b"other").digest()).decode()

    with pytest.raises(AuditError, match="signature is invalid"):
        verify_note(_replace_line(note, 2, forged), key.public_key())


def test_an_altered_origin_is_rejected(key: Ed25519PrivateKey, note: str) -> None:
    with pytest.raises(AuditError):
        verify_note(_replace_line(note, 0, "ztgate-audit/other"), key.public_key())


def test_another_key_is_rejected(note: str) -> None:
    with pytest.raises(AuditError, match="not signed by key"):
        verify_note(note, Ed25519PrivateKey.generate().public_key())


def test_a_note_signed_by_another_key_under_our_name_is_rejected(
    key: Ed25519PrivateKey,
) -> None:
    forged = CheckpointSigner(Ed25519PrivateKey.generate()).sign("main", 42, HEAD)

    with pytest.raises(AuditError):
        verify_note(forged, key.public_key())


def test_a_right_key_hash_with_a_wrong_signature_is_rejected(
    key: Ed25519PrivateKey, note: str
) -> None:
    _dash, _name, blob64 = note.partition("\n\n")[2].strip().split(" ")
    blob = bytearray(base64.b64decode(blob64))
    blob[10] ^= 0x01
    forged = note.replace(blob64, base64.b64encode(bytes(blob)).decode())

    with pytest.raises(AuditError, match="signature is invalid"):
        verify_note(forged, key.public_key())


def test_every_truncation_is_rejected(key: Ed25519PrivateKey, note: str) -> None:
    # Every proper prefix except those that only drop the final newline.
    for cut in range(len(note.rstrip("\n"))):
        with pytest.raises(AuditError):
            verify_note(note[:cut], key.public_key())


@pytest.mark.parametrize(
    "garbage",
    ["!!!not-base64!!!", "AAAA====", "A", "****", "\u00e9\u00e9\u00e9\u00e9", ""],
)
def test_garbage_base64_in_the_signature_is_rejected(
    key: Ed25519PrivateKey, note: str, garbage: str
) -> None:
    signature_line = note.partition("\n\n")[2].strip()
    forged = note.replace(signature_line, f"{DASH} {DEFAULT_KEY_NAME} {garbage}")

    with pytest.raises(AuditError):
        verify_note(forged, key.public_key())


def test_garbage_base64_in_the_hash_line_is_rejected(key: Ed25519PrivateKey) -> None:
    # Signed by the right key, so only the parse can refuse it.
    signer = CheckpointSigner(key)
    text = "ztgate-audit/main\n42\n!!not base64!!\n"
    signature = key.sign(text.encode())
    blob = base64.b64encode(key_hash(signer.name, key.public_key()) + signature).decode()
    note = f"{text}\n{DASH} {signer.name} {blob}\n"

    with pytest.raises(AuditError, match="malformed"):
        verify_note(note, key.public_key())


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "hello\n\nworld\n", "not-ztgate/main\n1\nAAAA\n\n— ztgate-audit AAAA\n"],
)
def test_malformed_notes_are_rejected(key: Ed25519PrivateKey, text: str) -> None:
    with pytest.raises(AuditError):
        verify_note(text, key.public_key())


def test_generate_key_writes_private_0600_and_public_0644(tmp_path: Path) -> None:
    private, public = tmp_path / "keys" / "audit.pem", tmp_path / "keys" / "audit.pub"

    generate_key(private, public)

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    signer = load_signer(private)
    loaded = load_public_key(public)
    note = signer.sign("main", 1, HEAD)
    assert verify_note(note, loaded) == Checkpoint("main", 1, HEAD)


def test_generate_key_never_overwrites_a_private_key(tmp_path: Path) -> None:
    private, public = tmp_path / "audit.pem", tmp_path / "audit.pub"
    generate_key(private, public)
    before = private.read_bytes()

    with pytest.raises(FileExistsError):
        generate_key(private, public)

    assert private.read_bytes() == before


def test_each_generated_key_is_new(tmp_path: Path) -> None:
    generate_key(tmp_path / "a.pem", tmp_path / "a.pub")
    generate_key(tmp_path / "b.pem", tmp_path / "b.pub")

    note = load_signer(tmp_path / "a.pem").sign("main", 1, HEAD)
    with pytest.raises(AuditError):
        verify_note(note, load_public_key(tmp_path / "b.pub"))


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "audit.pem"
    generate_key(private, tmp_path / "audit.pub")
    private.chmod(0o644)

    with pytest.raises(ConfigError, match="permissions"):
        load_signer(private)


def test_a_non_ed25519_private_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    private = tmp_path / "ec.pem"
    private.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)

    with pytest.raises(ConfigError, match="Ed25519"):
        load_signer(private)


@pytest.mark.parametrize("content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\nAA\n"])
def test_an_unreadable_public_key_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit.pub"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match=str(path)):
        load_public_key(path)


def test_a_missing_public_key_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_public_key(tmp_path / "absent.pub")
