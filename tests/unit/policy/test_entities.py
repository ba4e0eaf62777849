"""Cedar requests from calls: principals, resources, and only the context policies read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cedarpy
import pytest

from ztgate.policy.arguments import ArgumentTypeError
from ztgate.policy.entities import (
    ANONYMOUS,
    RequestError,
    agent_entity,
    build,
    hosts,
    time_record,
    tool_entity,
)
from ztgate.policy.model import GuardFacts, Tags, TaskFacts
from ztgate.testing import make_tool

from .conftest import AGENT, NOW, Load, call

EVERYTHING = "permit (principal, action, resource) when { context == context };"


def test_a_request_names_the_agent_the_tool_and_its_action(load: Load) -> None:
    snapshot = load(EVERYTHING)
    request = build(snapshot, call("send", {"to": "a@b.example"}))
    assert request.principal == {"type": "Agent", "id": AGENT.spiffe_id}
    assert request.action == {"type": "Action", "id": "call:send"}
    assert request.resource == {"type": "Tool", "id": "send"}
    assert json.loads(request.cedar()["context"]) == request.context


def test_the_whole_context_validates_against_the_schema(load: Load) -> None:
    snapshot = load(EVERYTHING)
    facts = call(
        "pay",
        {"amount": 3, "fee": 0.25, "memo": {"x": 1}},
        justification="rent",
        cost=2.5,
        task=TaskFacts(
            "t1", "pay rent", "admin", 42, calls=3, spend=7.25, depth=1, delegated_by=("s://x",)
        ),
        guards=GuardFacts(tainted_arguments=("/memo",), tainted_from=("web",), secrets=("k",)),
    )
    request = build(snapshot, facts)
    assert set(request.context) == {
        "arguments",
        "argument_names",
        "hosts",
        "in_scope",
        "authenticated",
        "justification",
        "cost",
        "guards",
        "time",
        "task",
    }
    result = cedarpy.is_authorized(
        request.cedar(), snapshot.policies, request.entities, schema=snapshot.schema
    )
    assert result.diagnostics.errors == []
    assert result.allowed


def test_only_what_the_policies_read_is_built(load: Load) -> None:
    snapshot = load(
        'permit (principal, action == Action::"call:pay", resource)\n'
        "when { context.in_scope && context.arguments.amount < 10 };"
    )
    request = build(snapshot, call("pay", {"amount": 3, "fee": 1.23456, "memo": "x"}))
    # The fee could not be a decimal, but no policy reads it: no refusal.
    assert request.context == {"in_scope": True, "arguments": {"amount": 3}}


def test_a_read_argument_of_the_wrong_type_is_refused(load: Load) -> None:
    snapshot = load(
        'permit (principal, action == Action::"call:pay", resource) '
        "when { context.arguments.amount < 10 };"
    )
    with pytest.raises(ArgumentTypeError, match="argument /amount should be an integer"):
        build(snapshot, call("pay", {"amount": "3"}))


def test_a_tool_the_set_does_not_know_is_refused(load: Load) -> None:
    snapshot = load(EVERYTHING)
    with pytest.raises(RequestError, match="'other' is not in the policy set in force"):
        build(snapshot, call("other"))


def test_without_an_agent_the_principal_is_anonymous(load: Load) -> None:
    snapshot = load(EVERYTHING)
    request = build(snapshot, call("lookup", agent=None))
    assert request.principal == {"type": "Agent", "id": ANONYMOUS}
    assert request.context["authenticated"] is False
    assert "task" not in request.context


def test_agent_entities_are_cached_per_agent(load: Load) -> None:
    snapshot = load(EVERYTHING)
    first = build(snapshot, call()).entities
    assert build(snapshot, call()).entities is first
    assert build(snapshot, call(agent=None)).entities is not first


def test_entities_carry_tags_owner_and_upstream_host() -> None:
    tags = Tags({AGENT.spiffe_id: ("prod",), ANONYMOUS: ("dev",)}, {"t": ("ext",)})
    tool = tool_entity(make_tool("t", url="https://API.example:8443/x"), tags)
    assert tool["attrs"] == {
        "name": "t",
        "risk": "read",
        "tags": ["ext"],
        "upstream_host": "api.example",
    }
    agent = agent_entity(AGENT, tags)
    assert agent["attrs"]["owner"] == "alice" and agent["attrs"]["tags"] == ["prod"]
    assert agent_entity(None, tags)["attrs"]["tags"] == ["dev"]


def test_hosts_are_found_in_urls_and_addresses_at_any_depth() -> None:
    arguments = {
        "to": "Bob@Evil.Example",
        "nested": {"list": ["see https://files.example/x?y=1 and mail ann@corp.example."]},
        "plain": "lisbon",
        "bad": "http://a\\b.example/",
    }
    assert hosts(arguments) == ["corp.example", "evil.example", "files.example"]


def test_guard_hosts_join_the_argument_hosts(load: Load) -> None:
    snapshot = load("permit (principal, action, resource) when { context.hosts.isEmpty() };")
    request = build(
        snapshot,
        call("lookup", {"q": "https://a.example"}, guards=GuardFacts(hosts=("b.example",))),
    )
    assert request.context == {"hosts": ["a.example", "b.example"]}


def test_time_is_a_cedar_datetime_and_utc_parts() -> None:
    moment = datetime(2027, 3, 5, 14, 7, 9, 250_000, tzinfo=UTC)
    record = time_record(moment.timestamp())
    assert record == {
        "now": {"__extn": {"fn": "datetime", "arg": "2027-03-05T14:07:09.250Z"}},
        "unix": int(moment.timestamp()),
        "hour": 14,
        "weekday": 5,
    }
    assert time_record(NOW)["unix"] == int(NOW)
