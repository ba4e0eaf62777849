"""Folding text into one comparable form before it is scanned, with a way back.

`fold` maps every character on its own (so offsets can be mapped back):
compatibility decomposition (NFKD: full-width, mathematical and other
styled letters become plain ones), combining marks dropped (accents: the
phrase lists are written without them, and an attacker's "ígnore" matches
"ignore"), case folded, common Latin look-alikes from Cyrillic, Greek and
other scripts folded to Latin, `_` read as a space, and invisible
characters (zero-width, bidirectional controls, tag characters, variation
selectors) removed. The phrase lists are folded the same way, so scripts
whose letters are folded (Cyrillic in Russian text) still match themselves.

ASCII text, the common case, takes a fast path (`str.lower`); anything else
goes through `str.translate` with a table filled lazily, one entry per
distinct character. Both are linear and run in C.
"""

# Look-alike letters are this module's data: ruff's confusables rule does not apply.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import itertools
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence

# Format characters that render as nothing: zero-width space, non-joiner and
# joiner, word joiner and the invisible operators, BOM / ZWNBSP, Mongolian
# vowel separator, soft hyphen, combining grapheme joiner, Hangul fillers,
# Khmer inherent vowels.
ZERO_WIDTH = frozenset(
    (0x200B, 0x200C, 0x200D, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x180E, 0x00AD)
) | frozenset((0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, 0x17B4, 0x17B5))
# Bidirectional controls: embeddings, overrides, isolates, marks.
BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))
BIDI_MARKS = frozenset([0x200E, 0x200F, 0x061C])
TAGS = range(0xE0000, 0xE0080)  # Unicode tag characters: ASCII, invisibly
VARIATION_SELECTORS = frozenset(range(0xFE00, 0xFE10)) | frozenset(range(0xE0100, 0xE01F0))

# Letters of other scripts that look like Latin ones (lower case: after casefold).
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w", "ѵ": "v", "ɡ": "g",
    "ү": "y", "ӕ": "ae", "ө": "o",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j", "ω": "w", "μ": "u",
    # Latin letters that look like others, Armenian, small capitals, IPA
    "ı": "i", "ȷ": "j", "ɩ": "i", "ɪ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r", "ᴀ": "a",
    "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ᴊ": "j", "ᴋ": "k", "ᴍ": "m",
    "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y",
    "ᴢ": "z", "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ɑ": "a", "ℓ": "l",
    "ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ŀ": "l", "ŧ": "t", "ß": "ss",
}  # fmt: skip


# Capitals that look like Latin capitals but whose lower case does not look
# like the Latin lower case (Greek Ν is N, ν is v): folded before case.
_CAPITALS = {
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m",
    "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p",
    "С": "c", "Т": "t", "У": "y", "Х": "x", "І": "i", "Ј": "j", "Ѕ": "s",
}  # fmt: skip


class _FoldTable(dict[int, str]):
    """`str.translate` table: a character's folded form, computed on first sight."""

    def __missing__(self, code: int) -> str:
        folded = _fold_char(chr(code))
        self[code] = folded
        return folded


def _fold_char(char: str) -> str:
    code = ord(char)
    if code in ZERO_WIDTH or code in BIDI or code in BIDI_MARKS or code in TAGS:
        return ""
    if code in VARIATION_SELECTORS:
        return ""
    if char in ("_", "\x00"):
        return " "
    out = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.combining(part):
            continue
        if part in _CAPITALS:
            out.append(_CAPITALS[part])
            continue
        for low in part.casefold():
            out.append(_HOMOGLYPHS.get(low, low))
    return "".join(out)


_TABLE = _FoldTable()


def fold(text: str) -> str:
    """`text` in the folded form the patterns are written in (see the module docstring)."""
    if text.isascii():
        folded = text.lower()
        if "_" in folded:
            folded = folded.replace("_", " ")
        if "\x00" in folded:
            folded = folded.replace("\x00", " ")
        return folded
    return text.translate(_TABLE)


def fold_phrase(phrase: str) -> str:
    """A pattern phrase folded like the text it is matched against."""
    return phrase.translate(_TABLE)


class OffsetMap:
    """Maps offsets in `fold(text)` back to offsets in `text`."""

    __slots__ = ("_ends",)

    def __init__(self, text: str) -> None:
        # _ends[i]: the folded length of text[: i + 1]; None when the fold
        # keeps every offset (ASCII text).
        self._ends: Sequence[int] | None = None
        if not text.isascii():
            lengths = map(len, map(_TABLE.__getitem__, map(ord, text)))
            self._ends = list(itertools.accumulate(lengths))

    def original(self, folded_offset: int) -> int:
        """The offset in the original text of the character at `folded_offset`."""
        if self._ends is None:
            return folded_offset
        return bisect_right(self._ends, folded_offset)

    def original_end(self, folded_end: int) -> int:
        """The original offset just past the character that ends at `folded_end`."""
        if self._ends is None:
            return folded_end
        if folded_end <= 0:
            return 0
        return min(len(self._ends), bisect_right(self._ends, folded_end - 1) + 1)
