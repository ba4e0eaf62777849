"""What must not leave unnoticed: secrets, personal data and encoded blobs, found in one pass.

A rule set in the spirit of detect-secrets' plugins (provider key formats,
private keys, JWTs, passwords in URLs, `password = ...` assignments, high
entropy strings) and of Presidio's pattern recognisers (e-mail addresses,
phone numbers, card numbers with the Luhn check, IBANs with mod 97, US
social security numbers), compiled for speed: candidates come from the
linear shape scans of guards/values.py (long tokens, `://`, `@`, digit
runs), and only those few are matched against the rules. detect-secrets
itself, run per call, costs 2-3 ms per KiB; this costs tens of microseconds.

Text is cleaned first (invisible characters removed, NFKC, look-alike
letters folded), so `AKIA` written with a Cyrillic A or a zero-width
space inside is still an AWS key. Base64, hex and percent-encoded text is
decoded and scanned again (two layers at most). A finding says what and
where (`kind`, span), never the matched text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ztgate.guards.values import EMAIL, IBAN, TextScan, clean, fold, shared_scan

SECRET = "secret"  # noqa: S105 - a category name
PII = "pii"
ENCODED = "encoded"
MAX_LAYERS = 2
MIN_CHARS = 6  # nothing shorter is a key, an address or a number worth finding
MAX_DECODED = 65_536
SHORT_CHARS = 256  # strings this short have their findings cached


@dataclass(frozen=True, slots=True)
class Finding:
    """Something sensitive in a string: its kind, category and span (in the scanned text)."""

    kind: str
    category: str  # secret | pii | encoded
    start: int = 0
    end: int = 0
    encoded: bool = False  # found after decoding base64, hex or percent-encoding


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    prefix: str
    pattern: re.Pattern[str]


def _rule(kind: str, prefix: str, body: str) -> _Rule:
    # A key stands alone: no letter or digit right before or after it.
    return _Rule(kind, prefix, re.compile(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"))


# Provider formats, each with a literal prefix (most specific first).
_RULES = (
    _rule("aws_access_key", "A", r"A(?:KIA|SIA|BIA|CCA|GPA|IDA|ROA|IPA|NPA|PKA)[0-9A-Z]{16}"),
    _rule("github_token", "gh", r"gh[pousr]_[A-Za-z0-9]{36,255}"),
    _rule("github_token", "github_pat_", r"github_pat_[A-Za-z0-9_]{22,255}"),
    _rule("gitlab_token", "glpat-", r"glpat-[A-Za-z0-9_-]{20,64}"),
    _rule("slack_token", "xox", r"xox[abposr]-[A-Za-z0-9-]{10,255}"),
    _rule("anthropic_key", "sk-ant-", r"sk-ant-[A-Za-z0-9_-]{20,255}"),
    _rule("openai_key", "sk-", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,255}"),
    _rule("stripe_key", "k_", r"(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,255}"),
    _rule("google_api_key", "AIza", r"AIza[0-9A-Za-z_-]{35}"),
    _rule("google_oauth_token", "ya29.", r"ya29\.[0-9A-Za-z_-]{20,2048}"),
    _rule("sendgrid_key", "SG.", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    _rule("twilio_key", "SK", r"SK[0-9a-f]{32}"),
    _rule("npm_token", "npm_", r"npm_[A-Za-z0-9]{36}"),
    _rule("pypi_token", "pypi-", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}"),
    _rule("huggingface_token", "hf_", r"hf_[A-Za-z0-9]{34,64}"),
    _rule("mailchimp_key", "-us", r"[0-9a-f]{32}-us[0-9]{1,2}"),
    _rule("square_token", "sq0", r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,64}"),
    _rule("shopify_token", "shp", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    _rule("digitalocean_token", "do", r"do[opr]_v1_[a-f0-9]{64}"),
    _rule("telegram_bot_token", ":AA", r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}"),
    _rule("jwt", "eyJ", r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# `password = "..."`, `api_key: ...`, `Authorization: Bearer ...`: a keyword
# right before a `:` or `=`, then a value.
_KEYWORD_BEFORE = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|client[_-]?secret|api[_-]?key|apikey|"
    r"access[_-]?key|secret[_-]?key|private[_-]?key|(?:access|auth|refresh|bearer)[_-]?token|"
    r"accountkey|authorization)[\"']?\s{0,3}\Z"
)
_ASSIGNED_VALUE = re.compile(r"\s{0,3}[\"']?((?:bearer|basic)\s+)?([^\s\"',;]{6,512})", re.I)
_PLACEHOLDER = re.compile(r"[*x.•#-]+|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%[a-z_]+%", re.I)
_KEYWORD_HINTS = ("pass", "pwd", "secret", "key", "token", "authorization")
_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_CARD = re.compile(r"\d{4}(?:[ -]?\d{2,4}){2,4}\d{0,3}")
_PHONE = re.compile(
    r"\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){1,4}"
    r"|\(?\d{2,4}\)?[ .-]\d{2,4}(?:[ .-]\d{2,4}){1,3}"
)
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")
_HEX = frozenset("0123456789abcdefABCDEF")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def luhn(digits: str) -> bool:
    """The Luhn check of a card number's digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in Counter(text).values())


def scan(text: str, *, layer: int = 0) -> list[Finding]:
    """Everything sensitive in one string (short strings' findings are cached: they recur)."""
    if len(text) < MIN_CHARS:
        return []
    if layer == 0 and len(text) <= SHORT_CHARS:
        return list(_scan_short(text))
    return _scan_text(text, layer)


@functools.lru_cache(maxsize=4096)
def _scan_short(text: str) -> tuple[Finding, ...]:
    return tuple(_scan_text(text, 0))


def _scan_text(text: str, layer: int) -> list[Finding]:
    cleaned = fold(clean(text))
    found = list(_scan(cleaned, layer))
    if layer < MAX_LAYERS and "%" in cleaned:
        decoded = unquote(cleaned)
        if decoded != cleaned:
            found.extend(_as_encoded(scan(decoded[:MAX_DECODED], layer=layer + 1)))
    return found


def _scan(text: str, layer: int) -> Iterator[Finding]:
    scanner = shared_scan(text)
    yield from _tokens(scanner, layer)
    if "-----BEGIN" in text:
        for match in _PRIVATE_KEY.finditer(text):
            yield Finding("private_key", SECRET, match.start(), match.end())
    for found in scanner.urls():
        try:
            password = urlsplit(found.value.strict).password
        except ValueError:
            password = None
        if password and not _PLACEHOLDER.fullmatch(password):
            yield Finding("password_in_url", SECRET, found.start, found.end)
    yield from _assignments(text, scanner)
    yield from _personal(scanner)
    if scanner.truncated:
        # Too much to look at: nothing can be vouched for.
        yield Finding("too_many_to_scan", SECRET)


def _tokens(scanner: TextScan, layer: int) -> Iterator[Finding]:
    text = scanner.text
    for start, end in scanner.long_tokens(16):
        token = text[start:end]
        matched = False
        for rule in _RULES:
            if rule.prefix and rule.prefix not in token:
                continue
            for match in rule.pattern.finditer(token):
                matched = True
                yield Finding(rule.kind, SECRET, start + match.start(), start + match.end())
        if not matched:
            yield from _blob(token.strip("."), start, layer)


def _blob(token: str, start: int, layer: int) -> Iterator[Finding]:
    """A long token that no rule knows: high entropy, or an encoded payload."""
    if len(token) < 20 or "://" in token:
        return
    end = start + len(token)
    chars = set(token)
    if chars <= _HEX and len(token) >= 32:
        if len(token) >= 64:
            yield Finding("hex_blob", ENCODED, start, end)
        yield from _decoded(_unhex(token), start, end, layer)
        return
    if not chars <= _BASE64:
        return
    mixed = any(c.isdigit() for c in token) and any(c.isupper() for c in token)
    if mixed and any(c.islower() for c in token) and entropy(token) >= 4.0:
        kind = "base64_blob" if len(token) >= 64 else "high_entropy_string"
        yield Finding(kind, ENCODED, start, end)
    if len(token) >= 24:
        yield from _decoded(_unbase64(token), start, end, layer)


def _decoded(text: str | None, start: int, end: int, layer: int) -> Iterator[Finding]:
    if text is None or layer >= MAX_LAYERS:
        return
    for finding in scan(text, layer=layer + 1):
        yield Finding(finding.kind, finding.category, start, end, encoded=True)


def _unbase64(token: str) -> str | None:
    data = token.rstrip("=")
    alphabet = base64.urlsafe_b64decode if ("-" in data or "_" in data) else base64.b64decode
    try:
        raw = alphabet(data[: MAX_DECODED * 4 // 3] + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None
    return _printable(raw)


def _unhex(token: str) -> str | None:
    try:
        raw = bytes.fromhex(token[: MAX_DECODED * 2] if len(token) % 2 == 0 else token[:-1])
    except ValueError:
        return None
    return _printable(raw)


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or len(_CONTROL.findall(text)) > len(text) // 20:
        return None
    return text


def _assignments(text: str, scanner: TextScan) -> Iterator[Finding]:
    """`keyword = value` and `keyword: value`: each `=` and `:` looks back 40 characters."""
    for sign in (":", "="):
        at = text.find(sign)
        while at >= 0 and scanner.spend():
            floor = max(0, at - 40)
            window = text[floor:at].lower()
            before = (
                _KEYWORD_BEFORE.search(window)
                if any(hint in window for hint in _KEYWORD_HINTS)
                else None
            )
            if before is not None:
                value = _ASSIGNED_VALUE.match(text, at + 1)
                if value is not None and not _PLACEHOLDER.fullmatch(value.group(2)):
                    kind = "bearer_token" if value.group(1) else "password_assignment"
                    yield Finding(kind, SECRET, floor + before.start(), value.end())
            at = text.find(sign, at + 1)


def _personal(scanner: TextScan) -> Iterator[Finding]:
    urls = [(found.start, found.end) for found in scanner.urls()]
    for found in scanner.emails_and_handles():
        inside = any(start <= found.start < end for start, end in urls)
        if found.value.kind == EMAIL and not inside:
            yield Finding("email", PII, found.start, found.end)
    for found in scanner.ibans():
        if found.value.kind == IBAN:
            yield Finding("iban", PII, found.start, found.end)
    text = scanner.text
    for found in scanner.digit_runs(min_digits=7):
        piece = text[found.start : found.end]
        if found.start and text[found.start - 1] == "+":
            piece = "+" + piece
        digits = found.value.strict
        if 13 <= len(digits) <= 19 and _CARD.fullmatch(piece) and luhn(digits):
            yield Finding("card_number", PII, found.start, found.end)
        elif _SSN.fullmatch(piece):
            yield Finding("us_ssn", PII, found.start, found.end)
        elif 7 <= len(digits) <= 15 and _PHONE.fullmatch(piece):
            yield Finding("phone", PII, found.start, found.end)


def _as_encoded(findings: list[Finding]) -> Iterator[Finding]:
    for finding in findings:
        yield Finding(finding.kind, finding.category, 0, 0, encoded=True)


def scan_number(number: int) -> list[Finding]:
    """A card number sent as a JSON number."""
    digits = str(abs(number))
    if 13 <= len(digits) <= 19 and luhn(digits):
        return [Finding("card_number", PII)]
    return []
