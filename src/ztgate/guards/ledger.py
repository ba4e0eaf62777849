"""What a task has read, kept in hot state for as long as the task lives.

Two `note` maps per task (see `HotState.note`), each field a digest of a
comparison form (guards/values.py) and its labels the tools whose results
held it:

- `provenance:<task>`: `t<digest>`, a value's strict form seen in a trusted
  source (a trusted tool's result, a system-of-record field); `u<digest>`,
  a value's loose form seen in untrusted content.
- `shingles:<task>`: `<crc32>`, word 4-grams of untrusted text, for the
  justification check ("not copied from a tool result").

Both expire with the task (or after `ttl_cap` seconds, whichever is first)
and hold at most `max_entries` fields each. When a map is full, new fields
are dropped: an untrusted value then reads as of unknown origin, which is
untrusted too, and a trusted one as not trusted — either way the guard errs
towards asking.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from ztgate.guards.values import clean, digest, fold, percent_decode
from ztgate.store.hot import HotState

SHINGLE_WORDS = 4
MAX_SHINGLES_PER_RESULT = 10_000
MAX_SHINGLE_CHARS = 131_072  # of one result's untrusted text
_NON_WORD = re.compile(r"\W+")
# ASCII word characters (what \w matches in ASCII) kept; anything else a space.
_ASCII_WORDS = bytes(
    c if (chr(c).isascii() and (chr(c).isalnum() or c == ord("_"))) else ord(" ")
    for c in range(256)
)


def shingles(text: str, limit: int = MAX_SHINGLES_PER_RESULT) -> list[str]:
    """The distinct word 4-grams of `text` (loose form), as CRC-32 hex, at most `limit`.

    Everything per word runs in C (`map`, `zip`, `dict.fromkeys`, `struct`,
    `bytes.hex`): no Python code runs once per word.
    """
    folded = fold(percent_decode(clean(text[:MAX_SHINGLE_CHARS]))).casefold()
    if folded.isascii():  # the same words as below, split in C
        raw = folded.encode("ascii").translate(_ASCII_WORDS).split()
        grams: Iterator[bytes] = map(b" ".join, zip(raw, raw[1:], raw[2:], raw[3:], strict=False))
    else:
        words = _NON_WORD.sub(" ", folded).split()
        joined = map(" ".join, zip(words, words[1:], words[2:], words[3:], strict=False))
        grams = (gram.encode("utf-8", "surrogatepass") for gram in joined)
    codes = list(dict.fromkeys(islice(map(zlib.crc32, grams), 2 * limit)))
    del codes[limit:]
    return struct.pack(f">{len(codes)}I", *codes).hex(" ", 4).split()


@dataclass(frozen=True, slots=True)
class Seen:
    """What a lookup found: the strict forms seen trusted, and the loose forms' sources."""

    trusted: frozenset[str]
    sources: dict[str, frozenset[str]]


class Ledger:
    """Per-task records of values and text read from tool results."""

    def __init__(self, hot: HotState, *, max_entries: int = 50_000, ttl_cap: float = 86400.0):
        """Records go to `hot`; see the module's docstring for the limits."""
        self._hot = hot
        self._max_entries = max_entries
        self._ttl_cap = ttl_cap

    def ttl(self, expires_at: float | None, now: float) -> float:
        """How long a task's records live: its remaining life, at most the cap."""
        if expires_at is None:
            return self._ttl_cap
        return min(self._ttl_cap, expires_at - now)

    async def record(
        self,
        task_id: str,
        tool: str,
        *,
        trusted: Iterable[str],
        untrusted: Iterable[str],
        text_shingles: Iterable[str] = (),
        ttl: float,
    ) -> None:
        """Note strict forms seen trusted, loose forms and shingles seen untrusted, from `tool`."""
        if ttl <= 0:
            return
        entries = {f"t{digest(form)}": tool for form in trusted if form}
        entries.update({f"u{digest(form)}": tool for form in untrusted if form})
        if entries:
            await self._hot.note(f"provenance:{task_id}", entries, ttl, self._max_entries)
        grams = {gram: tool for gram in text_shingles}
        if grams:
            await self._hot.note(f"shingles:{task_id}", grams, ttl, self._max_entries)

    async def lookup(self, task_id: str, strict: Sequence[str], loose: Sequence[str]) -> Seen:
        """Which `strict` forms were seen trusted, and where each `loose` form was seen."""
        fields = [f"t{digest(form)}" for form in strict] + [f"u{digest(form)}" for form in loose]
        if not fields:
            return Seen(frozenset(), {})
        labels = await self._hot.notes(f"provenance:{task_id}", fields)
        trusted = frozenset(form for form, found in zip(strict, labels, strict=False) if found)
        sources = {
            form: found for form, found in zip(loose, labels[len(strict) :], strict=True) if found
        }
        return Seen(trusted, sources)

    async def shingles_seen(self, task_id: str, grams: Sequence[str]) -> int:
        """How many of `grams` were seen in the task's untrusted text."""
        if not grams:
            return 0
        labels = await self._hot.notes(f"shingles:{task_id}", grams)
        return sum(1 for found in labels if found)
