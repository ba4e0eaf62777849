"""Parsing untrusted JSON: strict UTF-8, a depth limit, one exception type."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.errors import InvalidInputError
from ztgate.jsonlimits import JsonTooDeepError, json_depth_exceeds, parse_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"), max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


def depth(value: Any) -> int:
    """Reference: how many containers deep `value` nests (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def chain_depth(value: Any) -> int:
    """How deep a single chain of containers goes (no recursion)."""
    levels = 0
    while isinstance(value, dict | list):
        levels += 1
        children = list(value.values()) if isinstance(value, dict) else value
        value = children[0] if children else None
    return levels


def nested_lists(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def nested_objects(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def nested_mixed(levels: int) -> bytes:
    opening = "".join('{"k":' if i % 2 else "[" for i in range(levels))
    closing = "".join("}" if i % 2 else "]" for i in reversed(range(levels)))
    return (opening + "1" + closing).encode()


# -- arbitrary input -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), max_depth=st.integers(1, 8))
def test_arbitrary_bytes_raise_only_invalid_input(data: bytes, max_depth: int) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_json(data, max_depth=max_depth)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.sampled_from(list('{}[]":,-+.0123456789eEtrufalsn\\ \n\t\x00é')), max_size=40),
    max_depth=st.integers(1, 4),
)
def test_json_like_text_raises_only_invalid_input(text: str, max_depth: int) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_json(text.encode(), max_depth=max_depth)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_valid_documents_round_trip(value: Any) -> None:
    assert parse_json(json.dumps(value).encode(), max_depth=64) == value


# -- depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [nested_lists, nested_objects, nested_mixed])
@pytest.mark.parametrize("limit", [1, 2, 3, 32, 512])
def test_depth_equal_to_the_limit_passes(build: Any, limit: int) -> None:
    value = parse_json(build(limit), max_depth=limit)
    assert chain_depth(value) == limit


@pytest.mark.parametrize("build", [nested_lists, nested_objects, nested_mixed])
@pytest.mark.parametrize("limit", [1, 2, 3, 32, 512])
def test_depth_one_over_the_limit_fails(build: Any, limit: int) -> None:
    with pytest.raises(JsonTooDeepError) as caught:
        parse_json(build(limit + 1), max_depth=limit)
    assert caught.value.limit == limit
    assert str(limit) in caught.value.message


def test_too_deep_is_invalid_input() -> None:
    assert issubclass(JsonTooDeepError, InvalidInputError)


@pytest.mark.parametrize("document", [b"1", b'"x"', b"null", b"true", b"-2.5e3"])
def test_scalars_pass_any_limit(document: bytes) -> None:
    assert parse_json(document, max_depth=1) == json.loads(document)


def test_the_deepest_branch_counts_not_the_first() -> None:
    document = b'[[], {"a": [[]]}, [1]]'  # depth 4, in the middle branch
    assert parse_json(document, max_depth=4) == [[], {"a": [[]]}, [1]]
    with pytest.raises(JsonTooDeepError):
        parse_json(document, max_depth=3)


def test_empty_containers_count_as_a_level() -> None:
    with pytest.raises(JsonTooDeepError):
        parse_json(b'{"a": {}}', max_depth=1)
    with pytest.raises(JsonTooDeepError):
        parse_json(b"[[]]", max_depth=1)


def test_a_wide_document_is_not_deep() -> None:
    document = json.dumps([[i] for i in range(5000)]).encode()
    assert len(parse_json(document, max_depth=2)) == 5000


@pytest.mark.parametrize("levels", [600, 1100, 5000])
def test_nesting_far_beyond_the_limit_is_reported_as_too_deep(levels: int) -> None:
    """However deep, too deep is `JsonTooDeepError` (the front door answers json-too-deep)."""
    with pytest.raises(JsonTooDeepError):
        parse_json(nested_lists(levels), max_depth=32)


@settings(max_examples=200, deadline=None)
@given(value=json_values, limit=st.integers(1, 6))
def test_json_depth_exceeds_agrees_with_a_recursive_reference(value: Any, limit: int) -> None:
    assert json_depth_exceeds(value, limit) is (depth(value) > limit)


def test_json_depth_exceeds_handles_very_deep_values_without_recursion() -> None:
    value: Any = []
    for _ in range(100_000):
        value = [value]
    assert json_depth_exceeds(value, 512)
    assert not json_depth_exceeds(value, 100_001)


# -- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b'"\xff"',
        b'"\xc3"',  # truncated two-byte sequence
        b'"\xc0\xaf"',  # overlong encoding of "/"
        b'"\xe0\x80\xaf"',  # overlong, three bytes
        b'"\xf5\x80\x80\x80"',  # beyond U+10FFFF
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 (CESU-8)
        b'{"\xfe": 1}',
        b'["ok", "\x80"]',
        '"é"'.encode("latin-1"),
        '{"a": "é"}'.encode("utf-16"),
    ],
)
def test_invalid_utf8_is_rejected(document: bytes) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_json(document, max_depth=4)
    assert not isinstance(caught.value, JsonTooDeepError)


@pytest.mark.parametrize(
    "document",
    [
        b'"\\ud800"',
        b'"\\udc00"',
        b'"\\udfff x"',
        b'"\\ud800\\u0041"',
        b'"\\udc00\\ud800"',  # a pair in the wrong order
        b'{"\\ud83d": 1}',
        b'["\\ud83dx"]',
    ],
)
def test_lone_surrogate_escapes_are_rejected(document: bytes) -> None:
    with pytest.raises(InvalidInputError):
        parse_json(document, max_depth=4)


def test_a_surrogate_pair_escape_is_one_character() -> None:
    assert parse_json(b'"\\ud83d\\ude00"', max_depth=1) == "\U0001f600"


def test_utf8_is_accepted() -> None:
    assert parse_json('{"città": "Zürich 😀"}'.encode(), max_depth=1) == {"città": "Zürich 😀"}


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b" ",
        b"{",
        b"[1,]",
        b"{'a': 1}",
        b'{"a" 1}',
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"01",
        b"[1] [2]",
        b'"unterminated',
        b"\xef\xbb\xbf{}",  # byte order mark
        b'"tab\there"',  # raw control character in a string
    ],
)
def test_malformed_json_is_invalid_input(document: bytes) -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON") as caught:
        parse_json(document, max_depth=4)
    assert not isinstance(caught.value, JsonTooDeepError)


@pytest.mark.parametrize(
    "document",
    [b"18446744073709551617", b"-9223372036854775809", b"[100000000000000000000000000001]"],
)
def test_integers_outside_64_bits_are_rejected(document: bytes) -> None:
    """Not silently parsed as a rounded float (and then forwarded as a different number)."""
    with pytest.raises(InvalidInputError):
        parse_json(document, max_depth=1)


@pytest.mark.parametrize(
    ("document", "value"),
    [(b"18446744073709551616", 2**64), (b"-9223372036854775808", -(2**63))],
)
def test_integers_a_double_holds_exactly_are_accepted(document: bytes, value: int) -> None:
    assert parse_json(document, max_depth=1) == value


@pytest.mark.parametrize("document", [b"18446744073709551615", b"9007199254740993"])
def test_integers_a_double_would_round_are_refused(document: bytes) -> None:
    """I-JSON (RFC 7493): two parsers could read these as two different numbers."""
    with pytest.raises(InvalidInputError, match="exactly"):
        parse_json(document, max_depth=1)
