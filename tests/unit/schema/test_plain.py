"""The quick check of plain schemas: "valid" only where jsonschema says valid, else not sure."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from ztgate.models import Outcome, ToolResult
from ztgate.pipeline import CallContext
from ztgate.schema.check import ArgumentsSchemaCheck, ResultSchemaCheck
from ztgate.schema.plain import plain_check
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog

NAMES = st.sampled_from(["a", "b", "c", "type", "items"])
TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array"])
ANNOTATIONS = st.fixed_dictionaries(
    {}, optional={"title": st.just("T"), "description": st.just("d"), "default": st.just(1)}
)
# Now and then a keyword the quick check does not know: then it must stand aside.
OTHER = st.sampled_from(
    [{"enum": [1, "x"]}, {"pattern": "^x"}, {"anyOf": [{}]}, {"additionalProperties": False},
     {"type": ["string", "null"]}, {"const": None}, {"maxLength": 2.5}, {"minimum": float("inf")},
     {"minimum": True}, {"format": 1}]
)  # fmt: skip
# String and number bounds and formats, which it checks as jsonschema does.
BOUND = st.sampled_from([-2, -1.5, 0, 0.5, 1, 2, 2.5, 7, 10**20])
SCALAR_KEYWORDS = st.fixed_dictionaries(
    {},
    optional={
        "minLength": st.integers(0, 4),
        "maxLength": st.integers(0, 4),
        "minimum": BOUND,
        "maximum": BOUND,
        "exclusiveMinimum": BOUND,
        "exclusiveMaximum": BOUND,
        "format": st.sampled_from(["email", "ipv4", "date", "no-such-format"]),
    },
)
FORMATS = FormatChecker()


def _schema(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keyword = st.fixed_dictionaries(
        {},
        optional={
            "type": TYPES,
            "properties": st.dictionaries(NAMES, children, max_size=3),
            "required": st.lists(NAMES, max_size=3),
            "additionalProperties": st.booleans() | children,
            "items": children,
        },
    )
    return st.tuples(keyword, ANNOTATIONS, SCALAR_KEYWORDS, st.none() | OTHER).map(
        lambda parts: {**parts[0], **parts[1], **parts[2], **(parts[3] or {})}
    )


SCHEMAS = st.recursive(st.just({}) | st.just(True) | TYPES.map(lambda t: {"type": t}), _schema)
SCALARS = st.sampled_from(
    [None, True, False, 0, 1, -7, 1.0, 2.5, -1.5, 2, 7, 10**20, 10.0**20, "", "x", "é", "xyz",
     "a@b.example", "1.2.3.4", "2024-02-30", "2024-02-29", "abcde"]
)  # fmt: skip
INSTANCES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(NAMES, children, max_size=4)
        | st.tuples(children).map(tuple)
    ),
    max_leaves=12,
)


@settings(max_examples=600)
@given(SCHEMAS, INSTANCES)
def test_quick_valid_only_where_jsonschema_says_valid(schema: Any, instance: Any) -> None:
    check = plain_check(schema, FORMATS)
    valid = Draft202012Validator(schema, format_checker=FORMATS).is_valid(instance)
    if check is not None and check(instance):
        assert valid
    if not valid and check is not None:
        assert not check(instance)


@settings(max_examples=500)
@given(SCHEMAS)
def test_plain_schemas_answer_their_own_plain_instances(schema: Any) -> None:
    # Not a security property: the quick path is taken for the common case.
    check = plain_check(schema)
    if check is not None and schema in ({}, True):
        assert check({"a": 1}) and check([1, "x"]) and check("x")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"enum": [1]}}},
        {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
        {"$ref": "#/$defs/x", "$defs": {"x": {}}},
        {"type": ["object", "null"]},
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"},
        {"items": [{"type": "string"}]},
        False,
    ],
)
def test_other_schemas_are_left_to_jsonschema(schema: Any) -> None:
    assert plain_check(schema) is None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 2.0},
        {"type": "string", "minLength": -1},
        {"type": "integer", "maximum": float("nan")},
        {"type": "integer", "minimum": "1"},
        {"type": "string", "format": ["email"]},
    ],
)
def test_bounds_jsonschema_might_read_otherwise_are_left_to_it(schema: Any) -> None:
    assert plain_check(schema, FORMATS) is None


BOUNDED = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "format": "email", "maxLength": 254},
        "subject": {"type": "string", "maxLength": 5},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    },
    "required": ["to"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("instance", "quick"),
    [
        ({"to": "a@b.example", "subject": "hello", "priority": 5, "ratio": 0.5}, True),
        ({"to": "a@b.example", "subject": "hello!"}, False),  # too long
        ({"to": "no-at-sign"}, False),  # not an e-mail address
        ({"to": "a@b.example", "priority": 0}, False),
        ({"to": "a@b.example", "priority": 6}, False),
        ({"to": "a@b.example", "ratio": 1}, False),
        ({"to": "a@b.example", "ratio": 0.0}, False),
    ],
)
def test_bounded_schemas_are_checked_quickly_and_exactly(instance: Any, quick: bool) -> None:
    check = plain_check(BOUNDED, FORMATS)
    assert check is not None
    assert check(instance) is quick
    assert Draft202012Validator(BOUNDED, format_checker=FORMATS).is_valid(instance) is quick


MCP_SCHEMA = {
    "properties": {
        "to": {"title": "To", "type": "string"},
        "subject": {"title": "Subject", "type": "string"},
        "body": {"title": "Body", "type": "string"},
        "priority": {"default": 1, "title": "Priority", "type": "integer"},
    },
    "required": ["to", "subject", "body"],
    "title": "echoArguments",
    "type": "object",
}


@pytest.mark.parametrize(
    ("arguments", "allowed"),
    [
        ({"to": "a@b.example", "subject": "s", "body": "b", "priority": 2}, True),
        ({"to": "a@b.example", "subject": "s", "body": "b", "priority": 2.0}, True),  # jsonschema's
        ({"to": "a@b.example", "subject": "s", "body": "b", "priority": True}, False),
        ({"to": "a@b.example", "subject": "s"}, False),
        ({"to": 1, "subject": "s", "body": "b"}, False),
    ],
)
async def test_the_checks_answer_as_jsonschema_does(
    arguments: dict[str, Any], allowed: bool
) -> None:
    tool = make_tool("echo", schema=MCP_SCHEMA, output_schema=MCP_SCHEMA)
    entry = Catalog([tool]).get("echo")
    assert entry is not None and entry.plain_arguments is not None
    ctx = CallContext(FrozenClock(), tool=entry)
    verdict = await ArgumentsSchemaCheck()(make_call("echo", arguments), ctx)
    review = await ResultSchemaCheck()(make_call("echo"), ToolResult(200, arguments), ctx)
    expected = Outcome.ALLOW if allowed else Outcome.DENY
    assert verdict.outcome is expected and review.outcome is expected
    if not allowed:  # the reason is jsonschema's, as before
        assert verdict.reason.startswith("arguments do not match the schema of 'echo': at /")


@pytest.mark.parametrize("number", [Decimal("6"), Fraction(6, 1), Decimal("1")])
def test_numbers_of_other_types_are_not_sure(number: Any) -> None:
    # jsonschema bounds any number (a Decimal from a custom decoder too); the
    # quick check knows only int and float and stands aside for the rest.
    check = plain_check({"maximum": 5}, FORMATS)
    assert check is not None
    assert check(number) is False
    assert check(5) is True and check(True) is True  # a bool is no number to jsonschema
