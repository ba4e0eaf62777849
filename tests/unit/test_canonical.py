"""Canonical JSON (RFC 8785): one value, one byte string, one hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.canonical import (
    canonical_json,
    canonical_json_ascii_keys,
    canonical_sha256,
    sha256_hex,
)
from ztgate.errors import InvalidInputError
from ztgate.jsonlimits import parse_json

SAFE = 2**53 - 1

# Strings without lone surrogates (those cannot be UTF-8 and have no canonical form).
texts = st.text(st.characters(codec="utf-8"), max_size=12)
safe_ints = st.integers(-SAFE, SAFE)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | safe_ints | finite_floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
# Floats below 2**53 in magnitude: their canonical text never reads back as an
# integer outside the safe range (see test_large_integral_numbers_* below).
small_floats = st.floats(min_value=-SAFE, max_value=SAFE)
small_values = st.recursive(
    st.none() | st.booleans() | safe_ints | small_floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
# The values orjson can write directly (no floats), with ASCII and non-ASCII keys.
integral_values = st.recursive(
    st.none() | st.booleans() | safe_ints | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)

# Python strings may hold lone surrogates; JSON text cannot.
any_texts = st.text(max_size=6) | st.builds(
    str.__add__, st.text(max_size=3), st.sampled_from(["\ud800", "\udc00", "\udfff"])
)

WHITESPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n  ", "   "])


def spell(value: Any, draw: Any) -> str:
    """Write `value` as JSON text, choosing key order, whitespace and number spelling at random."""
    ws = lambda: draw(WHITESPACE)  # noqa: E731
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return draw(st.sampled_from([str(value), f"{value}.0", f"{value}e0", f"{value * 10}E-1"]))
    if isinstance(value, float):
        options = [repr(value), f"{value:.17e}"]
        if abs(value) <= SAFE:
            options.append(f"{value:.17g}")
            if value.is_integer():
                options.append(str(int(value)))
        return draw(st.sampled_from(options))
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=draw(st.booleans()))
        return text.replace("/", "\\/") if draw(st.booleans()) else text
    if isinstance(value, list):
        return "[" + ws() + ("," + ws()).join(spell(v, draw) + ws() for v in value) + "]"
    items = draw(st.permutations(list(value.items())))
    members = [spell(k, draw) + ws() + ":" + ws() + spell(v, draw) + ws() for k, v in items]
    return "{" + ws() + ("," + ws()).join(members) + "}"


@settings(max_examples=150, deadline=None)
@given(value=json_values, data=st.data())
def test_spelling_does_not_change_the_hash(value: Any, data: st.DataObject) -> None:
    text = spell(value, data.draw)
    reparsed = parse_json(text.encode(), max_depth=64)
    assert canonical_json(reparsed) == canonical_json(value)
    assert canonical_sha256(reparsed) == canonical_sha256(value)


@settings(max_examples=150, deadline=None)
@given(value=json_values)
def test_canonical_form_is_the_rfc8785_reference_form(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=150, deadline=None)
@given(value=integral_values)
def test_float_free_values_match_the_reference_form(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=150, deadline=None)
@given(value=small_values)
def test_canonical_form_is_a_fixed_point(value: Any) -> None:
    once = canonical_json(value)
    assert canonical_json(parse_json(once, max_depth=64)) == once


@pytest.mark.parametrize(
    ("integer", "double"),
    [(2**53, 2.0**53), (10**16, 1e16), (-(10**17), -1e17), (2**64, 2.0**64), (10**20, 1e20)],
)
def test_large_integral_numbers_hash_alike_however_spelled(integer: int, double: float) -> None:
    """An integer that is exactly an IEEE 754 double is that double (RFC 8785 section 3.2.2.3).

    "1e16" is accepted, so "10000000000000000" (the same JSON number, and the canonical
    form of "1e16" itself) must be too.
    """
    assert float(integer) == double
    assert canonical_json(integer) == canonical_json(double)
    canonical = canonical_json(double)
    assert canonical_json(parse_json(canonical, max_depth=1)) == canonical


@pytest.mark.parametrize("integer", [2**53 + 1, -(2**53 + 1), 10**16 + 1, 2**64 + 1])
def test_integers_a_double_cannot_hold_are_refused(integer: int) -> None:
    """Rounding would give two different argument values the same hash."""
    with pytest.raises(InvalidInputError):
        canonical_json(integer)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ('{"b":1,"a":2}', '{"a":2,"b":1}'),
        ('{ "a" :\n[ 1 ,\t2 ] }', '{"a":[1,2]}'),
        ('{"a":1.0}', '{"a":1}'),
        ("[1e2]", "[100]"),
        ("[1E+2]", "[100]"),
        ("[100e-2]", "[1]"),
        ("[0.1]", "[1e-1]"),
        ("[-0.0]", "[0]"),
        ("[1.50]", "[1.5]"),
        ('"\\u0041\\/"', '"A/"'),
        ('{"\\u00e9":1}', '{"é":1}'),
        ('{"x":{"z":1,"y":[true,null]}}', '{"x":{"y":[true,null],"z":1}}'),
    ],
)
def test_equivalent_documents_hash_alike(left: str, right: str) -> None:
    parse = lambda text: parse_json(text.encode(), max_depth=8)  # noqa: E731
    assert canonical_sha256(parse(left)) == canonical_sha256(parse(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("[1]", '["1"]'),
        ("[true]", "[1]"),
        ("[null]", "[0]"),
        ('{"a":1}', '{"A":1}'),
        ("[1,2]", "[2,1]"),
        ('{"a":null}', "{}"),
        ("[0.1]", "[0.10000000000000002]"),
        ('"a b"', '"ab"'),
    ],
)
def test_different_documents_hash_differently(left: str, right: str) -> None:
    parse = lambda text: parse_json(text.encode(), max_depth=8)  # noqa: E731
    assert canonical_sha256(parse(left)) != canonical_sha256(parse(right))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1.0, "x", None, True]}, b'{"a":[1,"x",null,true],"b":1}'),
        (1e21, b"1e+21"),
        (1e-7, b"1e-7"),
        (0.000001, b"0.000001"),
        (333333333.33333329, b"333333333.3333333"),
        (-0.0, b"0"),
        (SAFE, b"9007199254740991"),
        ("\u2028\x00\x1f\x7f", b'"\xe2\x80\xa8\\u0000\\u001f\x7f"'),
        ('\b\f\n\r\t"\\', b'"\\b\\f\\n\\r\\t\\"\\\\"'),
        ([], b"[]"),
        ({}, b"{}"),
    ],
)
def test_known_canonical_forms(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


def test_keys_sort_by_utf16_code_units() -> None:
    """RFC 8785 section 3.2.3: U+1F600 (D83D DE00 in UTF-16) sorts before U+FB02."""
    value = {"€": 1, "\r": 2, "ﬂ": 3, "1": 4, "😀": 5, "\u0080": 6, "ö": 7, "z": 8}
    keys = list(json.loads(canonical_json(value)))
    assert keys == ["\r", "1", "z", "\u0080", "ö", "€", "😀", "ﬂ"]


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {"n": math.nan},
        {1: "a"},
        {None: "a"},
        {1, 2},
        b"bytes",
        object(),
        {"big": 2**64 + 1},
        "\ud800",
        {"a": ["\udc00"]},
        {"\ud800": 1},
    ],
    # Stable ids (an object's repr holds its address): xdist's workers must agree.
    ids=lambda v: "object()" if type(v) is object else repr(v)[:30],
)
def test_values_without_a_canonical_form_are_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="no canonical JSON form"):
        canonical_json(value)


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | any_texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    )
)
def test_canonical_json_raises_only_invalid_input(value: Any) -> None:
    """Arbitrary Python values (lone surrogates, NaN, huge ints) never escape as other errors."""
    with contextlib.suppress(InvalidInputError):
        canonical_json(value)


ascii_keys = st.text(st.characters(max_codepoint=127, exclude_categories=["Cs"]), max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.dictionaries(
        ascii_keys,
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | any_texts,
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(any_texts, inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=5,
    )
)
def test_ascii_keys_form_is_the_canonical_form(fields: dict[str, Any]) -> None:
    """Only the top-level keys go unchecked: values of every kind, nested keys of any text."""
    try:
        expected: bytes | None = canonical_json(fields)
    except InvalidInputError:
        expected = None

    if expected is None:
        with pytest.raises(InvalidInputError):
            canonical_json_ascii_keys(fields)
    else:
        assert canonical_json_ascii_keys(fields) == expected


def test_sha256_hex_is_lowercase_hex_sha256() -> None:
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_canonical_sha256_hashes_the_canonical_bytes() -> None:
    value = {"z": [3, 2.5], "a": "x"}
    assert canonical_sha256(value) == hashlib.sha256(b'{"a":"x","z":[3,2.5]}').hexdigest()
    assert canonical_sha256({}) == hashlib.sha256(b"{}").hexdigest()
