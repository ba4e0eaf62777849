"""Previews of arguments for the audit log: short, and with secrets masked.

A preview helps a reviewer see what a call was about; the hash of the full
canonical arguments is what proves it. Values under sensitive keys and values
that look like credentials are replaced, long strings are cut, and the whole
preview is bounded in size. All patterns are linear-time.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson

REDACTED = "[REDACTED]"
# Matched against the key in snake_case, as whole words: "accessToken" and
# "x-api-key" are sensitive, "author" and "shipping" are not.
_SENSITIVE_KEY = re.compile(
    r"(?:^|_)(?:pass(?:word|wd|phrase)?|secret|token|api_?key|auth|authorization|cookie|"
    r"private_?key|credentials?|signature|ssn|card_?number|cvv|pin)(?:_|$)"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_SECRET_VALUE = re.compile(
    # JWT / JWS. The look-behind starts a match only where a run of base64url
    # characters starts, and the possessive runs never backtrack: linear time.
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]*+"
    r"|-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{36,}"  # GitHub token
    r"|\bgithub_pat_[A-Za-z0-9_]{40,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack token
    r"|\bsk-[A-Za-z0-9_-]{20,}"  # OpenAI/Anthropic-style secret key
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API key
    r"|\b[rs]k_live_[0-9A-Za-z]{20,}"  # Stripe live key
    r"|://[^/\s:@]{1,256}:[^/\s@]{1,256}@"  # password in a URL
    r"|\bbearer\s+[A-Za-z0-9._~+/-]{16,}",
    re.IGNORECASE,
)
_MAX_STRING = 64
_MAX_ITEMS = 16
_MAX_DEPTH = 6


@functools.lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """True if a field named `key` probably holds a credential (cached: keys recur)."""
    words = _SEPARATORS.sub("_", _CAMEL.sub(r"\1_\2", key).lower())
    return _SENSITIVE_KEY.search(words) is not None


# What each alternative of `_SECRET_VALUE` cannot match without, in lower case:
# its literal part. The pattern has no literal prefix for the regex engine to
# look for, so it is tried at every position of the text (about 40 us for a
# sentence); a few substring searches in C first rule most text out. Only for
# ASCII text, where IGNORECASE is exactly `str.lower` (other scripts have
# letters it matches to ASCII ones, such as the Kelvin sign to "k").
_SECRET_NEEDLES = (
    "eyj",  # JWT / JWS
    "-----begin ",  # PEM private key
    "akia",  # AWS access key id
    "asia",
    "gh",  # GitHub token
    "github_pat_",
    "xox",  # Slack
    "sk-",  # OpenAI/Anthropic-style
    "aiza",  # Google
    "k_live_",  # Stripe
    "://",  # password in a URL
    "bearer",
)


def looks_secret(text: str) -> bool:
    """True if `text` contains something shaped like a credential."""
    if text.isascii():
        lowered = text.lower()
        for needle in _SECRET_NEEDLES:
            if needle in lowered:
                break
        else:
            return False  # no alternative of the pattern can match
    return _SECRET_VALUE.search(text) is not None


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with secrets masked, strings cut and containers bounded."""
    if depth >= _MAX_DEPTH:
        return "[...]"
    if isinstance(value, dict):
        items = list(value.items())
        out: dict[str, Any] = {}
        for key, item in items[:_MAX_ITEMS]:
            out[str(key)] = REDACTED if is_sensitive_key(str(key)) else redact(item, depth + 1)
        if len(items) > _MAX_ITEMS:
            out["..."] = f"{len(items) - _MAX_ITEMS} more keys"
        return out
    if isinstance(value, list):
        head = [redact(item, depth + 1) for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            head.append(f"... {len(value) - _MAX_ITEMS} more items")
        return head
    if isinstance(value, str):
        if looks_secret(value):
            return REDACTED
        if len(value) > _MAX_STRING:
            return f"{value[:_MAX_STRING]}...({len(value)} chars)"
        return value
    return value


def preview(value: Any, max_chars: int = 512) -> str:
    """A redacted, bounded JSON preview of `value`."""
    text = orjson.dumps(redact(value), option=orjson.OPT_SORT_KEYS).decode()
    if len(text) > max_chars:
        return text[:max_chars] + "..."
    return text


def preview_text(text: str, max_chars: int = 256) -> str:
    """A redacted, bounded preview of free text (a justification)."""
    if looks_secret(text):
        text = _SECRET_VALUE.sub(REDACTED, text)
    return text if len(text) <= max_chars else text[:max_chars] + "..."
