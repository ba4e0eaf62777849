"""The diff an approver needs: which of a call's argument values the task's intent names.

The intent is the principal's own words ("pay the acme invoice of March");
an argument value it names (`acme`) was asked for, one it does not name
(`mallory@evil.example`) came from somewhere else — the agent, or content
the agent read. The console marks every value of the redacted arguments
preview either way; redacted values cannot be compared and say so.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ztgate.audit.redact import REDACTED

NAMED = "named in the intent"
ABSENT = "not in the intent"
HIDDEN = "redacted: not compared"
_CUT = re.compile(r"^(.*)\.\.\.\(\d+ chars\)$", re.DOTALL)
_SPACES = re.compile(r"\s+")
_MAX_VALUES = 64


@dataclass(frozen=True, slots=True)
class ArgumentMatch:
    """One argument value and whether the intent names it."""

    path: str
    value: str
    status: str

    @property
    def named(self) -> bool:
        """True if the intent names the value."""
        return self.status == NAMED


def compare(arguments_preview: str, intent: str) -> list[ArgumentMatch]:
    """Every leaf value of the preview (at most 64), marked against `intent`.

    A preview that is not JSON (it was cut) is one value, compared whole.
    """
    try:
        arguments: Any = orjson.loads(arguments_preview)
    except orjson.JSONDecodeError:
        arguments = arguments_preview
    haystack = _normal(intent)
    found: list[ArgumentMatch] = []
    for path, value in _leaves(arguments, "$"):
        if len(found) >= _MAX_VALUES:
            break
        found.append(ArgumentMatch(path, _text(value), _status(value, haystack)))
    return found


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _status(value: Any, haystack: str) -> str:
    if value == REDACTED:
        return HIDDEN
    if value is None or isinstance(value, bool):
        return ABSENT
    text = _text(value)
    cut = _CUT.match(text) if isinstance(value, str) else None
    if cut:
        text = cut.group(1)  # a long string: its shown beginning must be named
    needle = _normal(text)
    if not needle:
        return ABSENT
    if len(needle) < 4 or not isinstance(value, str):
        # Short values and numbers as whole words: "5" is not named by "15".
        pattern = r"(?<![\w.])" + re.escape(needle) + r"(?![\w]|\.\d)"
        return NAMED if re.search(pattern, haystack) else ABSENT
    return NAMED if needle in haystack else ABSENT


def _normal(text: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
