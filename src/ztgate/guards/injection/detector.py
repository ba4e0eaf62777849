"""The built-in injection detector: rules over folded text, invisible characters, encodings.

    scan_text(text) -> list[Finding]
    scan_value(value) -> list[Finding]      # a JSON value: every string in it, keys too
    score(findings) -> float                # 0..1: the most suspicious string's score

A finding says what was found (`kind`, and `rule`, a stable name), how
strongly it suggests an injection on its own (`score`), and where: the JSON
Pointer of the string (`pointer`, with `in_key` for an object key) and the
span in that string (`offset`, `length`, in characters of the original).
Findings never carry the text they matched beyond a short `preview` for
debugging; what is logged or audited is the kind, the rule and the place.

A string's score is the noisy-or of its distinct rules (so weak cues need
company); encoded payloads (base64, hex, percent-encoding, HTML entities)
and text hidden in Unicode tag characters are decoded and scanned again,
one or two layers deep. Everything is linear in the size of the input.
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import parse_qsl, unquote, urlsplit

import re2

from ztgate.guards.injection import patterns
from ztgate.guards.injection.normalize import OffsetMap, fold

MAX_PER_RULE = 256  # matches of one rule beyond this are not collected (`truncated`)
_MAX_LAYERS = 2  # how many encodings deep a payload is decoded
_PREVIEW = 32
# Kinds whose span is extended to the end of its line when redacted: what
# follows an instruction's opening words is the instruction.
_LINE_KINDS = frozenset({"override", "task_hijack", "assistant_address", "stealth", "role_token"})
_WORD_EDGE = frozenset(chr(c) for c in range(0x80) if not chr(c).isalnum())


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 256 << 20  # the rule set's automaton; it uses a few MiB of it
    options.log_errors = False
    return options


_OPTIONS = _options()
_RULES = tuple((rule, re2.compile(rule.pattern, _OPTIONS)) for rule in patterns.RULES)
_UNLESS = {rule.rule: re.compile(rule.unless) for rule in patterns.RULES if rule.unless}
_ALL_RULES = re2.Set.SearchSet(_OPTIONS)
for _rule in patterns.RULES:
    _ALL_RULES.Add(_rule.pattern)
_ALL_RULES.Compile()
_BASE64 = re2.compile(patterns.BASE64_RUN, _OPTIONS)
_HEX = re2.compile(patterns.HEX_RUN, _OPTIONS)
_PERCENT = re2.compile(patterns.PERCENT_ESCAPE, _OPTIONS)
_ENTITY = re2.compile(patterns.HTML_ENTITY, _OPTIONS)
_INVISIBLE = tuple(
    (kind, rule, weight, re2.compile(pattern, _OPTIONS))
    for kind, rule, weight, pattern in (
        ("invisible_unicode", "invisible.tags", 0.9, patterns.TAG_RUN),
        ("invisible_unicode", "invisible.variation", 0.7, patterns.VARIATION_RUN),
        ("bidi_control", "bidi.override", 0.6, patterns.BIDI_OVERRIDE),
        ("bidi_control", "bidi.embedding", 0.3, patterns.BIDI_EMBEDDING),
    )
)
_ZERO_WIDTH = re2.compile(patterns.INWORD_ZERO_WIDTH, _OPTIONS)
_ANY_INVISIBLE = re2.compile(patterns.ANY_INVISIBLE, _OPTIONS)


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspicious span in one string of a result."""

    kind: str
    rule: str
    score: float
    pointer: str = ""
    offset: int = 0
    length: int = 0
    in_key: bool = False
    preview: str = ""

    def to_json(self) -> dict[str, Any]:
        """The finding without its preview: what may be logged."""
        found: dict[str, Any] = {
            "kind": self.kind,
            "rule": self.rule,
            "score": round(self.score, 3),
            "pointer": self.pointer,
            "offset": self.offset,
            "length": self.length,
        }
        if self.in_key:
            found["in_key"] = True
        return found


@dataclass(frozen=True, slots=True)
class Segment:
    """One string of a result: where it is, and its text."""

    pointer: str
    text: str
    in_key: bool = False


def scan_text(text: str, pointer: str = "") -> list[Finding]:
    """The findings in one string (`pointer`: where it sits in a larger value)."""
    return scan_segments([Segment(pointer, text)])


def scan_value(value: Any) -> list[Finding]:
    """The findings in every string of a JSON value (object keys included), or in bytes."""
    return scan_segments(strings(value))


# Where a string sits: the root pointer, or (its parent's place, a key or an index).
_Place = str | tuple[Any, str]


class Strings(Sequence[Segment]):
    """The strings of a value in walk order, as `Segment`s built only when asked for.

    A result of many small strings would otherwise spend most of its scan
    building a JSON Pointer for every string; only strings with findings
    need one.
    """

    __slots__ = ("_in_key", "_places", "texts")

    def __init__(self) -> None:
        """No strings yet (`strings` fills them in)."""
        self.texts: list[str] = []
        self._places: list[_Place] = []
        self._in_key: list[bool] = []

    def __len__(self) -> int:
        """How many strings."""
        return len(self.texts)

    @overload
    def __getitem__(self, index: int) -> Segment: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Segment]: ...

    def __getitem__(self, index: int | slice) -> Segment | Sequence[Segment]:
        """The string at `index`, with its pointer."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Segment(_pointer(self._places[index]), self.texts[index], self._in_key[index])

    @property
    def characters(self) -> int:
        """The total length of the strings."""
        return sum(map(len, self.texts))


def characters(parts: Sequence[Segment]) -> int:
    """The total length of the strings in `parts`."""
    if isinstance(parts, Strings):
        return parts.characters
    return sum(len(part.text) for part in parts)


def texts_of(parts: Sequence[Segment]) -> list[str]:
    """The text of each of `parts`."""
    return parts.texts if isinstance(parts, Strings) else [part.text for part in parts]


def strings(value: Any, pointer: str = "") -> Strings:
    """Every string in `value` (keys included) with where it is; bytes as text; no numbers."""
    found = Strings()
    add_text, add_place, add_key = found.texts.append, found._places.append, found._in_key.append
    stack: list[tuple[_Place, Any]] = [(pointer, value)]
    push = stack.append
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            add_text(item)
            add_place(where)
            add_key(False)
        elif isinstance(item, dict):
            for key, child in item.items():
                name = key if isinstance(key, str) else str(key)
                path = (where, name)
                add_text(name)
                add_place(path)
                add_key(True)
                if isinstance(child, str):
                    add_text(child)
                    add_place(path)
                    add_key(False)
                elif child is not None and not isinstance(child, int | float):
                    push((path, child))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                if isinstance(child, str):
                    add_text(child)
                    add_place((where, str(index)))
                    add_key(False)
                elif child is not None and not isinstance(child, int | float):
                    push(((where, str(index)), child))
        elif isinstance(item, bytes | bytearray | memoryview):
            add_text(_bytes_text(bytes(item)))
            add_place(where)
            add_key(False)
        # numbers, booleans, null: nothing an agent would read as an instruction
    return found


def _pointer(place: _Place) -> str:
    tokens: list[str] = []
    while not isinstance(place, str):
        place, token = place
        tokens.append(_escape(token) if "~" in token or "/" in token else token)
    return place + "".join("/" + token for token in reversed(tokens))


def score(findings: Iterable[Finding]) -> float:
    """The score of the most suspicious string: the noisy-or of its rules' best scores."""
    best: dict[tuple[str, bool], dict[str, float]] = {}
    for finding in findings:
        rules = best.setdefault((finding.pointer, finding.in_key), {})
        rules[finding.rule] = max(rules.get(finding.rule, 0.0), finding.score)
    worst = 0.0
    for rules in best.values():
        worst = max(worst, 1.0 - math.prod(1.0 - s for s in rules.values()))
    return worst


def segments(value: Any, pointer: str = "") -> Iterator[Segment]:
    """Every string in `value` with its JSON Pointer; bytes as text; numbers are skipped."""
    return iter(strings(value, pointer))


def scan_segments(parts: Sequence[Segment]) -> list[Finding]:
    """The findings in `parts`, scanned together (each rule makes one pass over all of them)."""
    return detect(parts).findings


@dataclass(frozen=True, slots=True)
class Detection:
    """A scan's findings; `truncated` when a rule matched more than `MAX_PER_RULE` times."""

    findings: list[Finding]
    truncated: bool


def detect(parts: Sequence[Segment], layer: int = 0) -> Detection:
    """Scan `parts` (decoded payloads are scanned again, up to two layers deep)."""
    scan = _Scan(parts, layer)
    scan.rules()
    scan.invisible()
    scan.encoded()
    return Detection(scan.found, scan.truncated)


# Matches across strings searched again, per rule and scan (see `_within_strings`).
_MAX_RESTARTS = 64


class _Scan:
    """One scan over some strings: their folded text, joined by NUL, and their originals."""

    def __init__(self, parts: Sequence[Segment], layer: int) -> None:
        self.parts = parts
        self.layer = layer
        texts = texts_of(parts)
        self.original = "\x00".join(texts)
        self.original_starts = _starts(texts)
        if self.original.isascii() and self.original.count("\x00") == len(texts) - 1:
            # The common case, folded in one go: ASCII folds keep every
            # offset, and no string holds the separator.
            self.folded = self.original.lower().replace("_", " ")
            self.starts = self.original_starts
        else:
            folded = [fold(text) for text in texts]
            self.folded = "\x00".join(folded)
            self.starts = _starts(folded)
        self._maps: dict[int, OffsetMap] = {}
        self._counts: dict[str, int] = {}
        self.found: list[Finding] = []
        self.truncated = False

    def rules(self) -> None:
        text = self.folded
        matched = _ALL_RULES.Match(text)
        for index in sorted(matched or ()):
            rule, pattern = _RULES[index]
            unless = _UNLESS.get(rule.rule)
            for match in _within_strings(pattern, text):
                if unless is not None and unless.match(text, match.end()):
                    continue
                weight = rule.weight
                if rule.link == "link" and text[max(0, match.start() - 1)] == "!":
                    continue  # an image: its own rule
                if rule.link is not None:
                    weight = _link_weight(match.group(1), image=rule.link == "image")
                if weight and not self._add_folded(rule, weight, *match.span()):
                    break

    def invisible(self) -> None:
        text = self.original
        if text.isascii() or not _ANY_INVISIBLE.search(text):
            return
        zero_width = [match.span(1) for match in itertools.islice(_ZERO_WIDTH.finditer(text), 8)]
        weight = 0.7 if len(zero_width) >= 3 else 0.4
        for start, end in zero_width:
            self._add_original("invisible_unicode", "invisible.zero_width", weight, start, end)
        for kind, rule, weight, pattern in _INVISIBLE:
            for match in pattern.finditer(text):
                if not self._add_original(kind, rule, weight, *match.span(1)):
                    break

    def encoded(self) -> None:
        if self.layer >= _MAX_LAYERS:
            return
        text = self.original
        if has_token_run(text):
            for match in _BASE64.finditer(text):
                decoded = _base64_text(match.group(1))
                if decoded is not None:
                    self._layer(decoded, "encoded.base64", *match.span(1))
            for match in _HEX.finditer(text):
                decoded = _printable(bytes.fromhex(match.group(1)))
                if decoded is not None:
                    self._layer(decoded, "encoded.hex", *match.span(1))
        if text.count("%") >= 3 or text.count("&") >= 3:
            for index, text in enumerate(texts_of(self.parts)):
                self._escapes(index, text)

    def _escapes(self, index: int, text: str) -> None:
        start = self.original_starts[index]
        end = start + len(text)
        if text.count("%") >= 3 and _at_least(_PERCENT, text, 3):
            self._layer(unquote(text), "encoded.percent", start, end)
        if text.count("&") >= 3 and _at_least(_ENTITY, text, 3):
            self._layer(html.unescape(text), "encoded.html_entities", start, end)

    def _layer(self, decoded: str, rule: str, start: int, end: int) -> None:
        if not decoded.strip():
            return
        inner = detect([Segment("", decoded)], self.layer + 1)
        found = score(inner.findings)
        if found > 0.0:
            weight = min(1.0, found + 0.2)
            self._add_original("encoded_payload", rule, weight, start, end)

    def _add_folded(self, rule: patterns.Rule, weight: float, start: int, end: int) -> bool:
        text = self.folded
        while start < end and text[start] in _WORD_EDGE and text[start] not in "<[!#":
            start += 1  # the boundary character a rule may match before its first word
        while end > start and text[end - 1] in " \t\n\x00.,;:!?":
            end -= 1
        index = bisect_right(self.starts, start) - 1
        base = self.starts[index]
        offsets = self._map(index)
        begin, finish = offsets.original(start - base), offsets.original_end(end - base)
        return self._add(index, rule.kind, rule.rule, weight, begin, finish)

    def _add_original(self, kind: str, rule: str, weight: float, start: int, end: int) -> bool:
        index = bisect_right(self.original_starts, start) - 1
        base = self.original_starts[index]
        return self._add(index, kind, rule, weight, start - base, end - base)

    def _add(self, index: int, kind: str, rule: str, weight: float, start: int, end: int) -> bool:
        """Record a finding; False once `rule` reached `MAX_PER_RULE` (the scan is truncated)."""
        count = self._counts.get(rule, 0)
        if count >= MAX_PER_RULE:
            self.truncated = True
            return False
        self._counts[rule] = count + 1
        part = self.parts[index]
        text = part.text
        if kind in _LINE_KINDS:
            newline = text.find("\n", end, end + 2000)
            end = newline if newline >= 0 else min(len(text), end + 2000)
        preview = _preview(text[start : min(end, start + _PREVIEW + 1)])
        self.found.append(
            Finding(kind, rule, weight, part.pointer, start, end - start, part.in_key, preview)
        )
        return True

    def _map(self, index: int) -> OffsetMap:
        offsets = self._maps.get(index)
        if offsets is None:
            offsets = self._maps[index] = OffsetMap(self.parts[index].text)
        return offsets


class _Spanned:
    """A match's span in the whole joined text (the match may come from a slice of it)."""

    __slots__ = ("_base", "_match")

    def __init__(self, match: Any, base: int) -> None:
        self._match, self._base = match, base

    def span(self) -> tuple[int, int]:
        start, end = self._match.span()
        return start + self._base, end + self._base

    def start(self) -> int:
        return int(self._match.start()) + self._base

    def end(self) -> int:
        return int(self._match.end()) + self._base

    def group(self, index: int = 0) -> Any:
        return self._match.group(index)


def _within_strings(pattern: Any, text: str, restarts: int = _MAX_RESTARTS) -> Iterator[Any]:
    """`pattern.finditer(text)` for strings joined by NUL: no match spans two of them.

    A match that runs across a separator is searched again within the
    string it starts in, and the search goes on from the next string, so
    one string's text cannot swallow a match in the next. (RE2 re-reads
    the text it is given on every call, so restarting costs the rest of the
    text: after `restarts` of them, the rest is matched as one text.)
    """
    base = 0
    while True:
        for match in pattern.finditer(text, base) if base else pattern.finditer(text):
            start, end = match.span()
            # (A match may begin with the separator before its string's first word.)
            separator = text.find("\x00", start + 1, end)
            if separator == -1:
                yield match
                continue
            if restarts <= 0:
                yield match
                continue
            restarts -= 1
            inner = pattern.search(text[start:separator])
            base = separator + 1
            if inner is not None:
                yield _Spanned(inner, start)
                if inner.end() > inner.start():
                    base = start + inner.end()  # there may be more within this string
            break
        else:
            return


def _starts(texts: Sequence[str]) -> list[int]:
    """Where each text starts once they are joined by one separator each."""
    if not texts:
        return []
    # Each start is the one before it plus that text's length and one (all in C).
    sizes = map(_PLUS_ONE, map(len, itertools.islice(texts, len(texts) - 1)))
    return list(itertools.accumulate(sizes, initial=0))


_PLUS_ONE = (1).__add__
# Characters of a base64 run (`patterns.BASE64_RUN`; hex digits are among them): 'x'.
_TOKEN_CHARS = bytes(
    ord("x") if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "+/_-") else ord(" ")
    for c in range(256)
)
_TOKEN_RUN = b"x" * 24


def has_token_run(text: str) -> bool:
    """False if `text` has no 24 base64 characters in a row: then no base64 or hex run matches.

    (`BASE64_RUN` needs 24 of them, `HEX_RUN` 32 hex digits.) Non-ASCII
    characters are none of them: they encode as '?'.
    """
    return _TOKEN_RUN in text.encode("ascii", "replace").translate(_TOKEN_CHARS)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _bytes_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # one character per byte: offsets are byte offsets


def _at_least(pattern: Any, text: str, count: int) -> bool:
    return sum(1 for _ in itertools.islice(pattern.finditer(text), count)) >= count


def _base64_text(blob: str) -> str | None:
    data = blob.rstrip("=")
    if len(data) % 4 == 1:
        return None
    padded = data + "=" * (-len(data) % 4)
    try:
        if "-" in data or "_" in data:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable(raw)


def _printable(raw: bytes) -> str | None:
    """`raw` as text if it is UTF-8 made mostly of letters, digits, spaces and punctuation."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    letters = sum(1 for c in text if c.isalpha())
    if printable < 0.95 * len(text) or letters < 0.5 * len(text):
        return None
    return text


_PLACEHOLDER = ("{", "}", "$", "<", ">", "%7b", "%7d", "%24", "[", "]")


def _link_weight(url: str, *, image: bool) -> float:
    """How strongly a URL a client would fetch (an image) or show (a link) suggests exfiltration."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return 0.5 if image else 0.0
    carried = [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    carried += [segment for segment in parts.path.split("/") if len(segment) >= 32]
    placeholder = any(mark in url for mark in _PLACEHOLDER)
    long_value = any(len(value) >= 12 for value in carried)
    if image:
        if placeholder or long_value:
            return 0.8
        return 0.3 if parts.query else 0.0
    if placeholder:
        return 0.6
    return 0.2 if long_value else 0.0


def _preview(text: str) -> str:
    cut = text[:_PREVIEW]
    shown = "".join(c if c.isprintable() else "\u00b7" for c in cut)
    return shown + ("\u2026" if len(text) > _PREVIEW else "")
