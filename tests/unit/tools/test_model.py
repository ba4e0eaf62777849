"""A registered tool: a valid name, an http(s) upstream, an object schema, a risk tier."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.errors import InvalidInputError
from ztgate.testing import make_tool
from ztgate.tools.model import (
    RiskTier,
    Tool,
    ToolLimits,
    ToolName,
    parse_risk,
    validate_json_schema,
    validate_upstream_url,
)

OBJECT = {"type": "object"}


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "Z",
        "7",
        "echo",
        "get_weather",
        "GetWeather",
        "ns:tool",
        "mail.send-v2",
        "a_b.c:d-e",
        "0day",
        "x" * 128,
        "a" + "-" * 127,
    ],
)
def test_valid_tool_names(name: str) -> None:
    parsed = ToolName(name)
    assert parsed == name
    assert isinstance(parsed, str)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param("_echo", id="leading-underscore"),
        pytest.param("-echo", id="leading-dash"),
        pytest.param(".echo", id="leading-dot"),
        pytest.param(":echo", id="leading-colon"),
        pytest.param("get weather", id="space"),
        pytest.param("echo ", id="trailing-space"),
        pytest.param(" echo", id="leading-space"),
        pytest.param("echo\n", id="trailing-newline"),
        pytest.param("echo\x00", id="nul"),
        pytest.param("a/b", id="slash"),
        pytest.param("../etc", id="dot-dot"),
        pytest.param("a@b", id="at"),
        pytest.param("\u0435cho", id="cyrillic-ie"),  # looks like "echo"
        pytest.param("ech\u043e", id="cyrillic-o"),
        pytest.param("\u0261et", id="latin-script-g"),
        pytest.param("\uff45\uff43\uff48\uff4f", id="fullwidth"),
        pytest.param("echo\uff11", id="fullwidth-digit"),
        pytest.param("ec\u200bho", id="zero-width-space"),
        pytest.param("echo\u200d", id="zero-width-joiner"),
        pytest.param("\ufeffecho", id="bom"),
        pytest.param("e\u0301cho", id="combining-accent"),
        pytest.param("\u00e9cho", id="precomposed-accent"),
        pytest.param("echo\u0663", id="arabic-indic-digit"),
        pytest.param("ech\u2024o", id="one-dot-leader"),
        pytest.param("echo\u2010x", id="unicode-hyphen"),
        pytest.param("\u212aelvin", id="kelvin-sign"),
    ],
)
def test_invalid_tool_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid tool name"):
        ToolName(name)


@pytest.mark.parametrize("value", [None, 7, b"echo", ["echo"]])
def test_a_tool_name_must_be_a_string(value: Any) -> None:
    with pytest.raises(InvalidInputError):
        ToolName(value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/echo",
        "https://api.example.com/v1/tools/weather",
        "http://localhost:8471/weather",
        "http://[::1]:8080/",
        "https://example.com",
        "HTTPS://EXAMPLE.COM/x",
        "http://example.com/path?query=1#frag",
    ],
)
def test_valid_upstream_urls(url: str) -> None:
    assert validate_upstream_url(url) == url


def test_an_mcp_upstream_tool_url_names_its_server_and_tool() -> None:
    assert validate_upstream_url("mcp://files/send") == "mcp://files/send"
    for bad in ("mcp://files", "mcp://files/", "mcp:///send", "mcp://files/send?x=1"):
        with pytest.raises(InvalidInputError, match="mcp://<server>/<tool>"):
            validate_upstream_url(bad)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com/x",
        "//example.com/x",
        "/relative/path",
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com",
        "javascript:alert(1)",
        "unix:///var/run/tool.sock",
        "http://",
        "http:///path-only",
        "https://:443/",
        "http//example.com",
    ],
)
def test_invalid_upstream_urls(url: str) -> None:
    with pytest.raises(InvalidInputError, match="http:// or https://"):
        validate_upstream_url(url)


@pytest.mark.parametrize(
    "url", ["http://example.com:99999/", "http://example.com:abc/", "http://example.com:-1/"]
)
def test_upstream_urls_with_an_invalid_port_are_rejected(url: str) -> None:
    """Caught at registration, not as an unexpected error on the first forwarded call."""
    with pytest.raises(InvalidInputError):
        validate_upstream_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@example.com/",
        "https://user@example.com/",
        "https://:secret@example.com/",
    ],
)
def test_upstream_urls_must_not_carry_credentials(url: str) -> None:
    with pytest.raises(InvalidInputError, match="credentials") as caught:
        validate_upstream_url(url)
    assert "secret" not in caught.value.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        {"type": "object", "additionalProperties": False},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
    ],
)
def test_valid_schemas(schema: dict[str, Any]) -> None:
    assert validate_json_schema(schema, "input schema") is schema


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (None, "must be a JSON object"),
        ([], "must be a JSON object"),
        ("object", "must be a JSON object"),
        (True, "must be a JSON object"),
        ({"type": "objekt"}, "not a valid JSON Schema"),
        ({"type": "object", "properties": {"x": {"type": 5}}}, "not a valid JSON Schema"),
        ({"type": "object", "required": "city"}, "not a valid JSON Schema"),
        ({"type": "object", "minProperties": -1}, "not a valid JSON Schema"),
        ({}, '"type": "object"'),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "array"}, '"type": "object"'),
        ({"type": ["object", "null"]}, '"type": "object"'),
        ({"properties": {"x": {}}}, '"type": "object"'),
    ],
)
def test_invalid_schemas_name_the_schema(schema: Any, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=f"^output schema .*{reason}"):
        validate_json_schema(schema, "output schema")


@pytest.mark.parametrize(
    ("text", "tier"),
    [("read", RiskTier.READ), ("write", RiskTier.WRITE), ("critical", RiskTier.CRITICAL)],
)
def test_parse_risk(text: str, tier: RiskTier) -> None:
    assert parse_risk(text) is tier


@pytest.mark.parametrize("text", ["", "READ", "Write", " read", "admin", "none", "low"])
def test_parse_risk_rejects_anything_else(text: str) -> None:
    with pytest.raises(InvalidInputError, match="read, write, critical"):
        parse_risk(text)


def test_tool_defaults() -> None:
    tool = Tool("echo", "http://127.0.0.1:9/echo", OBJECT)
    assert tool.risk is RiskTier.WRITE
    assert tool.enabled is True
    assert tool.output_schema is None
    assert tool.timeout_seconds is None
    assert tool.description == ""
    assert tool.source == "cli"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "\u0435cho"}, "invalid tool name"),
        ({"upstream_url": "ftp://x/"}, "upstream URL"),
        ({"input_schema": {"type": "string"}}, "input schema"),
        ({"output_schema": {"type": "nope"}}, "output schema"),
        ({"risk": "read"}, "risk must be one of"),
        ({"timeout_seconds": 0}, "timeout"),
        ({"timeout_seconds": -1}, "timeout"),
        ({"timeout_seconds": 3600.5}, "timeout"),
        ({"timeout_seconds": float("nan")}, "timeout"),
        ({"description": "x" * 8193}, "description"),
    ],
)
def test_tool_validates_every_field(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {
        "name": "echo",
        "upstream_url": "http://127.0.0.1:9/echo",
        "input_schema": OBJECT,
    }
    with pytest.raises(InvalidInputError, match=message):
        Tool(**(values | fields))


@pytest.mark.parametrize("timeout", [0.001, 1, 3600])
def test_timeouts_in_range_are_accepted(timeout: float) -> None:
    assert make_tool(timeout_seconds=timeout).timeout_seconds == timeout


def test_a_description_of_8192_characters_is_accepted() -> None:
    assert len(make_tool(description="x" * 8192).description) == 8192


def test_tool_is_frozen() -> None:
    tool = make_tool()
    with pytest.raises(AttributeError):
        tool.name = "other"  # type: ignore[misc]


# -- ToolLimits --------------------------------------------------------------------------------


def test_tool_limits_round_trip_through_json() -> None:
    limits = ToolLimits(rate_per_second=0.5, burst=2, cost=1.5, cost_argument="/amount")
    assert limits.to_json() == {
        "rate_per_second": 0.5,
        "burst": 2,
        "cost": 1.5,
        "cost_argument": "/amount",
    }
    assert ToolLimits.from_json(limits.to_json()) == limits
    assert ToolLimits.from_json(limits) is limits
    assert make_tool(limits=limits).limits == limits


def test_empty_tool_limits_are_none() -> None:
    assert ToolLimits.from_json(None) is None
    assert ToolLimits.from_json({}) is None
    assert ToolLimits().to_json() == {}


def test_a_tool_buckets_burst_defaults_to_its_rate() -> None:
    assert ToolLimits(rate_per_second=2.5).bucket_burst == 3.0
    assert ToolLimits(rate_per_second=0.1).bucket_burst == 1.0
    assert ToolLimits(rate_per_second=1, burst=7).bucket_burst == 7.0
    assert ToolLimits(cost=1).bucket_burst is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "JSON object"),
        ({"rate": 1}, "unknown key 'rate'"),
        ({"rate_per_second": 0}, "rate_per_second"),
        ({"rate_per_second": True}, "rate_per_second"),
        ({"rate_per_second": float("inf")}, "rate_per_second"),
        ({"burst": 2}, "needs limits.rate_per_second"),
        ({"rate_per_second": 1, "burst": 0}, "burst"),
        ({"rate_per_second": 1, "burst": 1.5}, "whole number"),
        ({"cost": -1}, "cost"),
        ({"cost": "1"}, "cost"),
        ({"cost_argument": ""}, "cost_argument"),
        ({"cost_argument": "/"}, "cost_argument"),
        ({"cost_argument": 3}, "cost_argument"),
    ],
)
def test_tool_limits_are_validated(value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ToolLimits.from_json(value)


def test_a_tool_refuses_limits_of_the_wrong_type() -> None:
    with pytest.raises(InvalidInputError, match="limits"):
        make_tool(limits={"cost": 1})
