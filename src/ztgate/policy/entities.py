"""A call and its facts as a Cedar request: principal, action, resource, context, entities.

- principal: `Agent::"<SPIFFE ID>"` with its trust domain, whether it is
  local or federated, the owner of its registration entry and its tags; with
  authentication off, `Agent::"anonymous"` (empty attributes) and
  `context.authenticated` false.
- action: `Action::"call:<tool>"`, in `Action::"call"`.
- resource: `Tool::"<name>"` with its risk tier, tags and upstream host.
- context: the typed arguments, the names of all arguments, the destination
  hosts found in them, whether the call is in its task's scope, the
  justification, the task, the guards' findings and the time (see
  docs/policy.md).

The tools' and actions' entities are parsed once per policy load; an agent's
entity is added to them once per agent and cached with the policy set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import cedarpy
import orjson

from ztgate.policy.arguments import amount_value, to_cedar
from ztgate.policy.model import AgentFacts, CallFacts, PolicySnapshot, Tags, TaskFacts
from ztgate.policy.references import Needs, prune
from ztgate.policy.schema import AGENT, TOOL, CedarType, action_id
from ztgate.tasks.scope import destination_host
from ztgate.tools.model import Tool

ANONYMOUS = "anonymous"
MAX_HOSTS = 256
# URLs and e-mail addresses inside free text (a whole value is tried first).
_ADDRESS = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+"
    r"|[^\s@<>\"',;:()\[\]]+@[^\s@<>\"',;:()\[\]]+"
)


class RequestError(ValueError):
    """A call cannot be put to the policies (a tool the loaded set does not know)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One Cedar authorization request and the entities it is evaluated over."""

    principal: Mapping[str, str]
    action: Mapping[str, str]
    resource: Mapping[str, str]
    context: Mapping[str, Any]
    entities: cedarpy.Entities
    # What the entities were built from besides the policy set: the agent's
    # facts (see `PolicySnapshot.with_agent`). With the tool and the context
    # it determines the whole request (`key`).
    agent_key: tuple[Any, ...]
    context_json: str  # `context` as Cedar is given it

    def cedar(self) -> dict[str, Any]:
        """The request as `cedarpy.is_authorized` takes it (the context as JSON text)."""
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "context": self.context_json,
        }

    def key(self) -> tuple[Any, ...]:
        """Everything Cedar is asked, exactly, for one policy set: equal keys, equal requests."""
        return (
            self.principal["type"],
            self.principal["id"],
            self.agent_key,
            self.action["id"],
            self.resource["type"],
            self.resource["id"],
            self.context_json,
        )


def tool_entity(tool: Tool, tags: Tags) -> dict[str, Any]:
    """A tool's Cedar entity."""
    return {
        "uid": {"type": TOOL, "id": tool.name},
        "attrs": {
            "name": tool.name,
            "risk": tool.risk.value,
            "tags": list(tags.tools.get(tool.name, ())),
            "upstream_host": urlsplit(tool.upstream_url).hostname or "",
        },
        "parents": [],
    }


def agent_entity(agent: AgentFacts | None, tags: Tags) -> dict[str, Any]:
    """An agent's Cedar entity (the anonymous one when there is no agent)."""
    if agent is None:
        attrs: dict[str, Any] = {
            "spiffe_id": "",
            "trust_domain": "",
            "local": True,
            "owner": "",
            "tags": list(tags.agents.get(ANONYMOUS, ())),
        }
        return {"uid": {"type": AGENT, "id": ANONYMOUS}, "attrs": attrs, "parents": []}
    attrs = {
        "spiffe_id": agent.spiffe_id,
        "trust_domain": agent.trust_domain,
        "local": agent.local,
        "owner": agent.owner,
        "tags": list(tags.agents.get(agent.spiffe_id, ())),
    }
    return {"uid": {"type": AGENT, "id": agent.spiffe_id}, "attrs": attrs, "parents": []}


def tools_entities(tools: Iterable[Tool], tags: Tags, schema: cedarpy.Schema) -> cedarpy.Entities:
    """The tools' entities and (from the schema) the actions', parsed once.

    Raises:
        ValueError: the entities do not conform to the schema.
    """
    listed = [tool_entity(tool, tags) for tool in tools]
    return cedarpy.Entities.from_json_str(json.dumps(listed), schema)


def build(snapshot: PolicySnapshot, facts: CallFacts) -> Request:
    """The Cedar request for one call.

    Raises:
        RequestError: the policy set was not loaded for this tool.
        ArgumentTypeError: an argument does not have its declared type.
    """
    arguments = snapshot.arguments.get(facts.tool)
    if arguments is None:
        raise RequestError(
            f"tool {facts.tool!r} is not in the policy set in force (its schema was not loaded)"
        )
    context = build_context(snapshot.needs, arguments, facts)
    agent = facts.agent
    principal = {"type": AGENT, "id": agent.spiffe_id if agent else ANONYMOUS}
    key = (agent.spiffe_id, agent.trust_domain, agent.local, agent.owner) if agent else ()
    entities = snapshot.with_agent(
        key,
        lambda: snapshot.entities.with_added_json_str(
            json.dumps([agent_entity(agent, snapshot.tags)]), snapshot.schema
        ),
    )
    try:
        context_json = orjson.dumps(context).decode()
    except orjson.JSONEncodeError as exc:  # a lone surrogate in a string, say: no JSON for Cedar
        raise RequestError(f"the call's context cannot be put to the policies: {exc}") from exc
    return Request(
        principal,
        {"type": "Action", "id": action_id(facts.tool)},
        {"type": TOOL, "id": facts.tool},
        context,
        entities,
        key,
        context_json,
    )


def build_context(needs: Needs, arguments: CedarType, facts: CallFacts) -> dict[str, Any]:
    """The parts of `context` the policies read (`needs`), for one call.

    Raises:
        ArgumentTypeError: a read argument does not have its declared type.
    """
    if needs is True:
        needs = _EVERYTHING
    assert not isinstance(needs, bool)  # noqa: S101 - True was replaced, False never stored
    context: dict[str, Any] = {}
    for name, child in needs.items():
        make = _PARTS.get(name)
        if make is None:
            continue  # a name the schema does not have: the validator refused it already
        if name == "arguments":
            context[name] = to_cedar(facts.arguments, arguments)
        elif name != "task" or facts.task is not None:
            context[name] = prune(make(facts), child)
    return context


def _guards(facts: CallFacts) -> dict[str, Any]:
    guards = facts.guards
    return {
        "tainted": guards.tainted,
        "tainted_arguments": list(guards.tainted_arguments),
        "tainted_from": list(guards.tainted_from),
        "secrets": list(guards.secrets),
        "pii": list(guards.pii),
        "encoded": list(guards.encoded),
        "injection": guards.injection,
    }


_PARTS: dict[str, Callable[[CallFacts], Any]] = {
    "arguments": lambda facts: None,  # converted with the tool's type, above
    "argument_names": lambda facts: sorted(facts.arguments),
    "hosts": lambda facts: sorted({*hosts(facts.arguments), *facts.guards.hosts}),
    "in_scope": lambda facts: facts.in_scope,
    "authenticated": lambda facts: facts.agent is not None,
    "justification": lambda facts: facts.justification,
    "cost": lambda facts: amount_value(facts.cost, "the call's cost"),
    "guards": _guards,
    "time": lambda facts: time_record(facts.now),
    "task": lambda facts: task_record(facts.task) if facts.task is not None else None,
}
_EVERYTHING: Mapping[str, Needs] = MappingProxyType(dict.fromkeys(_PARTS, True))


def task_record(task: TaskFacts) -> dict[str, Any]:
    """`context.task`."""
    return {
        "id": task.id,
        "intent": task.intent,
        "principal": task.principal,
        "age_seconds": task.age_seconds,
        "calls": task.calls,
        "spend": amount_value(task.spend, "the task's spend"),
        "depth": task.depth,
        "delegated_by": list(task.delegated_by),
    }


def time_record(now: float) -> dict[str, Any]:
    """`context.time`: the call's arrival as a Cedar datetime, and in whole units (UTC)."""
    moment = datetime.fromtimestamp(now, UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
    return {
        "now": {"__extn": {"fn": "datetime", "arg": stamp}},
        "unix": int(now),
        "hour": moment.hour,
        "weekday": moment.isoweekday(),
    }


def hosts(arguments: Mapping[str, Any]) -> list[str]:
    """The destination hosts of the URLs and e-mail addresses anywhere in the arguments."""
    found: set[str] = set()
    for text in _strings(arguments):
        if "://" not in text and "@" not in text:
            continue
        whole = destination_host(text)
        candidates = [whole] if whole is not None else _ADDRESS.findall(text)
        for candidate in candidates:
            host = destination_host(candidate)
            if host is not None:
                found.add(host)
        if len(found) >= MAX_HOSTS:
            break
    return sorted(found)


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
