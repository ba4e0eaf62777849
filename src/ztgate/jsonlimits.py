"""Parsing untrusted JSON at the edge, within limits.

orjson rejects invalid UTF-8 and lone surrogates; this module adds a
nesting-depth limit (checked without recursion) and refuses integers that an
IEEE 754 double cannot hold exactly (I-JSON, RFC 7493).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import rfc8785

from ztgate.errors import InvalidInputError


class JsonTooDeepError(InvalidInputError):
    """The document nests deeper than allowed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"JSON nests deeper than {limit} levels")


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """True if `value` nests containers more than `limit` levels deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_json(data: bytes, *, max_depth: int) -> Any:
    """Parse `data` as strict UTF-8 JSON no deeper than `max_depth`.

    Raises:
        InvalidInputError: not UTF-8, not JSON, or a number out of range.
        JsonTooDeepError: nested deeper than `max_depth`.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise JsonTooDeepError(max_depth) from exc
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if json_depth_exceeds(value, max_depth):
        raise JsonTooDeepError(max_depth)
    if _LONG_DIGITS.search(data):
        _check_integers(data)
    return value


# An integer that an IEEE 754 double cannot hold exactly (beyond 2**53, and
# not a multiple of the double's spacing there) would be read differently by
# different parsers, and orjson silently rounds those past 64 bits: refused,
# as I-JSON (RFC 7493) advises. Integers a double holds exactly (10**16, the
# canonical form of 1e16), or that are a double's canonical spelling, are
# accepted. Only bodies with a run of 16 or more
# digits can hold such a number, so only those are parsed a second time.
_LONG_DIGITS = re.compile(rb"[0-9]{16}")
_MAX_SAFE_INTEGER = 2**53 - 1


def _exact_integer(text: str) -> int:
    number = int(text)
    if abs(number) > _MAX_SAFE_INTEGER and not _double_holds(number):
        raise InvalidInputError(
            f"integer {text[:24]}{'...' if len(text) > 24 else ''} cannot be represented "
            "exactly as a JSON (IEEE 754) number; send it as a string"
        )
    return number


def _double_holds(number: int) -> bool:
    # Exactly the double's value (2**64), or the double's own shortest
    # spelling as RFC 8785 writes it (18446744073709552000 for 2**64).
    try:
        double = float(number)
    except OverflowError:
        return False
    return int(double) == number or rfc8785.dumps(double) == str(number).encode()


def _check_integers(data: bytes) -> None:
    try:
        json.loads(data, parse_int=_exact_integer)
    except ValueError as exc:  # pragma: no cover - orjson accepted the document
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
