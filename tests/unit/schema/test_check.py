"""Argument and result schema checks: deny outside the schema, never echo the value."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.models import Outcome, ToolResult
from ztgate.pipeline import CallContext
from ztgate.schema.check import ArgumentsSchemaCheck, ResultSchemaCheck, describe
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20, "pattern": "^[A-Za-z ]+$"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "units": {"enum": ["metric", "imperial"]},
        "mode": {"const": "fast"},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
        "nested": {
            "type": "object",
            "properties": {"token": {"type": "integer"}},
            "additionalProperties": False,
        },
        "choice": {"oneOf": [{"type": "integer"}, {"type": "boolean"}]},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def context(clock: FrozenClock, **tool: Any) -> CallContext:
    catalog = Catalog([make_tool("weather", schema=SCHEMA, **tool)])
    return CallContext(clock, tool=catalog.get("weather"))


@pytest.fixture
def ctx(clock: FrozenClock) -> CallContext:
    return context(clock)


async def test_unknown_tool_is_denied(clock: FrozenClock) -> None:
    verdict = await ArgumentsSchemaCheck()(make_call("ghost"), CallContext(clock))
    assert verdict.outcome is Outcome.DENY
    assert verdict.check == "schema"
    assert verdict.reason == "unknown tool 'ghost'"


async def test_disabled_tool_is_denied(clock: FrozenClock) -> None:
    ctx = context(clock, enabled=False)
    verdict = await ArgumentsSchemaCheck()(make_call("weather", {"city": "Oslo"}), ctx)
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason == "tool 'weather' is disabled"


@pytest.mark.parametrize(
    "arguments",
    [
        {"city": "Oslo"},
        {"city": "New York", "days": 7, "units": "metric", "mode": "fast"},
        {"city": "Oslo", "tags": ["a", "bb"], "nested": {"token": 3}, "choice": True},
        {"city": "Oslo", "email": "someone@example.com"},
    ],
)
async def test_valid_arguments_are_allowed(ctx: CallContext, arguments: dict[str, Any]) -> None:
    verdict = await ArgumentsSchemaCheck()(make_call("weather", arguments), ctx)
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.check == "schema"


@pytest.mark.parametrize(
    ("arguments", "where"),
    [
        pytest.param({"city": "Oslo", "days": SECRET}, "at /days: violates type", id="type"),
        pytest.param({"city": SECRET + "!"}, "at /city: violates", id="pattern-and-length"),
        pytest.param({"city": "Oslo", "units": SECRET}, "at /units: violates enum", id="enum"),
        pytest.param({"city": "Oslo", "mode": SECRET}, "at /mode: violates const", id="const"),
        pytest.param({"city": "Oslo", "email": SECRET}, "at /email: violates format", id="format"),
        pytest.param({"city": "Oslo", "tags": ["a", SECRET]}, "at /tags/1: violates", id="items"),
        pytest.param(
            {"city": "Oslo", "nested": {"token": SECRET}},
            "at /nested/token: violates type",
            id="nested",
        ),
        pytest.param({"city": "Oslo", "choice": SECRET}, "at /choice: violates oneOf", id="oneOf"),
        pytest.param({"city": "Oslo", "days": 8}, "at /days: violates maximum 7", id="maximum"),
        pytest.param({"city": ["Oslo", SECRET]}, "at /city: violates type", id="array-for-str"),
        pytest.param({"city": {"k": SECRET}}, "at /city: violates type", id="object-for-str"),
    ],
)
async def test_invalid_arguments_are_denied_without_echoing_the_value(
    ctx: CallContext, arguments: dict[str, Any], where: str
) -> None:
    verdict = await ArgumentsSchemaCheck()(make_call("weather", arguments), ctx)
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason.startswith("arguments do not match the schema of 'weather': ")
    assert where in verdict.reason
    assert SECRET not in verdict.reason
    assert SECRET[:12] not in verdict.reason


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "'city' is a required property"),
        ({"city": "Oslo", "surprise": 1}, "1 unexpected property"),
    ],
)
async def test_key_only_violations_name_the_key(
    ctx: CallContext, arguments: dict[str, Any], named: str
) -> None:
    verdict = await ArgumentsSchemaCheck()(make_call("weather", arguments), ctx)
    assert verdict.outcome is Outcome.DENY
    assert named in verdict.reason
    assert "at /:" in verdict.reason


async def test_an_unexpected_key_holding_a_secret_does_not_echo_the_value(
    ctx: CallContext,
) -> None:
    verdict = await ArgumentsSchemaCheck()(make_call("weather", {"city": "Oslo", "x": SECRET}), ctx)
    assert verdict.outcome is Outcome.DENY
    assert SECRET not in verdict.reason


@pytest.mark.parametrize("key", [SECRET, "k" * 10_000], ids=["secret", "huge"])
async def test_an_unexpected_key_is_agent_data_and_is_not_echoed(
    ctx: CallContext, key: str
) -> None:
    """Keys the agent chose are as untrusted as values: no secret, no unbounded text, in reasons.

    (Keys named by the schema, as in `required`, are fine to name.)
    """
    verdict = await ArgumentsSchemaCheck()(make_call("weather", {"city": "Oslo", key: 1}), ctx)
    assert verdict.outcome is Outcome.DENY
    assert key not in verdict.reason
    assert len(verdict.reason) < 500


async def test_a_long_schema_value_is_truncated(clock: FrozenClock) -> None:
    choices = [f"choice-number-{i}" for i in range(40)]
    schema = {"type": "object", "properties": {"c": {"enum": choices}}}
    catalog = Catalog([make_tool("pick", schema=schema)])
    ctx = CallContext(clock, tool=catalog.get("pick"))
    verdict = await ArgumentsSchemaCheck()(make_call("pick", {"c": "nope"}), ctx)
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason.endswith("...")
    assert len(verdict.reason) < 200


def test_describe_of_no_errors_is_none() -> None:
    assert describe([]) is None


# -- results -----------------------------------------------------------------------------


OUTPUT = {
    "type": "object",
    "properties": {"forecast": {"type": "string"}, "temp": {"type": "number"}},
    "required": ["forecast"],
}


async def test_result_without_a_tool_is_allowed(clock: FrozenClock) -> None:
    verdict = await ResultSchemaCheck()(make_call(), ToolResult(200, {}), CallContext(clock))
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.check == "result_schema"


async def test_result_of_a_tool_without_output_schema_is_allowed(ctx: CallContext) -> None:
    verdict = await ResultSchemaCheck()(make_call("weather"), ToolResult(200, "anything"), ctx)
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.reason == "no output schema declared"


@pytest.mark.parametrize("body", [{"forecast": "sun"}, {"forecast": "rain", "temp": 3.5}])
async def test_matching_result_is_allowed(clock: FrozenClock, body: Any) -> None:
    ctx = context(clock, output_schema=OUTPUT)
    verdict = await ResultSchemaCheck()(make_call("weather"), ToolResult(200, body), ctx)
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.reason == "result matches the output schema"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"forecast": "sun", "temp": SECRET}, "at /temp: violates type"),
        ({"temp": 1}, "'forecast' is a required property"),
        (SECRET, "at /: violates type"),
        (None, "at /: violates type"),
        ([SECRET], "at /: violates type"),
    ],
)
async def test_mismatching_result_is_withheld_without_echoing_it(
    clock: FrozenClock, body: Any, where: str
) -> None:
    ctx = context(clock, output_schema=OUTPUT)
    verdict = await ResultSchemaCheck()(make_call("weather"), ToolResult(200, body), ctx)
    assert verdict.outcome is Outcome.DENY
    assert verdict.reason.startswith("result does not match the output schema: ")
    assert where in verdict.reason
    assert SECRET not in verdict.reason
