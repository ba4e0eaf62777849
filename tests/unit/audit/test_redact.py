"""Argument previews: sensitive keys and secret-shaped values masked, sizes bounded, linear time."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.audit.redact import (
    _SECRET_VALUE,
    REDACTED,
    is_sensitive_key,
    looks_secret,
    preview,
    preview_text,
    redact,
)

# Built from pieces so that no secret scanner flags this file.
JWT = "eyJhbGciOiJFUzI1NiJ9" + "." + "eyJzdWIiOiJhZ2VudCJ9" + "." + "c2lnbmF0dXJlLWJ5dGVz"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
OPENAI = "sk-" + "proj-abcdefghijklmnopqrstuvwxyz0123"
PEM = "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEow..."
PEM_PLAIN = "-----BEGIN " + "PRIVATE KEY-----"
URL_PASSWORD = "postgres://admin:" + "hunter2@db.internal:5432/app"
BEARER = "Bearer " + "abcdefghijklmnopqrstuvwx.yz"
SLACK = "xoxb-" + "123456789012-abcdefghij"
GOOGLE = "AIza" + "SyA1234567890abcdefghijklmnopqrstuv"
STRIPE = "sk_live_" + "abcdefghijklmnopqrstuvwx"

SECRETS = {
    "jwt": JWT,
    "aws": AWS,
    "github": GITHUB,
    "github_pat": GITHUB_PAT,
    "openai": OPENAI,
    "pem": PEM,
    "pem_plain": PEM_PLAIN,
    "url_password": URL_PASSWORD,
    "bearer": BEARER,
    "bearer_lower": BEARER.lower(),
    "slack": SLACK,
    "google": GOOGLE,
    "stripe": STRIPE,
}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "PASSWORD",
        "passwd",
        "passphrase",
        "pass",
        "db_password",
        "userPassword",
        "accessToken",
        "access_token",
        "refresh-token",
        "token",
        "x-api-key",
        "X-API-Key",
        "apiKey",
        "api_key",
        "apikey",
        "Authorization",
        "proxy-authorization",
        "auth",
        "private_key",
        "privateKey",
        "PRIVATE-KEY",
        "client_secret",
        "secretKey",
        "Cookie",
        "Set-Cookie",
        "credentials",
        "aws_credential",
        "signature",
        "ssn",
        "card_number",
        "cardNumber",
        "cvv",
        "pin",
        "pin_code",
    ],
)
def test_sensitive_keys_are_masked(key: str) -> None:
    assert is_sensitive_key(key)
    assert redact({key: "plain value"}) == {key: REDACTED}


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authority",
        "shipping",
        "spinner",
        "opinion",
        "tokenizer",
        "tokens_used",
        "compass",
        "bypass_cache",
        "passenger",
        "secretary",
        "cookies_enabled",
        "keyboard",
        "monkey",
        "description",
        "signed_at",
        "city",
        "to",
        "subject",
    ],
)
def test_look_alike_keys_are_kept(key: str) -> None:
    assert not is_sensitive_key(key)
    assert redact({key: "plain value"}) == {key: "plain value"}


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], 1234, None, True, ""])
def test_a_sensitive_key_masks_any_value(value: Any) -> None:
    assert redact({"password": value, "pin": value}) == {"password": REDACTED, "pin": REDACTED}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_shaped_values_are_masked_anywhere(name: str) -> None:
    secret = SECRETS[name]
    arguments = {
        "to": "bob@example.com",
        "body": secret,
        "nested": [{"deep": {"deeper": [f"please use {secret} now"]}}],
    }

    shown = preview(arguments)

    assert looks_secret(secret)
    assert redact(arguments)["body"] == REDACTED
    assert redact(arguments)["nested"][0]["deep"]["deeper"] == [REDACTED]
    assert secret not in shown
    assert secret[: min(len(secret), 12)] not in shown
    assert "bob@example.com" in shown


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_free_text_keeps_its_words_and_loses_the_secret(name: str) -> None:
    secret = SECRETS[name]

    shown = preview_text(f"sending with {secret} as asked")

    assert secret not in shown
    assert REDACTED in shown
    assert shown.startswith("sending with ")


def test_a_secret_beyond_the_string_cut_is_still_masked() -> None:
    long_value = "x" * 200 + " " + GITHUB

    assert redact(long_value) == REDACTED
    assert redact([long_value]) == [REDACTED]


def test_a_secret_beyond_the_text_limit_is_masked_before_cutting() -> None:
    text = "y" * 250 + " " + JWT

    shown = preview_text(text, max_chars=256)

    assert JWT[:6] not in shown[250:]


@pytest.mark.parametrize(
    "value",
    [
        "hello world",
        "https://example.com/path?q=1",
        "https://user@example.com/only-a-user",
        "bob@example.com",
        "task-abcdefghijklmnopqrstuvwxyz",
        "eyJ",
        "AKIA123",
        "bearer short",
        "sk-short",
        "The forecast for Paris is light rain",
    ],
)
def test_ordinary_values_are_kept(value: str) -> None:
    assert not looks_secret(value)
    assert redact({"text": value}) == {"text": value}
    assert preview_text(value) == value


def test_long_strings_are_cut_with_their_length() -> None:
    value = "a" * 100

    shown = redact(value)

    assert shown == "a" * 64 + "...(100 chars)"
    assert redact("b" * 64) == "b" * 64


def test_containers_are_bounded() -> None:
    shown = redact({"items": list(range(20)), "map": {f"k{i:02d}": i for i in range(20)}})

    assert shown["items"] == [*range(16), "... 4 more items"]
    assert len(shown["map"]) == 17
    assert shown["map"]["..."] == "4 more keys"
    assert "k16" not in shown["map"]


def test_deep_nesting_is_cut() -> None:
    value: Any = "leaf"
    for _ in range(20):
        value = {"d": value}

    shown = redact(value)

    depth = 0
    while isinstance(shown, dict):
        shown = shown["d"]
        depth += 1
    assert shown == "[...]"
    assert depth <= 6


@pytest.mark.parametrize("max_chars", [16, 100, 512])
def test_preview_is_bounded_and_masked(max_chars: int) -> None:
    big = {f"key{i}": [f"value {j} " * 40 for j in range(30)] for i in range(30)}
    big["token"] = "s3cr3t-value"

    shown = preview(big, max_chars=max_chars)

    assert len(shown) <= max_chars + 3
    assert "s3cr3t" not in shown
    assert shown.endswith("...")


def test_small_preview_is_whole_sorted_json() -> None:
    shown = preview({"subject": "hi", "password": "pw", "to": "bob@example.com"})

    assert orjson.loads(shown) == {"password": REDACTED, "subject": "hi", "to": "bob@example.com"}
    assert shown.index('"password"') < shown.index('"subject"') < shown.index('"to"')


def test_preview_text_is_bounded() -> None:
    assert len(preview_text("z" * 10_000, max_chars=256)) == 259
    assert preview_text("short") == "short"


# -- adversarial inputs run in linear time --------------------------------------

SIZE = 256 * 1024
ADVERSARIAL = [
    "a",
    "-",
    "://",
    "://a:",
    "bearer ",
    "sk-",
    "ghp_",
    "AKIA",
    "@:",
    "-----BEGIN ",
    "eyJ",
    "eyJaaaaa.",
]


class _TooSlow(Exception):
    pass


def _work(text: str) -> None:
    preview_text(text)
    redact(text)


@pytest.fixture(scope="module")
def linear_cost() -> float:
    """Seconds that linear work on SIZE characters of prose takes on this machine."""
    prose = ("The quick brown fox jumps over the lazy dog. " * (SIZE // 45 + 1))[:SIZE]
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        _work(prose)
        runs.append(time.perf_counter() - start)
    return min(runs)


@pytest.fixture
def time_limit() -> Iterator[Callable[[float], None]]:
    """Interrupt the test (SIGALRM; the regex engine checks signals) after a budget."""

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, on_alarm)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_adversarial_input_runs_in_linear_time(
    unit: str, linear_cost: float, time_limit: Callable[[float], None]
) -> None:
    text = (unit * (SIZE // len(unit) + 1))[:SIZE]
    # Generous: 15x the cost of the same length of prose, and at least 1 s. A
    # quadratic pattern needs minutes on 256 KB; a linear one stays within a
    # small factor of prose.
    budget = max(1.0, 15 * linear_cost)

    time_limit(budget)
    try:
        _work(text)
    except _TooSlow:
        pytest.fail(f"redacting {SIZE} characters of {unit!r} took over {budget:.1f} s")


def test_a_huge_key_is_checked_in_linear_time(
    linear_cost: float, time_limit: Callable[[float], None]
) -> None:
    budget = max(1.0, 15 * linear_cost)
    time_limit(budget)
    try:
        for unit in ("aA", "_", "pass_", "Ab1"):
            is_sensitive_key((unit * (SIZE // len(unit)))[:SIZE])
    except _TooSlow:
        pytest.fail(f"checking {SIZE}-character keys took over {budget:.1f} s")


# Pieces of every kind of secret the pattern knows, in both cases and cut at
# random, among ordinary words, separators and a few letters other scripts
# fold to ASCII ones (the Kelvin sign, the long s, a dotless i).
_PIECES = [
    *SECRETS.values(),
    *(value[:cut] for value in SECRETS.values() for cut in (2, 3, 4, 5, 8)),
    *(value[cut:] for value in SECRETS.values() for cut in (1, 3, 4)),
    "eyJ", "EYJ", "-----BEGIN ", "-----begin ", "PRIVATE KEY-----", "AKIA", "asia", "gh", "GH",
    "p_", "github_pat_", "xox", "XOXB-", "sk-", "SK-", "AIza", "aiza", "rk_live_", "k_LIVE_",
    "://", "bearer ", "BEARER\t", "@", ":", ".", "-", "_", " ", "/", "a", "Z", "0", "9",
    "abcdefghijklmnopqrstuvwxyz0123456789", "ABCDEFGHIJKLMNOP", "hello", "report",
    "\u212a", "\u017f", "\u0131", "\u0130", "\u00e9",
]  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=6), max_size=12).map("".join))
def test_looks_secret_says_what_the_pattern_says(text: str) -> None:
    # The substring pre-check only ever skips text the pattern cannot match.
    assert looks_secret(text) == (_SECRET_VALUE.search(text) is not None)
