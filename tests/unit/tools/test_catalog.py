"""The catalog: an immutable snapshot of tools with compiled validators."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from ztgate.testing import make_tool
from ztgate.tools.catalog import Catalog, CatalogEntry

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "day": {"type": "string", "format": "date"},
    },
    "required": ["city"],
    "additionalProperties": False,
}


def test_empty_catalog() -> None:
    catalog = Catalog()
    assert len(catalog) == 0
    assert catalog.names() == []
    assert catalog.get("echo") is None


def test_get_returns_the_tool_with_compiled_validators() -> None:
    tool = make_tool("weather", schema=SCHEMA, output_schema={"type": "object"})
    entry = Catalog([tool]).get("weather")
    assert isinstance(entry, CatalogEntry)
    assert entry.spec is tool
    assert isinstance(entry.arguments, Draft202012Validator)
    assert isinstance(entry.result, Draft202012Validator)


def test_no_output_schema_means_no_result_validator() -> None:
    entry = Catalog([make_tool("echo")]).get("echo")
    assert entry is not None
    assert entry.result is None


def test_names_are_sorted_and_len_counts() -> None:
    catalog = Catalog([make_tool(n) for n in ["zeta", "alpha", "Beta"]])
    assert catalog.names() == ["Beta", "alpha", "zeta"]
    assert len(catalog) == 3


@pytest.mark.parametrize("name", ["Weather", "weather ", "\u0435cho", "echo\u200b", ""])
def test_lookup_is_exact(name: str) -> None:
    catalog = Catalog([make_tool("weather"), make_tool("echo")])
    assert catalog.get(name) is None


@pytest.mark.parametrize(
    ("arguments", "valid"),
    [
        ({"city": "Oslo"}, True),
        ({"city": "Oslo", "day": "2026-01-31"}, True),
        ({}, False),
        ({"city": ""}, False),
        ({"city": 5}, False),
        ({"city": "Oslo", "extra": 1}, False),
        ({"city": "Oslo", "day": "2026-13-45"}, False),  # format is enforced
        ({"city": "Oslo", "day": "tomorrow"}, False),
    ],
)
def test_argument_validator_applies_the_schema(arguments: dict[str, object], valid: bool) -> None:
    entry = Catalog([make_tool("weather", schema=SCHEMA)]).get("weather")
    assert entry is not None
    assert entry.arguments.is_valid(arguments) is valid


def test_result_validator_applies_the_output_schema() -> None:
    output = {"type": "object", "required": ["forecast"], "properties": {"forecast": {}}}
    entry = Catalog([make_tool("weather", output_schema=output)]).get("weather")
    assert entry is not None and entry.result is not None
    assert entry.result.is_valid({"forecast": "sun"})
    assert not entry.result.is_valid({"weather": "sun"})
    assert not entry.result.is_valid("sun")


def test_catalog_is_a_snapshot() -> None:
    tools = [make_tool("a")]
    catalog = Catalog(tools)
    tools.append(make_tool("b"))
    assert catalog.names() == ["a"]


def test_a_later_tool_of_the_same_name_wins() -> None:
    first = make_tool("echo", url="http://127.0.0.1:9/one")
    second = make_tool("echo", url="http://127.0.0.1:9/two")
    entry = Catalog([first, second]).get("echo")
    assert entry is not None
    assert entry.spec is second


def test_catalog_accepts_any_iterable() -> None:
    catalog = Catalog(make_tool(n) for n in ["a", "b"])
    assert catalog.names() == ["a", "b"]
