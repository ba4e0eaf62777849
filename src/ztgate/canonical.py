"""Canonical JSON (RFC 8785, JCS) and the hashes computed over it.

Two argument objects that differ only in key order, whitespace or number
formatting have the same canonical bytes, hence the same hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from ztgate.errors import InvalidInputError


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON value.

    Raises:
        InvalidInputError: the value has no canonical form (a number outside
            IEEE 754 double range, NaN, a non-string key, a non-JSON type).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"value has no canonical JSON form: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `value`."""
    return sha256_hex(canonical_json(value))
