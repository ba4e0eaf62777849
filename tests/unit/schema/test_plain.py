"""The quick check of plain schemas: "valid" only where jsonschema says valid, else not sure."""

from __future__ import annotations

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
    [{"enum": [1, "x"]}, {"minimum": 2}, {"format": "email"}, {"pattern": "^x"}, {"anyOf": [{}]},
     {"additionalProperties": False}, {"type": ["string", "null"]}, {"const": None}]
)  # fmt: skip


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
    return st.tuples(keyword, ANNOTATIONS, st.none() | OTHER).map(
        lambda parts: {**parts[0], **parts[1], **(parts[2] or {})}
    )


SCHEMAS = st.recursive(st.just({}) | st.just(True) | TYPES.map(lambda t: {"type": t}), _schema)
SCALARS = st.sampled_from([None, True, False, 0, 1, -7, 1.0, 2.5, "", "x", "a@b.example"])
INSTANCES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(NAMES, children, max_size=4)
        | st.tuples(children).map(tuple)
    ),
    max_leaves=12,
)


@settings(max_examples=1500)
@given(SCHEMAS, INSTANCES)
def test_quick_valid_only_where_jsonschema_says_valid(schema: Any, instance: Any) -> None:
    check = plain_check(schema)
    valid = Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(instance)
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
