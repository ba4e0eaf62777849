"""The small TOML writer: whatever it writes, tomllib reads back as the same value."""

from __future__ import annotations

import math
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.cli.toml import array_of_tables, key, value


def round_trip(item: Any) -> Any:
    return tomllib.loads(f"v = {value(item)}\n")["v"]


@pytest.mark.parametrize(
    ("item", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (2**63 - 1, "9223372036854775807"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        ("plain", '"plain"'),
        ("", '""'),
        ([], "[]"),
        ([1, "a", True], '[1, "a", true]'),
        ({}, "{}"),
        ({"a": 1}, "{ a = 1 }"),
        ({"a": {"b": [1, 2]}}, "{ a = { b = [1, 2] } }"),
    ],
)
def test_values_are_written_as_toml(item: Any, text: str) -> None:
    assert value(item) == text
    assert round_trip(item) == item


def test_booleans_are_not_written_as_integers() -> None:
    assert round_trip(True) is True
    assert round_trip([False]) == [False] and round_trip([False])[0] is False


@pytest.mark.parametrize(
    "text",
    [
        'say "hi"',
        "back\\slash",
        "line one\nline two\r\n",
        "tab\there",
        "nul \x00 bell \x07 esc \x1b del \x7f",
        "café ünïcödé ✓ 中文 ключ",
        "\u2028\u2029\ufeff",
        "'single' and '''triple'''",
        '"""',
        "# not a comment",
        "key = value",
        "[[tools]]",
        "} ] {",
    ],
)
def test_strings_round_trip(text: str) -> None:
    written = value(text)
    assert "\n" not in written  # inline tables must stay on one line
    assert round_trip(text) == text


def test_characters_outside_the_basic_multilingual_plane_round_trip() -> None:
    """JSON's ASCII escapes spell these as surrogate pairs, which TOML forbids."""
    for text in ["😀", "emoji 🚀 in a description", "\U0001d518 math letters", "\U0010fffd"]:
        assert round_trip(text) == text
        assert tomllib.loads(f"{key(text)} = 1\n") == {text: 1}


@pytest.mark.parametrize(
    "number", [1e16, 1e-7, 123456789.125, -0.0, 5e-324, 1.7976931348623157e308]
)
def test_floats_round_trip_exactly(number: float) -> None:
    back = round_trip(number)
    assert isinstance(back, float)
    assert back == number and math.copysign(1, back) == math.copysign(1, number)


def test_infinities_round_trip() -> None:
    assert round_trip(math.inf) == math.inf
    assert round_trip(-math.inf) == -math.inf


@pytest.mark.parametrize("item", [None, (1, 2), {1, 2}, b"bytes", object()])
def test_what_toml_cannot_hold_is_refused(item: Any) -> None:
    with pytest.raises(TypeError, match="cannot write"):
        value(item)


def test_a_null_nested_anywhere_is_refused() -> None:
    with pytest.raises(TypeError):
        value({"a": [1, None]})


@pytest.mark.parametrize(
    ("name", "bare"),
    [
        ("name", True),
        ("input_schema", True),
        ("x-api-key", True),
        ("A1", True),
        ("a b", False),
        ("a.b", False),
        ("", False),
        ("ключ", False),
        ("a=b", False),
        ('quo"te', False),
        ("#", False),
    ],
)
def test_keys_are_bare_only_when_toml_allows(name: str, bare: bool) -> None:
    written = key(name)
    assert (written == name) is bare
    assert tomllib.loads(f"{written} = 1\n") == {name: 1}


def test_array_of_tables() -> None:
    entries = [
        {"name": "get_weather", "risk": "read", "input_schema": {"type": "object"}},
        {"name": "send email", "timeout_seconds": 2.5, "tags": ["a", "b"], "on": True},
    ]
    text = array_of_tables("tools", entries)
    assert text.startswith("[[tools]]\n")
    assert text.endswith("\n")
    assert text.count("[[tools]]") == 2
    assert tomllib.loads(text) == {"tools": entries}


def test_array_of_tables_follows_other_tables() -> None:
    text = "[gateway]\nport = 1\n\n" + array_of_tables("tools", [{"name": "a"}])
    assert tomllib.loads(text) == {"gateway": {"port": 1}, "tools": [{"name": "a"}]}


# Strings of the basic multilingual plane (what lies outside it is tested above).
_TEXT = st.text(st.characters(codec="utf-8", max_codepoint=0xFFFF), max_size=20)
_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | _TEXT
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_TEXT, children, max_size=5),
    max_leaves=20,
)


@given(JSON_LIKE)
def test_any_json_like_value_round_trips(item: Any) -> None:
    assert round_trip(item) == item


@given(st.dictionaries(_TEXT, JSON_LIKE, min_size=1, max_size=4))
def test_any_table_round_trips_as_an_array_of_tables(entry: dict[str, Any]) -> None:
    assert tomllib.loads(array_of_tables("t", [entry, entry])) == {"t": [entry, entry]}
