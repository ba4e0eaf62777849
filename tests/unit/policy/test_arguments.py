"""Arguments as Cedar values: typed, exact, and refused when they cannot be."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.policy.arguments import LONG_MAX, LONG_MIN, ArgumentTypeError, to_cedar
from ztgate.policy.schema import arguments_type

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "price": {"type": "number"},
        "ok": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "box": {
            "type": "object",
            "properties": {"w/h": {"type": "integer"}},
            "required": ["w/h"],
        },
        "maybe": {"type": ["integer", "null"]},
        "free": {},
    },
    "required": ["name"],
}
RECORD = arguments_type(SCHEMA)


def decimal(text: str) -> dict[str, Any]:
    return {"__extn": {"fn": "decimal", "arg": text}}


def test_typed_arguments_are_converted_and_others_left_out() -> None:
    values = {
        "name": "x",
        "count": 3,
        "price": 12.5,
        "ok": True,
        "tags": ["a", "b"],
        "box": {"w/h": 2, "extra": "dropped"},
        "maybe": None,
        "free": {"anything": [1, 2]},
        "undeclared": "dropped",
    }
    assert to_cedar(values, RECORD) == {
        "name": "x",
        "count": 3,
        "price": decimal("12.5"),
        "ok": True,
        "tags": ["a", "b"],
        "box": {"w/h": 2},
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.0"), (7, "7.0"), (-2.5, "-2.5"), (0.1, "0.1"), (1.2345, "1.2345"), (100.0, "100.0")],
)
def test_numbers_become_exact_decimals(value: float, text: str) -> None:
    assert to_cedar({"name": "n", "price": value}, RECORD)["price"] == decimal(text)


def test_a_whole_float_is_an_integer() -> None:
    assert to_cedar({"name": "n", "count": 4.0}, RECORD)["count"] == 4


@pytest.mark.parametrize(
    ("values", "pointer", "problem"),
    [
        ({"name": 5}, "/name", "should be a string for policy conditions, but is an integer"),
        ({"name": "n", "count": "5"}, "/count", "should be an integer"),
        ({"name": "n", "count": True}, "/count", "but is a boolean"),
        ({"name": "n", "count": 1.5}, "/count", "a number with a fraction"),
        ({"name": "n", "count": 2**63}, "/count", "outside Cedar's 64-bit integer range"),
        ({"name": "n", "price": 1.23456}, "/price", "more than 4 decimal places"),
        ({"name": "n", "price": 1e16}, "/price", "outside the range of a Cedar decimal"),
        ({"name": "n", "price": "1"}, "/price", "should be a number"),
        ({"name": "n", "ok": "yes"}, "/ok", "should be a boolean"),
        ({"name": "n", "tags": ["a", 1]}, "/tags/1", "should be a string"),
        ({"name": "n", "tags": "a"}, "/tags", "should be an array"),
        ({"name": "n", "box": {}}, "/box/w~1h", "is required by the tool's schema but missing"),
        ({"name": "n", "box": []}, "/box", "should be an object"),
        ({}, "/name", "is required"),
    ],
)
def test_a_value_of_another_type_is_refused_naming_the_argument(
    values: dict[str, Any], pointer: str, problem: str
) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        to_cedar(values, RECORD)
    assert caught.value.pointer == pointer
    assert problem in str(caught.value)
    for secret in ("yes", "1.23456"):
        assert secret not in str(caught.value)  # the reason never carries the value


@given(st.integers(min_value=LONG_MIN, max_value=LONG_MAX))
def test_every_long_passes_unchanged(value: int) -> None:
    assert to_cedar({"name": "n", "count": value}, RECORD)["count"] == value


@given(st.integers(min_value=-(10**14), max_value=10**14), st.integers(0, 9999))
def test_decimals_with_four_places_are_exact(whole: int, fraction: int) -> None:
    from decimal import Decimal

    text = f"{whole}.{fraction:04d}"
    value = float(text)
    if Decimal(repr(value)) != Decimal(text):
        return  # not exactly representable as a float: not what a client could send
    converted = to_cedar({"name": "n", "price": value}, RECORD)["price"]["__extn"]["arg"]
    assert Decimal(converted) == Decimal(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.0"), (3, "3.0"), (0.1 + 0.2, "0.3001"), (5.00001, "5.0001"), (2.5, "2.5")],
)
def test_amounts_round_up_to_four_places(value: float, text: str) -> None:
    from ztgate.policy.arguments import amount_value

    assert amount_value(value, "cost") == decimal(text)


def test_an_amount_out_of_range_is_refused_by_name() -> None:
    from ztgate.policy.arguments import amount_value

    with pytest.raises(ArgumentTypeError, match=r"^cost is outside the range"):
        amount_value(1e20, "cost")
