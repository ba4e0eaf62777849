"""Canonical JSON (RFC 8785, JCS) and the hashes computed over it.

Two argument objects that differ only in key order, whitespace or number
formatting have the same canonical bytes, hence the same hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import rfc8785

from ztgate.errors import InvalidInputError

_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical bytes of a JSON value.

    Values made only of strings, booleans, null, safe integers and ASCII
    object keys are written by orjson with sorted keys, which for them is
    byte-for-byte the JCS form (the property tests compare both); anything
    else, floats above all, goes through the `rfc8785` reference code.

    Raises:
        InvalidInputError: the value has no canonical form (a number outside
            IEEE 754 double range, NaN, a non-string key, a non-JSON type).
    """
    if _orjson_is_canonical(value):
        return _sorted_orjson(value)
    try:
        return rfc8785.dumps(_exact_doubles(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"value has no canonical JSON form: {exc}") from exc


def canonical_json_ascii_keys(fields: dict[str, Any]) -> bytes:
    """`canonical_json(fields)` for an object whose keys are ASCII strings, NOT checked.

    For objects whose field names are the caller's own literals (an audit
    record's body): only the values are checked, as `canonical_json` checks
    them. A key that is not an ASCII string would make the bytes differ
    from RFC 8785; never pass keys that came from outside.

    Raises:
        InvalidInputError: a value has no canonical form.
    """
    for value in fields.values():
        kind = type(value)
        if kind is str or (kind is int and -_SAFE_INTEGER <= value <= _SAFE_INTEGER):
            continue
        if not _orjson_is_canonical(value):
            return canonical_json(fields)
    return _sorted_orjson(fields)


def _sorted_orjson(value: Any) -> bytes:
    # For values `_orjson_is_canonical` passed: orjson's bytes are JCS's.
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. a lone surrogate
        raise InvalidInputError(f"value has no canonical JSON form: {exc}") from exc


def _orjson_is_canonical(value: Any) -> bool:
    # orjson escapes strings exactly as JCS does and writes integers the same
    # way; it sorts keys by code point, which equals JCS's UTF-16 order for
    # ASCII keys. Floats (number formatting) and other keys fall back.
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if -_SAFE_INTEGER <= node <= _SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key, item in node.items():
                if type(key) is not str or not key.isascii():
                    return False
                if type(item) is not str:  # most leaves are strings: not pushed
                    stack.append(item)
            continue
        if kind is list:
            stack.extend(node)
            continue
        return False
    return True


def _exact_doubles(value: Any) -> Any:
    # RFC 8785 numbers are IEEE 754 doubles: an integer beyond 2**53 that a
    # double holds exactly is that double (10**16 is 1e16); one it cannot
    # hold is left as it is, for rfc8785 to refuse.
    if type(value) is int and abs(value) > _SAFE_INTEGER:
        try:
            as_double = float(value)
        except OverflowError:
            return value
        return as_double if int(as_double) == value else value
    if isinstance(value, dict):
        return {key: _exact_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exact_doubles(item) for item in value]
    return value


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def canonical_sha256(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `value`."""
    return sha256_hex(canonical_json(value))
