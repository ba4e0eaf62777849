"""The key ztgate signs warrants with: EC P-256 on disk (0600), its JWK published in the bundle.

Its `kid` is its RFC 7638 thumbprint, so a verifier holding several keys
(during a rotation, later) picks by `kid`. The file is created on first use
if missing, never overwritten; the passphrase that protects the CA keys
protects it too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ztgate import keyfiles
from ztgate.errors import ConfigError
from ztgate.identity import _hazmat
from ztgate.warrants.jwk import public_jwk, thumbprint

USE = "ztgate-warrant"  # the JWK `use` in the bundle; SPIFFE consumers ignore unknown uses
ALGORITHM = "ES256"


@dataclass(frozen=True, slots=True)
class WarrantKey:
    """The private key warrants are signed with, and its id."""

    private_key: _hazmat.PrivateKey
    kid: str

    @property
    def public_key(self) -> _hazmat.PublicKey:
        """The public half, what verifiers use."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        """The public JWK as published in the bundle."""
        return {**public_jwk(self.private_key), "kid": self.kid, "use": USE, "alg": ALGORITHM}


def load_or_create(path: Path, *, passphrase: bytes | None = None) -> WarrantKey:
    """The warrant key at `path`, created (mode 0600) if there is none.

    Raises:
        ConfigError: the file is unreadable, too open, or not an EC key.
    """
    if not path.exists():
        # Another process may create it first: then use theirs.
        with contextlib.suppress(FileExistsError):
            keyfiles.write_private(path, _hazmat.private_pem(_hazmat.generate_key(), passphrase))
    data = keyfiles.read_private(path)
    try:
        key = _hazmat.load_private_pem(data, passphrase)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(path), "", f"not a usable EC private key: {exc}") from exc
    return WarrantKey(key, thumbprint(public_jwk(key)))
