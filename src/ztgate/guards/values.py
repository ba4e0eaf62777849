"""Steering values: the parts of data that can direct an action, normalised for comparison.

An e-mail address, a URL or host, an IBAN or account number, a phone
number, a user or channel handle, an amount or an identifier can steer what
an agent does next. The provenance guard records the ones a task reads and
classifies the ones a call sends; the DLP guard reuses the same scans.

Every value has two comparison forms:

- `strict`: semantics-preserving normalisation only (Unicode NFKC, case
  where case does not matter, RFC 3986 URL equivalence), so two values with
  the same strict form name the same thing. Trust is matched on it: a look-
  alike must never inherit a trusted value's trust. A value that carries
  invisible characters has no strict form (it is never trusted).
- `loose`: aggressive folding (percent-decoding, confusable letters, case,
  `+tags`, the last nine digits of a number), so a value hidden by
  encoding, homoglyphs or formatting is still recognised as seen. Taint is
  matched on it; matching more here never trusts anything.

All scanning is linear-time: searches are anchored on literals (`://`, `@`,
`#`) or run over a one-byte-per-character "shape" of the text, and every
repetition is bounded or possessive.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote, urlsplit

EMAIL = "email"
URL = "url"
HOST = "host"
IBAN = "iban"
PHONE = "phone"  # also account and card numbers: a run of digits
NUMBER = "number"
HANDLE = "handle"
IDENT = "ident"
TEXT = "text"

MAX_VALUE_CHARS = 2048
# Candidates one scan looks at: bounds the work an adversarial text can cause.
MAX_CANDIDATES = 16_384
SHARED_SCANS = 64  # scans kept for the other guards of the same call
SHARED_CHARS = 4 * 1_048_576  # and at most this much text among them (shapes multiply it)
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
# Letters of other scripts drawn like Latin ones (after NFKC, which already
# folds full-width, mathematical and other compatibility forms).
_CONFUSABLES = str.maketrans(
    "АВЕКМНОРСТХУІЈЅԀԚԜҮҺӀаеорсухѕіјһԁԛԝӏүɡɑɩıΑΒΕΖΗΙΚΜΝΟΡΤΥΧονραικυχϲϳօսհոզց",
    "ABEKMHOPCTXYIJSDQWYHIaeopcyxsijhdqwlygaiiABEZHIKMNOPTYXovpaikuxcjouhnqg",
)
_SPACE = re.compile(r"\s+")
# What `unquote` decodes: `%` and two hex digits; text without any it returns as it is.
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_DIGIT = re.compile(r"\d")
_NOT_DIGIT = re.compile(r"\D+")

# -- shapes: one byte per character, so that C-speed searches find candidates --------


def _table(groups: list[tuple[str, str]], default: str) -> bytes:
    table = bytearray([ord(default)] * 256)
    for chars, to in groups:
        for char in chars:
            table[ord(char)] = ord(to)
    return bytes(table)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = "0123456789"
# Digits '0', letters 'a' (a non-ASCII character, '?' after encoding, too),
# separators inside numbers 's', anything else '_'.
_NUMERIC_SHAPE = _table(
    [(_DIGITS, "0"), (_LETTERS + "?", "a"), (" ().-+/,", "s")],
    "_",
)
# The same without ',' as a separator: phone and account numbers do not use it
# (and so "1,250.00" is an amount, not a seven-digit number).
_PHONE_SHAPE = _table([(_DIGITS, "0"), (_LETTERS + "?", "a"), (" ().-+/", "s")], "_")
# IBANs as written: capital letters 'A', digits '0', spaces 's'; anything else '_'.
_IBAN_SHAPE = _table([(_DIGITS, "0"), (_LETTERS[26:], "A"), (" ", "s")], "_")
# Characters of tokens (keys, ids, base64): 'x'; anything else ' '.
_TOKEN_SHAPE = _table([(_DIGITS + _LETTERS + "_+/=.:-?", "x")], " ")
# Characters of words: digits '0', letters and '_' '-' 'a'; anything else ' '.
_WORD_SHAPE = _table([(_DIGITS, "0"), (_LETTERS + "?_-", "a")], " ")
# Characters of an e-mail address's local part: 'l'; anything else ' '.
_LOCAL_SHAPE = _table([(_DIGITS + _LETTERS + "?_.%+-", "l")], " ")
_DIGIT_RUN = re.compile(rb"0[0s]{0,40}+")
# Seven digits at least, at most two separators between two of them.
_LONG_DIGIT_RUN = re.compile(rb"0(?:s{0,2}+0){6,33}+")
_IBAN_RUN = re.compile(rb"AA00(?:s?[A0]){11,30}+")
_NUMBER_SEPARATORS = re.compile(r"[ ()/+]+")

_URL_TAIL = re.compile(r"://[^\s<>\"'`\\{}|^]{1,2048}+")
_SCHEME_BEFORE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}+\Z")
_AT_DOMAIN = re.compile(r"@[\w-]{1,63}+(?:\.[\w-]{1,63}+){0,8}+")
_HASH_HANDLE = re.compile(r"#\w[\w.-]{0,79}+")
_TRAILING = ".,;:!?)]}'\""

# -- whole values -------------------------------------------------------------------

_WHOLE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,15}://\S{1,2040}")
_WHOLE_EMAIL = re.compile(r"(?:mailto:)?([^\s@]{1,64})@([\w-]{1,63}(?:\.[\w-]{1,63}){0,8})", re.I)
_WWW_HOST = re.compile(r"www\.[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}", re.I)
_WHOLE_HOST = re.compile(r"[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_WHOLE_IBAN = re.compile(r"[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,30}")
_WHOLE_DIGITS = re.compile(r"\+?\(?\d(?:[ ().-]{0,2}\d){5,18}")
_WHOLE_NUMBER = re.compile(
    r"[-+]?[$€£¥]?\s?(\d{1,3}(?:,\d{3})+|\d{1,30})(\.\d{1,12})?\s?(?:[A-Za-z]{3})?"
)
_WHOLE_HANDLE = re.compile(r"[@#]\w[\w.-]{0,79}")
_WHOLE_IDENT = re.compile(r"[\w.:/#@+=~-]{3,128}")
_DATE_OR_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?"
)


@dataclass(frozen=True, slots=True)
class Value:
    """One steering value: its kind and its comparison forms."""

    kind: str
    strict: str  # "" when it must never be trusted
    loose: tuple[str, ...]  # the value's own loose form first, then related ones (its host)


@functools.lru_cache(maxsize=4096)
def digest(form: str) -> str:
    """A short, stable digest of a comparison form (what is stored and looked up)."""
    return hashlib.blake2b(form.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def has_invisible(text: str) -> bool:
    """True if `text` carries zero-width, bidirectional-control or tag characters."""
    return not text.isascii() and _INVISIBLE.search(text) is not None


def clean(text: str) -> str:
    """`text` without invisible characters, in Unicode NFKC (ASCII text is returned as is)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))


def fold(text: str) -> str:
    """Confusable letters mapped to Latin ones, case kept (for scanners)."""
    return text if text.isascii() else text.translate(_CONFUSABLES)


def loose_text(text: str) -> str:
    """Free text cleaned, percent-decoded, folded, case-folded, with spaces collapsed."""
    return _SPACE.sub(" ", fold(percent_decode(clean(text))).casefold()).strip()


def strict_text(text: str) -> str:
    """The strict form of free text: NFKC, case-folded, spaces collapsed."""
    return _SPACE.sub(" ", clean(text).casefold()).strip()


def percent_decode(text: str) -> str:
    """`text` percent-decoded until stable (at most three rounds: double encoding is common)."""
    for _ in range(3):
        # Text with a `%` but no escape ("grew 4%") is common in prose: no
        # decoding round for it (unquote would give the same text back).
        if "%" not in text or _PERCENT_ESCAPE.search(text) is None:
            break
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _loose(text: str) -> str:
    return fold(percent_decode(text)).casefold()


# -- forms per kind ---------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # addresses recur; both parts are bounded by the scans
def email_value(local: str, domain: str) -> Value:
    """An e-mail address (`local@domain`, already cleaned)."""
    strict = f"{local.casefold()}@{domain.casefold().rstrip('.')}"
    loose_local = _loose(local).split("+", 1)[0]
    loose_domain = _loose(domain).rstrip(".")
    return Value(EMAIL, strict, (f"{loose_local}@{loose_domain}", loose_domain))


@functools.lru_cache(maxsize=4096)  # URLs recur; at most about `MAX_VALUE_CHARS` each
def url_value(text: str) -> Value | None:
    """A URL (already cleaned), or None if it has no host."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host or not parts.scheme:
        return None
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}.get(scheme)
    netloc = _percent_case(host.casefold().rstrip("."))
    if parts.username is not None or parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    if port is not None and port != default:
        netloc += f":{port}"
    path = _percent_case(parts.path) or "/"
    query = "?" + _percent_case(parts.query) if parts.query else ""
    strict = f"{scheme}://{netloc}{path}{query}"
    loose_host = _loose(host).rstrip(".")
    loose = _loose(f"{scheme}://{loose_host}{parts.path or '/'}{query}").rstrip("/")
    return Value(URL, strict, (loose, loose_host))


_IBAN_LETTERS = {ord(letter): str(10 + index) for index, letter in enumerate(_LETTERS[26:])}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _percent_case(text: str) -> str:
    """RFC 3986 6.2.2: escapes of unreserved characters decoded, the others in upper case."""
    if "%" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(one, text)


def host_value(text: str) -> Value:
    """A bare host or file name such as `acme.example` or `report.pdf` (already cleaned)."""
    strict = text.casefold().rstrip(".")
    return Value(HOST, strict, (_loose(text).rstrip("."),))


def digits_value(text: str, kind: str = PHONE) -> Value | None:
    """A phone, account or card number: its digits (the last nine, loosely)."""
    digits = _NOT_DIGIT.sub("", text)
    if not 6 <= len(digits) <= 34:
        return None
    return Value(kind, digits, (digits[-9:],))


def iban_value(text: str) -> Value | None:
    """An IBAN with a valid mod-97 check, or None."""
    compact = text.replace(" ", "").upper()
    if not iban_valid(compact):
        return None
    return Value(IBAN, compact, (compact,))


def iban_valid(compact: str) -> bool:
    """ISO 13616: two letters, two check digits, up to 30 alphanumerics, mod 97 == 1."""
    if not 15 <= len(compact) <= 34 or not compact.isascii() or not compact.isalnum():
        return False
    if not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def number_value(number: Any) -> Value | None:
    """An amount: a JSON number or numeric text, in canonical decimal form."""
    kind = type(number)
    if kind is float or (kind is int and -_CACHED_INTS <= number <= _CACHED_INTS):
        return _json_number_value(number)
    return _number_value(number)


_CACHED_INTS = 2**63  # ints cached by `number_value`: up to 19 digits (keys stay small)


def _number_value(number: Any) -> Value | None:
    try:
        value = Decimal(number if isinstance(number, str) else repr(number))
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite() or abs(value.adjusted()) > 30:
        return None
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    digits = text.lstrip("-")
    loose = digits[-9:] if digits.isdigit() and len(digits) >= 9 else text
    return Value(NUMBER, text, (loose,))


# JSON numbers recur (counts, priorities, amounts). `typed`: 1 and 1.0 are
# cached apart; equal floats (0.0 and -0.0) have the same form anyway.
_json_number_value = functools.lru_cache(maxsize=4096, typed=True)(_number_value)


def handle_value(text: str) -> Value:
    """A user or channel handle such as `@alice` or `#general`."""
    strict = text.casefold()
    return Value(HANDLE, strict, (_loose(text[1:]),))


def ident_value(text: str) -> Value:
    """An identifier (a file or document id, a ticket): case kept in its strict form."""
    return Value(IDENT, text, (_loose(text),))


def text_value(text: str) -> Value | None:
    """Short text taken as a whole (a name, a title)."""
    strict = strict_text(text)
    if not strict:
        return None
    return Value(TEXT, strict, (loose_text(text),))


# -- classifying a whole string ---------------------------------------------------------


def whole(raw: str) -> Value | None:
    """The steering value `raw` is as a whole, or None if it is free text or nothing (cached)."""
    if not raw or len(raw) > MAX_VALUE_CHARS:
        return None  # (and not cached: the cache holds short strings only)
    return _whole(raw)


@functools.lru_cache(maxsize=4096)
def _whole(raw: str) -> Value | None:
    invisible = has_invisible(raw)
    text = clean(raw).strip()
    value = _shape(text)
    if value is None and "%" in text:
        decoded = _shape(percent_decode(text))
        # Percent-encoded, it is recognised (and so can be found seen) but never trusted.
        value = None if decoded is None else Value(decoded.kind, "", decoded.loose)
    if value is not None and invisible:
        value = Value(value.kind, "", value.loose)
    return value


def _shape(text: str) -> Value | None:
    if not text:
        return None
    if "://" in text:
        return url_value(text) if _WHOLE_URL.fullmatch(text) else None
    if "@" in text:
        match = _WHOLE_EMAIL.fullmatch(text)
        if match:
            return email_value(match.group(1), match.group(2))
        return handle_value(text) if _WHOLE_HANDLE.fullmatch(text) else None
    if text[0] == "#":
        return handle_value(text) if _WHOLE_HANDLE.fullmatch(text) else None
    if _DATE_OR_TIME.fullmatch(text):
        return None
    if _WHOLE_IBAN.fullmatch(text):
        found = iban_value(text)
        if found is not None:
            return found
    if _WHOLE_DIGITS.fullmatch(text) and text[-1].isdigit():
        digits = _NOT_DIGIT.sub("", text)
        if len(digits) >= 7 and (text[0] in "+(" or not text.isdigit() or len(digits) >= 9):
            return digits_value(text)
    if _DIGIT.search(text) and _WHOLE_NUMBER.fullmatch(text):
        return number_value(_number_text(text))
    if _WHOLE_HOST.fullmatch(text) and not text.replace(".", "").isdigit():
        return host_value(text)
    if _WHOLE_IDENT.fullmatch(text) and _is_identifier(text):
        return ident_value(text)
    return None


def _number_text(text: str) -> str:
    kept = "".join(char for char in text if char.isdigit() or char in ".-")
    return kept or "0"


def _is_identifier(text: str) -> bool:
    """Letters and digits mixed, or word characters joined by separators: not a plain word."""
    has_digit = _DIGIT.search(text) is not None
    has_letter = any(char.isalpha() for char in text)
    if has_digit and has_letter:
        return True
    return has_letter and any(sep in text for sep in "_:/") and len(text) >= 4


def is_small_count(number: Any) -> bool:
    """Numbers from -10 to 10: counts, pages, flags, durations; not amounts worth tracking."""
    return isinstance(number, int | float) and not isinstance(number, bool) and -10 <= number <= 10


# -- scanning free text -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """A value found inside text, with where it was."""

    start: int
    end: int
    value: Value


class TextScan:
    """Finds steering values inside free text (already `clean`ed), each finder once.

    The searches run over one-byte-per-character shapes of the text (see
    the tables above) with literal needles and `find`/`rfind`, so they stay
    in C and linear; only the few candidates they find are looked at in Python.
    """

    def __init__(self, text: str, *, budget: int = MAX_CANDIDATES) -> None:
        """Scan `text`; searches run on demand, looking at `budget` candidates at most.

        When the budget runs out the finders stop and `truncated` is set:
        the caller decides what an unfinished scan means (the guards treat
        it as untrusted, or as unscannable).
        """
        self.text = text
        self.budget = budget
        self.truncated = False
        self._ascii: bytes | None = None
        self._shapes: dict[bytes, bytes] = {}
        self._digit_runs: dict[int, list[tuple[int, int]]] = {}
        self._found: dict[str, list[Found]] = {}
        # What `addresses` spent, when it ran first and to its end (see `adopt_addresses`).
        self._addresses_spent: int | None = None

    def spend(self) -> bool:
        """Take one candidate from the budget; False (and `truncated`) when none is left."""
        if self.budget <= 0:
            self.truncated = True
            return False
        self.budget -= 1
        return True

    @property
    def ascii(self) -> bytes:
        """The text as one byte per character (non-ASCII characters as '?')."""
        if self._ascii is None:
            self._ascii = self.text.encode("ascii", "replace")
        return self._ascii

    def shape(self, table: bytes) -> bytes:
        """The text translated by `table` (cached)."""
        shaped = self._shapes.get(table)
        if shaped is None:
            shaped = self._shapes[table] = self.ascii.translate(table)
        return shaped

    def addresses(self) -> list[Found]:
        """URLs, e-mail addresses, handles, IBANs and phone, account or card numbers; cached.

        A number inside a URL, an address or an IBAN is not found again on its own.
        """
        found = self._found.get("addresses")
        if found is None:
            first = not self._digit_runs and self._found.keys().isdisjoint(_ADDRESS_PARTS)
            before = self.budget
            found = self._cached("addresses", self._find_addresses)
            if first and not self.truncated:
                self._addresses_spent = before - self.budget
        return found

    def adopt_addresses(self, donor: TextScan) -> bool:
        """Take what `donor` (a scan of the same text) found as `addresses`, as if found here.

        Only into a scan that has found nothing yet, and only what `donor`
        found with its finders run first and to their end, spending no more
        than this scan's budget: a fresh scan would then find the same,
        spending as much (the finders are deterministic, and `spend` only
        fails when the budget is out). True if taken.
        """
        spent = donor._addresses_spent
        if (
            spent is None
            or spent > self.budget
            or self.truncated
            or self._found
            or self._digit_runs
            or donor.text != self.text
        ):
            return False
        for name in (*_ADDRESS_PARTS, "addresses"):
            self._found[name] = list(donor._found[name])
        self._digit_runs[7] = list(donor._digit_runs[7])
        self._shapes.update(donor._shapes)
        self.budget -= spent
        return True

    def _find_addresses(self) -> Iterator[Found]:
        spans: list[tuple[int, int]] = []
        for finder in (self.urls, self.emails_and_handles, self.hash_handles, self.ibans):
            for found in finder():
                spans.append((found.start, found.end))
                yield found
        for found in self.digit_runs(min_digits=7):
            if not any(start < found.end and found.start < end for start, end in spans):
                yield found

    def everything(self) -> Iterator[Found]:
        """`addresses`, plus amounts and identifiers (for what a task reads)."""
        yield from self.addresses()
        yield from self.numbers()
        yield from self.identifiers()

    def urls(self) -> list[Found]:
        """URLs: a scheme, `://` and what follows up to a space or quote; `www.` hosts; cached."""
        return self._cached("urls", self._find_urls)

    def _cached(self, name: str, find: Callable[[], Iterable[Found]]) -> list[Found]:
        found = self._found.get(name)
        if found is None:
            found = self._found[name] = list(find())
        return found

    def _find_urls(self) -> Iterator[Found]:
        text = self.text
        at = text.find("://")
        while at >= 0 and self.spend():
            tail = _URL_TAIL.match(text, at)
            scheme = _SCHEME_BEFORE.search(text, max(0, at - 16), at)
            end = tail.end() if tail is not None else at + 3
            if tail is not None and scheme is not None:
                while end > at + 3 and text[end - 1] in _TRAILING:
                    end -= 1
                value = url_value(text[scheme.start() : end])
                if value is not None:
                    yield Found(scheme.start(), end, value)
            at = text.find("://", max(end, at + 3))
        yield from self._find_www_hosts()

    def _find_www_hosts(self) -> Iterator[Found]:
        """Hosts written without a scheme but with `www.` ("visit www.acme.example")."""
        text = self.text
        lowered = self.ascii.lower()
        at = lowered.find(b"www.")
        while at >= 0 and self.spend():
            before = text[at - 1] if at else " "
            match = _WWW_HOST.match(text, at)
            end = at + 4
            if match is not None and not (before.isalnum() or before in "./-@_"):
                host = match.group().rstrip(".")
                end = at + len(host)
                if end == len(text) or text[end] not in "@":
                    yield Found(at, end, host_value(host))
            at = lowered.find(b"www.", end)

    def emails_and_handles(self) -> list[Found]:
        """`local@domain` addresses, and `@name` handles (an `@` after no word); cached."""
        return self._cached("emails", self._find_emails)

    def _find_emails(self) -> Iterator[Found]:
        text = self.text
        if "@" not in text:
            return
        local_shape = self.shape(_LOCAL_SHAPE)
        for match in _AT_DOMAIN.finditer(text):
            if not self.spend():
                return
            at, end = match.start(), match.end()
            floor = max(0, at - 64)
            space = local_shape.rfind(b" ", floor, at)
            begin = space + 1 if space >= 0 else floor
            if begin == floor and floor and local_shape[floor - 1 : floor] == b"l":
                continue  # a local part longer than 64 characters: not an address
            local = text[begin:at].lstrip(".")
            begin = at - len(local)
            if local and "." in match.group():
                yield Found(begin, end, email_value(local, match.group()[1:]))
            elif not local and (at == 0 or not text[at - 1].isalnum()):
                name = match.group().rstrip(".")
                if len(name) > 1:
                    yield Found(at, at + len(name), handle_value(name))

    def hash_handles(self) -> list[Found]:
        """`#channel` handles (a `#` after no word); cached."""
        return self._cached("hashes", self._find_hash_handles)

    def _find_hash_handles(self) -> Iterator[Found]:
        text = self.text
        if "#" not in text:
            return
        for match in _HASH_HANDLE.finditer(text):
            if not self.spend():
                return
            at = match.start()
            if at == 0 or not (text[at - 1].isalnum() or text[at - 1] in "&/"):
                name = match.group().rstrip(".-")
                yield Found(at, at + len(name), handle_value(name))

    def ibans(self) -> list[Found]:
        """IBANs in capitals, with or without spaces, whose check digits are right; cached."""
        return self._cached("ibans", self._find_ibans)

    def _find_ibans(self) -> Iterator[Found]:
        shape = self.shape(_IBAN_SHAPE)
        for match in _IBAN_RUN.finditer(shape):
            if not self.spend():
                return
            start, end = match.span()
            if start and self.text[start - 1].isalnum():
                continue
            # The longest valid run of space-separated groups (a word may follow).
            pieces = self.text[start:end].split(" ")
            for count in range(len(pieces), 0, -1):
                value = iban_value("".join(pieces[:count]))
                if value is not None:
                    yield Found(start, start + len(" ".join(pieces[:count])), value)
                    break

    def digit_runs(self, *, min_digits: int = 7) -> list[Found]:
        """Runs of digits with separators: phone, account and card numbers; cached."""
        return self._cached(f"digits{min_digits}", lambda: self._find_digit_runs(min_digits))

    def _find_digit_runs(self, min_digits: int) -> Iterator[Found]:
        shape = self.shape(_PHONE_SHAPE if min_digits >= 7 else _NUMERIC_SHAPE)
        for start, end in self._runs(7 if min_digits >= 7 else 1):
            if not self.spend():
                return
            if shape.count(b"0", start, end) < min_digits:
                continue
            piece = self.text[start:end]
            # A date or a date-time ("2024-05-19 12:00": the run stops at the colon).
            date = _DATE_OR_TIME.match(self.text, start)
            if date is not None and date.end() >= end:
                continue
            value = digits_value(piece)
            if value is not None:
                yield Found(start, end, value)

    def numbers(self) -> Iterator[Found]:
        """Amounts: each number of a digit run that is not a phone or account number."""
        shape = self.shape(_NUMERIC_SHAPE)
        for start, end in self._runs(1):
            if not self.spend():
                return
            if shape.count(b"0", start, end) >= 7:
                continue
            for value in _run_numbers(self.text[start:end]):
                yield Found(start, end, value)

    def identifiers(self) -> Iterator[Found]:
        """Tokens mixing letters and digits (`file_8d7a2`, `INV-2024-0012`)."""
        shape = self.shape(_WORD_SHAPE)
        position = shape.find(b"0")
        while position >= 0 and self.spend():
            begin = shape.rfind(b" ", 0, position) + 1
            end = shape.find(b" ", position)
            end = len(shape) if end < 0 else end
            if 4 <= end - begin <= 128 and b"a" in self.shape(_NUMERIC_SHAPE)[begin:end]:
                token = self.text[begin:end].strip("-_")
                if len(token) >= 4 and not _DATE_OR_TIME.fullmatch(token):
                    yield Found(begin, begin + len(token), ident_value(token))
            position = shape.find(b"0", end)

    def long_tokens(self, min_chars: int = 16) -> Iterator[tuple[int, int]]:
        """Spans of at least `min_chars` token characters (keys, ids, base64)."""
        shape = self.shape(_TOKEN_SHAPE)
        needle = b"x" * min_chars
        position = shape.find(needle)
        while position >= 0 and self.spend():
            end = shape.find(b" ", position + len(needle))
            end = len(shape) if end < 0 else end
            yield position, end
            position = shape.find(needle, end)

    def _runs(self, min_chars: int) -> list[tuple[int, int]]:
        """Digit runs (with separators), seven characters or more if `min_chars` >= 7.

        Digits glued to letters (`INV-2024-0012`, `B2`) belong to an
        identifier: such a run is cut after its first word.
        """
        key = 7 if min_chars >= 7 else 1
        cached = self._digit_runs.get(key)
        if cached is not None:
            return cached
        runs: list[tuple[int, int]] = []
        shape = self.shape(_PHONE_SHAPE if key == 7 else _NUMERIC_SHAPE)
        pattern = _LONG_DIGIT_RUN if key == 7 else _DIGIT_RUN
        match = pattern.search(shape)
        while match is not None and self.spend():
            start, end = match.span()
            resume = end
            before = start
            while before and start - before < 2 and self.text[before - 1] in "-._":
                before -= 1
            if before and self.text[before - 1].isalpha():
                # Glued to letters: skip this word and look again after it.
                space = self.ascii.find(b" ", start, end)
                resume = space + 1 if space >= 0 else end
            else:
                while end > start and shape[end - 1 : end] == b"s":
                    end -= 1
                if end >= len(shape) or shape[end : end + 1] != b"a":
                    runs.append((start, end))
            match = pattern.search(shape, resume)
        self._digit_runs[key] = runs
        return runs


@functools.lru_cache(maxsize=4096)
def _run_numbers(piece: str) -> tuple[Value, ...]:
    """The amounts in one digit run (at most 41 characters: `_DIGIT_RUN`), cached: they recur."""
    found = []
    for token in _NUMBER_SEPARATORS.split(piece):
        token = token.strip(".,-")
        if token and token[0].isdigit() and not _DATE_OR_TIME.fullmatch(token):
            value = number_value(token.replace(",", ""))
            if value is not None:
                found.append(value)
    return tuple(found)


_SHARED: OrderedDict[str, TextScan] = OrderedDict()
_shared_chars = 0
# The finders `addresses` runs, by the names their findings are cached under.
_ADDRESS_PARTS = ("urls", "emails", "hashes", "ibans", "digits7")


def shared_scan_of(text: str) -> TextScan | None:
    """The shared scan of `text` if the guards of this call made one (none is made)."""
    return _SHARED.get(text)


def shared_scan(text: str) -> TextScan:
    """The scan of `text` (already cleaned) that every guard of a call shares.

    The guards look at the same argument strings one after the other; each
    finder of a scan runs once and keeps what it found. The most recent
    scans are kept: a few dozen, of at most a few MiB of text together.
    """
    global _shared_chars
    scan = _SHARED.get(text)
    if scan is not None:
        _SHARED.move_to_end(text)
        return scan
    scan = _SHARED[text] = TextScan(text)
    _shared_chars += len(text)
    while len(_SHARED) > 1 and (len(_SHARED) > SHARED_SCANS or _shared_chars > SHARED_CHARS):
        _shared_chars -= len(_SHARED.popitem(last=False)[0])
    return scan
