"""Private keys on disk: written 0600, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ztgate.errors import ConfigError


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; never overwrites.

    Raises:
        FileExistsError: the file already exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public(path: Path, data: bytes) -> None:
    """Write a public file (certificate, public key) with mode 0644."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    path.chmod(0o644)


def read_private(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others can access.

    Raises:
        ConfigError: missing, unreadable, or with permissions wider than 0600.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "", "key file not found (run `ztgate init`)") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            str(path), "", f"key file permissions are {oct(mode & 0o777)}; run `chmod 600 {path}`"
        )
    return path.read_bytes()
