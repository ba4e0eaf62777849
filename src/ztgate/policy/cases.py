"""Policy test cases: a table of calls and the decisions expected of them.

A case file is YAML (or JSON):

    tools:                      # the tools the cases call (else the registered ones)
      - name: send_email
        risk: write             # read | write | critical
        url: https://mail.internal/send
        input_schema: {type: object, properties: {to: {type: string}}}
    defaults:                   # fields every case starts from
      agent: spiffe://ztgate.local/agent/assistant
    cases:
      - name: a write in scope is allowed
        tool: send_email
        arguments: {to: ops@acme.example}
        expect: allow           # allow | ask | deny
        decided_by: [writes-in-scope]   # optional: exactly these policies decided
        reason: permitted       # optional: a part of the reason

A case may also give `justification`, `cost`, `agent` (a SPIFFE ID; none
means an unauthenticated call), `owner`, `local`, `in_scope` (default true),
`task` (`id`, `intent`, `principal`, `age_seconds`, `calls`, `spend`,
`depth`, `delegated_by`), `guards` (`tainted_arguments`, `tainted_from`, `secrets`,
`pii`, `encoded`, `injection`, `hosts`) and `time` (ISO 8601, or Unix seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from ztgate.errors import GatewayError, InvalidInputError
from ztgate.models import Outcome
from ztgate.policy import engine
from ztgate.policy.model import (
    AgentFacts,
    CallFacts,
    Evaluation,
    GuardFacts,
    PolicySnapshot,
    TaskFacts,
)
from ztgate.tools.model import Tool, parse_risk

DEFAULT_TOOL_URL = "https://tool.invalid/"
_CASE_FIELDS = frozenset(
    {
        "name",
        "tool",
        "arguments",
        "justification",
        "cost",
        "agent",
        "owner",
        "local",
        "in_scope",
        "task",
        "guards",
        "time",
        "expect",
        "reason",
        "decided_by",
    }
)


@dataclass(frozen=True, slots=True)
class Case:
    """One call and what the policies are expected to say about it."""

    name: str
    facts: CallFacts
    expect: Outcome
    reason: str | None = None
    decided_by: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class CaseFile:
    """The cases of a file, and the tools they call (None: the registered tools)."""

    cases: tuple[Case, ...]
    tools: tuple[Tool, ...] | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """A case, what the policies said, and whether that was what was expected."""

    case: Case
    evaluation: Evaluation
    problem: str | None = None

    @property
    def passed(self) -> bool:
        """True when the decision (and the reason and deciding policies, if given) matched."""
        return self.problem is None


def parse(text: str, *, trust_domain: str, now: float) -> CaseFile:
    """Parse a case file; cases without a `time` happen at `now`.

    Raises:
        InvalidInputError: not YAML, or a case is malformed (named by number and name).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("cases"), list):
        raise InvalidInputError("a case file is a mapping with a list of `cases`")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise InvalidInputError("`defaults` must be a mapping")
    tools = _tools(data["tools"]) if data.get("tools") is not None else None
    cases = []
    for index, raw in enumerate(data["cases"], start=1):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        try:
            if not isinstance(raw, Mapping):
                raise InvalidInputError("must be a mapping")
            cases.append(_case({**defaults, **raw}, trust_domain, now))
        except (InvalidInputError, ValueError, TypeError) as exc:
            detail = exc.message if isinstance(exc, GatewayError) else str(exc)
            label = f"case {index}" + (f" ({name})" if name else "")
            raise InvalidInputError(f"{label}: {detail}") from exc
    return CaseFile(tuple(cases), tools)


def _tools(raw: Any) -> tuple[Tool, ...]:
    if not isinstance(raw, list):
        raise InvalidInputError("`tools` must be a list")
    tools = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise InvalidInputError(f"tools[{index}]: a mapping with a `name`")
        try:
            tools.append(
                Tool(
                    name=item["name"],
                    upstream_url=str(item.get("url", DEFAULT_TOOL_URL)),
                    input_schema=item.get("input_schema", {"type": "object"}),
                    risk=parse_risk(str(item.get("risk", "write"))),
                    description=str(item.get("description", "")),
                )
            )
        except InvalidInputError as exc:
            raise InvalidInputError(f"tools[{index}] ({item['name']}): {exc.message}") from exc
    return tuple(tools)


def _case(raw: Mapping[str, Any], trust_domain: str, now: float) -> Case:
    unknown = sorted(set(raw) - _CASE_FIELDS)
    if unknown:
        raise InvalidInputError(f"unknown field {unknown[0]!r}")
    name = _get(raw, "name", str)
    expect = _get(raw, "expect", str)
    if expect not in {o.value for o in Outcome}:
        raise InvalidInputError("expect must be allow, ask or deny")
    arguments = raw.get("arguments") or {}
    if not isinstance(arguments, Mapping):
        raise InvalidInputError("arguments must be a mapping")
    decided_by = raw.get("decided_by")
    if decided_by is not None and not _strings(decided_by):
        raise InvalidInputError("decided_by must be a list of policy ids")
    facts = CallFacts(
        tool=_get(raw, "tool", str),
        arguments=dict(arguments),
        now=_time(raw.get("time"), now),
        justification=str(raw.get("justification", "")),
        cost=float(raw.get("cost", 0)),
        agent=_agent(raw, trust_domain),
        in_scope=bool(raw.get("in_scope", True)),
        task=_task(raw.get("task")),
        guards=_guards(raw.get("guards") or {}),
    )
    reason = raw.get("reason")
    return Case(
        name,
        facts,
        Outcome(expect),
        str(reason) if reason is not None else None,
        tuple(decided_by) if decided_by is not None else None,
    )


def _get(raw: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise InvalidInputError(f"{key} is required ({kind.__name__})")
    return value


def _agent(raw: Mapping[str, Any], trust_domain: str) -> AgentFacts | None:
    spiffe_id = raw.get("agent")
    if spiffe_id is None:
        return None
    if not isinstance(spiffe_id, str) or not spiffe_id.startswith("spiffe://"):
        raise InvalidInputError("agent must be a SPIFFE ID (spiffe://...)")
    domain = spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
    local = raw.get("local", domain == trust_domain)
    return AgentFacts(spiffe_id, domain, bool(local), str(raw.get("owner", "")))


def _task(raw: Any) -> TaskFacts | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInputError("task must be a mapping")
    delegated = raw.get("delegated_by", [])
    if not _strings(delegated):
        raise InvalidInputError("task.delegated_by must be a list of SPIFFE IDs")
    return TaskFacts(
        id=str(raw.get("id", "task-1")),
        intent=str(raw.get("intent", "")),
        principal=str(raw.get("principal", "admin")),
        age_seconds=int(raw.get("age_seconds", 0)),
        calls=int(raw.get("calls", 0)),
        spend=float(raw.get("spend", 0)),
        depth=int(raw.get("depth", 0)),
        delegated_by=tuple(delegated),
    )


def _guards(raw: Any) -> GuardFacts:
    if not isinstance(raw, Mapping):
        raise InvalidInputError("guards must be a mapping")
    lists = {}
    for key in ("tainted_arguments", "tainted_from", "secrets", "pii", "encoded", "hosts"):
        value = raw.get(key, [])
        if not _strings(value):
            raise InvalidInputError(f"guards.{key} must be a list of strings")
        lists[key] = tuple(value)
    return GuardFacts(**lists, injection=bool(raw.get("injection", False)))


def _time(raw: Any, now: float) -> float:
    if raw is None:
        return now
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, datetime):  # YAML reads an unquoted timestamp as a datetime
        return raw.timestamp()
    if isinstance(raw, str):
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    raise InvalidInputError("time must be an ISO 8601 date and time, or Unix seconds")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def run(snapshot: PolicySnapshot, cases: Sequence[Case]) -> list[Result]:
    """Decide every case with the loaded policies and compare with what was expected."""
    return [check(case, engine.decide(snapshot, case.facts)) for case in cases]


def check(case: Case, evaluation: Evaluation) -> Result:
    """Compare one evaluation with the case's expectations."""
    if evaluation.outcome is not case.expect:
        problem = f"expected {case.expect.value}, got {evaluation.outcome.value}"
    elif case.reason is not None and case.reason not in evaluation.reason:
        problem = f"the reason does not mention {case.reason!r}"
    elif case.decided_by is not None and set(case.decided_by) != {
        rule.id for rule in evaluation.deciding
    }:
        decided = sorted(rule.id for rule in evaluation.deciding) or "no policy"
        problem = f"expected {sorted(case.decided_by)} to decide, not {decided}"
    else:
        problem = None
    return Result(case, evaluation, problem)
