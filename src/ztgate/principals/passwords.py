"""Console passwords: argon2id hashes (RFC 9106), and a failure path that costs the same.

Only the PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`) is
stored. Checking a name that has no password (or does not exist) still
runs one argon2 verification, against a dummy hash, so that the time a
refusal takes does not tell which names exist.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ztgate.errors import InvalidInputError

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; a bound keeps the work bounded

# argon2-cffi's defaults are RFC 9106's second recommended profile: argon2id,
# t=3, m=64 MiB, p=4.
_HASHER = PasswordHasher()


def check_new_password(password: str) -> str:
    """Validate a password being set.

    Raises:
        InvalidInputError: shorter than 12 or longer than 1024 characters,
            or with control characters.
    """
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError(f"a password has at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInputError(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if not password.isprintable():
        raise InvalidInputError("a password has no control characters (no newline, no tab)")
    return password


def hash_password(password: str) -> str:
    """The argon2id PHC string of a new password.

    Raises:
        InvalidInputError: the password is unacceptable (see `check_new_password`).
    """
    return _HASHER.hash(check_new_password(password))


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(24))


def verify_password(stored: str | None, password: str) -> bool:
    """True if `password` matches the `stored` hash; a missing hash verifies a dummy and fails."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_CHARS:
        password = ""
    if stored is None:
        _verify(_dummy_hash(), password)
        return False
    return _verify(stored, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
