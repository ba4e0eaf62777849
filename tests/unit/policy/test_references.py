"""Which context paths policies read, and building only those."""

from __future__ import annotations

import json
from typing import Any

import cedarpy

from ztgate.policy.references import NOTHING, context_needs, prune, prune_type, wants
from ztgate.policy.schema import arguments_type


def needs_of(text: str) -> Any:
    parsed = json.loads(cedarpy.policies_to_json_str(text))
    return context_needs(parsed["staticPolicies"].values())


def test_accessed_paths_are_collected() -> None:
    needs = needs_of(
        "permit (principal, action, resource) when { context.guards.tainted && "
        "!context.guards.secrets.isEmpty() && context.arguments has amount && "
        "context.arguments.amount > 3 };"
    )
    assert needs == {"guards": {"tainted": True, "secrets": True}, "arguments": {"amount": True}}


def test_a_record_read_whole_is_needed_whole() -> None:
    needs = needs_of(
        "permit (principal, action, resource) when { context.task has intent && "
        'context.time == context.time && context.task.intent == "x" };'
    )
    assert needs == {"task": {"intent": True}, "time": True}


def test_bare_context_needs_everything() -> None:
    assert needs_of("permit (principal, action, resource) when { context == {} };") is True
    assert needs_of('permit (principal, action, resource) when { context has "task" };') == {
        "task": True
    }


def test_no_conditions_need_nothing() -> None:
    assert needs_of("permit (principal, action, resource);") == NOTHING
    assert wants(NOTHING, "task") is None
    assert wants(True, "task") is True


def test_prune_keeps_only_what_is_needed() -> None:
    value = {"a": {"b": 1, "c": 2}, "d": [1], "e": 3}
    assert prune(value, {"a": {"b": True}, "d": True, "x": True}) == {"a": {"b": 1}, "d": [1]}
    assert prune(value, True) is value


def test_prune_type_keeps_the_read_arguments() -> None:
    record = arguments_type(
        {
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
                "c": {"type": "string"},
            },
            "required": ["c"],
        }
    )
    pruned = prune_type(record, {"a": {"b": True}, "absent": True})
    assert set(pruned.attributes) == {"a"}
    assert set(pruned.attributes["a"].type.attributes) == {"b"}
    assert prune_type(record, True) is record
