"""The Cedar schema generated from the tools' JSON Schemas."""

from __future__ import annotations

import json
from typing import Any

import cedarpy
import pytest

from ztgate.policy.schema import (
    CALL,
    CedarType,
    action_id,
    arguments_type,
    cedar_schema,
    from_json_schema,
    to_json,
)

from .conftest import tools


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        ({"type": "string"}, "String"),
        ({"type": "integer"}, "Long"),
        ({"type": "number"}, "decimal"),
        ({"type": "boolean"}, "Bool"),
        ({"type": ["string", "null"]}, "String"),
        ({"enum": ["a", "b"]}, "String"),
        ({"enum": [1, 2, None]}, "Long"),
        ({"const": True}, "Bool"),
        ({"type": "object", "properties": {}}, "Record"),
    ],
)
def test_json_types_map_to_cedar_types(schema: dict[str, Any], kind: str) -> None:
    typed = from_json_schema(schema)
    assert typed is not None and typed.kind == kind


@pytest.mark.parametrize(
    "schema",
    [
        {},
        True,
        {"type": ["string", "integer"]},
        {"type": "null"},
        {"enum": ["a", 1]},
        {"enum": [1.5]},
        {"$ref": "#/$defs/x"},
        {"anyOf": [{"type": "string"}]},
        {"type": "array"},
        {"type": "array", "items": {}},
        {"type": "array", "prefixItems": [{"type": "string"}]},
    ],
)
def test_untyped_schemas_have_no_cedar_type(schema: Any) -> None:
    assert from_json_schema(schema) is None


def test_arrays_are_sets_and_objects_records() -> None:
    typed = from_json_schema(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "items": {}}},
                "required": ["n"],
            },
        }
    )
    assert typed is not None and typed.kind == "Set"
    assert typed.element is not None
    assert set(typed.element.attributes) == {"n"}  # the untyped `tags` is left out
    assert typed.element.attributes["n"].required


def test_required_and_nullable_properties() -> None:
    record = arguments_type(
        {
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "b": {"type": ["string", "null"]},
                "c": {"type": "string"},
                "__entity": {"type": "object", "properties": {}},
                "free": {},
            },
            "required": ["a", "b", "free"],
        }
    )
    assert {name: a.required for name, a in record.attributes.items()} == {
        "a": True,
        "b": False,  # null is admitted: an absent attribute in Cedar
        "c": False,
    }


def test_deep_nesting_stops_typing() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"x": schema}}
    record = arguments_type(schema)
    depth = 0
    while "x" in record.attributes:
        record = record.attributes["x"].type
        depth += 1
    assert depth < 20


def test_to_json_of_every_kind() -> None:
    assert to_json(CedarType("decimal")) == {"type": "Extension", "name": "decimal"}
    assert to_json(CedarType("Set", element=CedarType("Long"))) == {
        "type": "Set",
        "element": {"type": "Long"},
    }


def test_the_schema_has_an_action_per_tool_with_typed_arguments() -> None:
    document = cedar_schema(tools())
    actions = document[""]["actions"]
    assert set(actions) == {CALL, action_id("lookup"), action_id("send"), action_id("pay")}
    pay = actions[action_id("pay")]
    assert pay["memberOf"] == [{"id": CALL}]
    arguments = pay["appliesTo"]["context"]["attributes"]["arguments"]["attributes"]
    assert arguments["amount"] == {"type": "Long", "required": True}
    assert arguments["fee"] == {"type": "Extension", "name": "decimal", "required": False}
    assert "memo" not in arguments  # untyped
    text = str(cedarpy.Schema.from_json_str(json.dumps(document)))
    assert 'action "call:pay" in [Action::"call"]' in text


def test_tool_names_with_any_allowed_characters_make_a_valid_schema() -> None:
    from ztgate.testing import make_tool

    odd = [make_tool("a.b:c-d_e"), make_tool("X9")]
    cedarpy.Schema.from_json_str(json.dumps(cedar_schema(odd)))


def test_no_tools_still_make_a_schema_with_a_placeholder_action() -> None:
    document = cedar_schema([])
    assert set(document[""]["actions"]) == {CALL, action_id("")}
    cedarpy.Schema.from_json_str(json.dumps(document))
