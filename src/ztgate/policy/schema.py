"""The Cedar schema policies are validated against, generated from the registered tools.

Principals are `Agent`s, resources are `Tool`s; calling tool `t` is the action
`Action::"call:t"`, a member of `Action::"call"`. Each tool's action has its
own context type, so that `context.arguments` is typed from that tool's JSON
Schema: a condition on `context.arguments.amount` is checked at load to be a
`Long` comparison when `amount` is an integer property.

JSON Schema to Cedar (Cedar has no floating point and no null):

| JSON Schema | Cedar |
| --- | --- |
| `string` | `String` |
| `integer` | `Long` (64-bit) |
| `number` | `decimal` (4 decimal places, about +-9.2e14) |
| `boolean` | `Bool` |
| `array` with typed `items` | `Set<...>` |
| `object` with `properties` | a record of its typed properties |
| `enum`/`const` of one JSON type | that type |
| a type list with `null` and one other type | that type, optional |
| anything else (no type, several types, `$ref` only, ...) | left out |

A property is required in Cedar only when the JSON Schema requires it and
it cannot be null. Properties left out, and properties whose names start
with `__` (Cedar's JSON escapes), cannot be named in a policy: the validator
refuses the policy at load. See `arguments` for how values are converted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ztgate.tools.model import Tool

CALL = "call"
ACTION_PREFIX = "call:"
AGENT = "Agent"
TOOL = "Tool"
MAX_DEPTH = 16
_SCALARS = {"string": "String", "integer": "Long", "number": "decimal", "boolean": "Bool"}
_EXTENSIONS = frozenset({"decimal", "datetime"})


@dataclass(frozen=True, slots=True)
class CedarType:
    """A Cedar type: `String`, `Long`, `Bool`, `decimal`, `Set` (of `element`) or `Record`."""

    kind: str
    element: CedarType | None = None
    attributes: Mapping[str, Attribute] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Attribute:
    """A record attribute's type and whether it is always present."""

    type: CedarType
    required: bool


def action_id(tool: str) -> str:
    """The Cedar action for calling `tool`."""
    return ACTION_PREFIX + tool


def from_json_schema(schema: Any, depth: int = 0) -> CedarType | None:
    """The Cedar type every value valid against `schema` has, or None (untyped)."""
    typed = _json_type(schema)
    if typed is None or depth > MAX_DEPTH:
        return None
    kind, _ = typed
    if kind in _SCALARS:
        return CedarType(_SCALARS[kind])
    if kind == "array":
        element = from_json_schema(schema.get("items"), depth + 1)
        return None if element is None else CedarType("Set", element=element)
    if kind == "object":
        return record_type(schema, depth)
    return None


def record_type(schema: Mapping[str, Any], depth: int = 0) -> CedarType:
    """The record of the typed properties of an object schema (others are left out)."""
    properties = schema.get("properties")
    required = schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    attributes: dict[str, Attribute] = {}
    if isinstance(properties, Mapping):
        for name, subschema in properties.items():
            if not isinstance(name, str) or name.startswith("__"):
                continue
            typed = from_json_schema(subschema, depth + 1)
            if typed is None:
                continue
            nullable = (_json_type(subschema) or ("", True))[1]
            attributes[name] = Attribute(typed, name in required_names and not nullable)
    return CedarType("Record", attributes=MappingProxyType(attributes))


def arguments_type(input_schema: Mapping[str, Any]) -> CedarType:
    """The record type of a tool's `context.arguments`."""
    return record_type(input_schema)


def _json_type(schema: Any) -> tuple[str, bool] | None:
    """The one JSON type `schema` admits (besides null) and whether null is admitted."""
    if not isinstance(schema, Mapping):
        return None
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared, declared == "null"
    if isinstance(declared, list):
        others = [t for t in declared if t != "null"]
        if len(others) == 1 and isinstance(others[0], str):
            return others[0], len(others) != len(declared)
        return None
    if declared is None:
        values = schema["enum"] if isinstance(schema.get("enum"), list) else None
        if values is None and "const" in schema:
            values = [schema["const"]]
        return _type_of_values(values) if values else None
    return None


def _type_of_values(values: list[Any]) -> tuple[str, bool] | None:
    kinds = {_value_kind(value) for value in values}
    nullable = "null" in kinds
    kinds.discard("null")
    if len(kinds) != 1:
        return None
    (kind,) = kinds
    return (kind, nullable) if kind in ("string", "integer", "boolean") else None


def _value_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    return "other"


def to_json(cedar: CedarType) -> dict[str, Any]:
    """The Cedar JSON schema form of a type."""
    if cedar.kind in _EXTENSIONS:
        return {"type": "Extension", "name": cedar.kind}
    if cedar.kind == "Set":
        assert cedar.element is not None  # noqa: S101 - a Set always has an element type
        return {"type": "Set", "element": to_json(cedar.element)}
    if cedar.kind == "Record":
        return {
            "type": "Record",
            "attributes": {
                name: {**to_json(attribute.type), "required": attribute.required}
                for name, attribute in cedar.attributes.items()
            },
        }
    return {"type": cedar.kind}


def _strings() -> dict[str, Any]:
    return {"type": "Set", "element": {"type": "String"}}


def _record(**attributes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Record", "attributes": attributes}


# What every call's context carries besides its arguments (see docs/policy.md).
COMMON_TYPES: dict[str, Any] = {
    "Task": _record(
        id={"type": "String"},
        intent={"type": "String"},
        principal={"type": "String"},
        age_seconds={"type": "Long"},
        calls={"type": "Long"},
        spend={"type": "Extension", "name": "decimal"},
        depth={"type": "Long"},
        delegated_by=_strings(),
    ),
    "Guards": _record(
        tainted={"type": "Bool"},
        tainted_arguments=_strings(),
        tainted_from=_strings(),
        secrets=_strings(),
        pii=_strings(),
        encoded=_strings(),
        injection={"type": "Bool"},
    ),
    "Time": _record(
        now={"type": "Extension", "name": "datetime"},
        unix={"type": "Long"},
        hour={"type": "Long"},
        weekday={"type": "Long"},
    ),
}

ENTITY_TYPES: dict[str, Any] = {
    AGENT: {
        "shape": _record(
            spiffe_id={"type": "String"},
            trust_domain={"type": "String"},
            local={"type": "Bool"},
            owner={"type": "String"},
            tags=_strings(),
        )
    },
    TOOL: {
        "shape": _record(
            name={"type": "String"},
            risk={"type": "String"},
            tags=_strings(),
            upstream_host={"type": "String"},
        )
    },
}


def context_type(arguments: CedarType) -> dict[str, Any]:
    """The context of a call to a tool whose arguments have type `arguments`."""
    return _record(
        arguments=to_json(arguments),
        argument_names=_strings(),
        hosts=_strings(),
        in_scope={"type": "Bool"},
        authenticated={"type": "Bool"},
        justification={"type": "String"},
        cost={"type": "Extension", "name": "decimal"},
        task={"type": "Task", "required": False},
        guards={"type": "Guards"},
        time={"type": "Time"},
    )


def cedar_schema(tools: Iterable[Tool]) -> dict[str, Any]:
    """The Cedar schema (JSON form) for policies over calls to `tools`."""
    actions: dict[str, Any] = {CALL: {}}
    arguments = {tool.name: arguments_type(tool.input_schema) for tool in tools}
    if not arguments:
        # With no tools there would be nothing to type-check policies against;
        # no tool can be named "" (see ToolName), so this action is never called.
        arguments[""] = CedarType("Record")
    for name in sorted(arguments):
        actions[action_id(name)] = {
            "memberOf": [{"id": CALL}],
            "appliesTo": {
                "principalTypes": [AGENT],
                "resourceTypes": [TOOL],
                "context": context_type(arguments[name]),
            },
        }
    return {"": {"commonTypes": COMMON_TYPES, "entityTypes": ENTITY_TYPES, "actions": actions}}
