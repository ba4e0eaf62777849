"""Private keys on disk: created 0600, never overwritten, refused when others can read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.errors import ConfigError
from ztgate.keyfiles import read_private, write_private, write_public


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable unless the code says otherwise."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_private_file_is_created_0600(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    write_private(key, b"secret")
    assert mode(key) == 0o600
    assert key.read_bytes() == b"secret"


@pytest.mark.usefixtures("permissive_umask")
def test_private_file_parent_directories_are_created_0700(tmp_path: Path) -> None:
    key = tmp_path / "a" / "b" / "key.pem"
    write_private(key, b"secret")
    assert mode(tmp_path / "a" / "b") == 0o700
    assert mode(key) == 0o600


def test_private_file_is_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    write_private(key, b"first")
    with pytest.raises(FileExistsError):
        write_private(key, b"second")
    assert key.read_bytes() == b"first"
    assert mode(key) == 0o600


def test_private_file_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    link = tmp_path / "key.pem"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_private(link, b"secret")
    assert target.read_bytes() == b"untouched"


@pytest.mark.usefixtures("permissive_umask")
def test_public_file_is_0644_and_replaced(tmp_path: Path) -> None:
    pub = tmp_path / "keys" / "key.pub"
    write_public(pub, b"one")
    write_public(pub, b"two")
    assert mode(pub) == 0o644
    assert pub.read_bytes() == b"two"


def test_read_private_round_trips(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    write_private(key, b"\x00binary\xff")
    assert read_private(key) == b"\x00binary\xff"


@pytest.mark.parametrize("allowed", [0o600, 0o400, 0o700])
def test_owner_only_modes_are_accepted(tmp_path: Path, allowed: int) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(b"secret")
    key.chmod(allowed)
    assert read_private(key) == b"secret"


@pytest.mark.parametrize("wide", [0o640, 0o604, 0o660, 0o644, 0o666, 0o610, 0o601, 0o620, 0o602])
def test_group_or_other_access_is_refused(tmp_path: Path, wide: int) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(b"secret")
    key.chmod(wide)
    with pytest.raises(ConfigError) as caught:
        read_private(key)
    error = caught.value
    assert error.source == str(key)
    assert oct(wide) in error.reason
    assert f"chmod 600 {key}" in error.reason
    assert "secret" not in error.message


def test_missing_key_names_the_file_and_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as caught:
        read_private(key)
    assert caught.value.source == str(key)
    assert "not found" in caught.value.reason
    assert "ztgate init" in caught.value.reason
