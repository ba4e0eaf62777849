"""Walking JSON documents, and naming their fields in reasons.

Guards report where they found something as JSON Pointers into the
arguments, never the value. A pointer is made of the agent's own keys, so
a reason shows it short, and not at all if it is shaped like a credential.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ztgate.audit.redact import looks_secret

MAX_SHOWN = 64


def leaves(document: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every scalar in a JSON document with its path (keys and indexes as strings)."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while stack:
        where, value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is float or value is None or kind is bool:
            yield where, value  # the common case first: no ABC checks for JSON scalars
        elif kind is dict:  # (a str key is its own str())
            stack.extend(
                [((*where, k if type(k) is str else str(k)), v) for k, v in reversed(value.items())]
            )
        elif isinstance(value, Mapping):
            stack.extend(((*where, str(k)), v) for k, v in reversed(list(value.items())))
        elif kind is list or isinstance(value, list | tuple):
            stack.extend(((*where, str(i)), v) for i, v in reversed(list(enumerate(value))))
        else:
            yield where, value


def pointer(path: Sequence[str]) -> str:
    """The JSON Pointer (RFC 6901) of `path`."""
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in path)


def shown(where: str) -> str:
    """A pointer as a reason shows it: at most 64 characters, never shaped like a secret."""
    if looks_secret(where):
        return "[REDACTED]"
    return where if len(where) <= MAX_SHOWN else where[: MAX_SHOWN - 3] + "..."
