"""The warrant signing key: created 0600 on first use, then reused; its published JWK."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ztgate.errors import ConfigError
from ztgate.identity import _hazmat
from ztgate.warrants.jwk import key_thumbprint, load_public_jwk, public_jwk, thumbprint
from ztgate.warrants.keys import ALGORITHM, USE, WarrantKey, load_or_create


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_missing_key_is_created_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "warrant.pem"
    key = load_or_create(path)
    assert path.is_file()
    assert _mode(path) == 0o600
    assert _mode(path.parent) & 0o077 == 0
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    assert key.private_key.curve.name == "secp256r1"
    assert b"BEGIN PRIVATE KEY" in path.read_bytes()


def test_an_existing_key_is_reused_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "warrant.pem"
    first = load_or_create(path)
    contents = path.read_bytes()
    second = load_or_create(path)
    assert path.read_bytes() == contents
    assert second.kid == first.kid
    assert second.public_key.public_numbers() == first.public_key.public_numbers()


def test_the_kid_is_the_rfc_7638_thumbprint(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "warrant.pem")
    assert key.kid == key_thumbprint(key.private_key) == thumbprint(public_jwk(key.public_key))
    assert len(key.kid) == 43


def test_the_jwk_has_use_kid_and_alg_and_no_private_member(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "warrant.pem")
    jwk = key.jwk()
    assert jwk["use"] == USE == "ztgate-warrant"
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == ALGORITHM == "ES256"
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert "d" not in jwk
    assert thumbprint(jwk) == key.kid
    loaded = load_public_jwk(jwk)
    assert loaded.public_numbers() == key.public_key.public_numbers()  # type: ignore[union-attr]


def test_the_key_signs_what_its_public_half_verifies(tmp_path: Path) -> None:
    key = load_or_create(tmp_path / "warrant.pem")
    token = jwt.encode({"a": 1}, key.private_key, algorithm=ALGORITHM)
    assert jwt.decode(token, key.public_key, algorithms=[ALGORITHM]) == {"a": 1}


def test_a_passphrase_encrypts_the_file_and_is_needed_to_load_it(tmp_path: Path) -> None:
    path = tmp_path / "warrant.pem"
    key = load_or_create(path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    again = load_or_create(path, passphrase=b"correct horse")
    assert again.kid == key.kid
    with pytest.raises(ConfigError, match="not a usable EC private key"):
        load_or_create(path, passphrase=b"wrong")
    with pytest.raises(ConfigError, match="not a usable EC private key"):
        load_or_create(path)


def test_a_passphrase_given_for_an_unencrypted_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "warrant.pem"
    load_or_create(path)
    with pytest.raises(ConfigError, match="not a usable EC private key"):
        load_or_create(path, passphrase=b"unexpected")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o020])
def test_a_key_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "warrant.pem"
    load_or_create(path)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="permissions"):
        load_or_create(path)


def test_a_file_that_is_not_an_ec_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path = tmp_path / "warrant.pem"
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(other)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not a usable EC private key"):
        load_or_create(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a usable EC private key"):
        load_or_create(path)


def test_a_key_made_elsewhere_is_loaded_as_is(tmp_path: Path) -> None:
    path = tmp_path / "warrant.pem"
    private = _hazmat.generate_key()
    path.write_bytes(_hazmat.private_pem(private))
    path.chmod(0o600)
    key = load_or_create(path)
    assert key == WarrantKey(key.private_key, key_thumbprint(private))
    assert key.public_key.public_numbers() == private.public_key().public_numbers()
