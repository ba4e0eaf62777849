"""Cedar policy text: split into policies with their lines, and find where an error is.

Cedar's parser and validator name no source position, so ztgate finds one
itself. A policy file is a sequence of policies, each ending in a `;` outside
string literals and `//` comments; splitting there gives each policy's text
and first line (that of its first annotation, or of its effect).

A syntax error is then placed on the first line at which the policy stops
being a prefix of some valid policy: Cedar's parser is LR(1), which reports
an error at the first token that cannot continue what came before, so a
prefix ending before that token fails only with "unexpected end of input".
Errors found after parsing (an unknown function, a bad effect) and
validation errors are placed on the first line naming what the message
quotes, else on the policy's first line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import cedarpy

_END_OF_INPUT = "unexpected end of input"
_QUOTED = re.compile(r"`([^`]+)`")
_POLICY_REF = re.compile(r"for policy `[^`]*`,\s*")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One policy's text in a file: where it starts (1-based line) and its source."""

    line: int
    text: str
    complete: bool = True  # False for trailing text with no closing `;`


def split(text: str) -> list[Chunk]:
    """The policies of a file, in order; trailing text without a `;` is a last, incomplete chunk."""
    chunks: list[Chunk] = []
    start: int | None = None
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        if char == "/" and text.startswith("//", index):
            newline = text.find("\n", index)
            index = length if newline < 0 else newline
            continue
        if char.isspace():
            index += 1
            continue
        if start is None:
            start = index
        if char == '"':
            index = _string_end(text, index)
            continue
        if char == ";":
            chunks.append(Chunk(_line_at(text, start), text[start : index + 1]))
            start = None
        index += 1
    if start is not None:
        chunks.append(Chunk(_line_at(text, start), text[start:], complete=False))
    return chunks


def _string_end(text: str, index: int) -> int:
    """The index just after the string literal opening at `index` (or the end of the text)."""
    index += 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            return index + 1
        index += 1
    return index


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def parse_error(chunk: Chunk, message: str) -> int:
    """The line (in the file) of the syntax error `message` that parsing `chunk` raised."""
    lines = chunk.text.split("\n")
    for count in range(1, len(lines)):
        prefix = "\n".join(lines[:count])
        try:
            cedarpy.PolicySet.from_str(prefix)
        except ValueError as exc:
            if _END_OF_INPUT not in str(exc):
                return chunk.line + count - 1
    return mentioned_line(chunk, message)


def mentioned_line(chunk: Chunk, message: str) -> int:
    """The first line of `chunk` naming something `message` quotes, else its first line."""
    for quoted in _QUOTED.findall(_POLICY_REF.sub("", message)):
        for name in _candidates(quoted):
            found = _find_word(chunk.text, name)
            if found is not None:
                return chunk.line + chunk.text.count("\n", 0, found)
    return chunk.line


def _candidates(quoted: str) -> list[str]:
    """What to look for in the source for one quoted name (`a.b.c` also as `c`)."""
    names = [quoted]
    if "." in quoted and "::" not in quoted:
        names.append(quoted.rsplit(".", 1)[1])
    return [name for name in names if name.strip()]


def _find_word(text: str, name: str) -> int | None:
    """The offset of `name` in `text` as a whole word outside `//` comments, or None."""
    pattern = re.compile(
        (r"(?<![A-Za-z0-9_])" if name[0].isalnum() or name[0] == "_" else "")
        + re.escape(name)
        + (r"(?![A-Za-z0-9_])" if name[-1].isalnum() or name[-1] == "_" else "")
    )
    for match in pattern.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        if "//" not in text[line_start : match.start()]:
            return match.start()
    return None


def first_failure(chunks: list[Chunk], parse: Callable[[str], object]) -> tuple[Chunk, str] | None:
    """The first chunk `parse` refuses, with its message; None if every chunk parses."""
    for chunk in chunks:
        try:
            parse(chunk.text)
        except ValueError as exc:
            message = " ".join(str(exc).split())
            if not chunk.complete and _END_OF_INPUT in message:
                message = "the policy does not end with ';'"
            return chunk, message
        if not chunk.complete:  # cannot happen: Cedar needs the `;`
            return chunk, "the policy does not end with ';'"
    return None
