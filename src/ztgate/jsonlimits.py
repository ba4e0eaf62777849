"""Parsing untrusted JSON at the edge, within limits.

orjson rejects invalid UTF-8, lone surrogates and integers outside 64 bits;
this module adds a nesting-depth limit, checked without recursion.
"""

from __future__ import annotations

from typing import Any

import orjson

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
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
    if json_depth_exceeds(value, max_depth):
        raise JsonTooDeepError(max_depth)
    return value
