"""Case files: parsing, running, comparing; the shipped example passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ztgate.errors import InvalidInputError
from ztgate.models import Outcome
from ztgate.policy import loader
from ztgate.policy.cases import parse, run

from .conftest import AGENT, NOW, Load, tools

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "policy-cases.yaml"


def test_the_shipped_example_passes_with_the_default_set() -> None:
    parsed = parse(EXAMPLE.read_text(encoding="utf-8"), trust_domain="ztgate.local", now=NOW)
    assert parsed.tools is not None and len(parsed.cases) >= 8
    snapshot = loader.load(loader.read(None), parsed.tools)
    results = run(snapshot, parsed.cases)
    assert [r.problem for r in results if not r.passed] == []
    assert {r.case.expect for r in results} == {Outcome.ALLOW, Outcome.ASK, Outcome.DENY}


def test_a_case_takes_defaults_and_every_field() -> None:
    text = f"""
defaults:
  agent: {AGENT.spiffe_id}
  owner: alice
cases:
  - name: full
    tool: pay
    arguments: {{amount: 3}}
    justification: rent
    in_scope: false
    task: {{intent: pay rent, principal: bob, age_seconds: 5, calls: 2, depth: 1,
            delegated_by: ["spiffe://ztgate.local/agent/boss"]}}
    guards: {{tainted_arguments: [/amount], tainted_from: [web], secrets: [k], pii: [iban],
              injection: true, hosts: [h.example]}}
    time: 2027-01-02T03:04:05Z
    expect: deny
    reason: default
    decided_by: []
  - name: elsewhere
    tool: lookup
    agent: spiffe://partner.example/agent/x
    time: 1800000000
    expect: allow
"""
    full, elsewhere = parse(text, trust_domain="ztgate.local", now=NOW).cases
    facts = full.facts
    assert facts.agent == AGENT
    assert not facts.in_scope and facts.justification == "rent"
    assert facts.task is not None and facts.task.intent == "pay rent" and facts.task.depth == 1
    assert facts.guards.tainted and facts.guards.injection and facts.guards.hosts == ("h.example",)
    assert facts.now == 1798859045.0
    assert full.decided_by == () and full.reason == "default"
    assert elsewhere.facts.agent is not None and not elsewhere.facts.agent.local
    assert elsewhere.facts.now == 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: [", "not valid YAML"),
        ("[]", "a mapping with a list of `cases`"),
        ("defaults: 1\ncases: []", "`defaults` must be a mapping"),
        ("tools: 1\ncases: []", "`tools` must be a list"),
        ("tools: [{risk: read}]\ncases: []", "tools[1]: a mapping with a `name`"),
        ("tools: [{name: x, risk: high}]\ncases: []", "tools[1] (x): risk must be one of"),
        ("cases: [1]", "case 1: must be a mapping"),
        ("cases: [{name: a, tool: t}]", "case 1 (a): expect is required"),
        ("cases: [{name: a, tool: t, expect: maybe}]", "expect must be allow, ask or deny"),
        ("cases: [{name: a, expect: allow}]", "tool is required"),
        ("cases: [{name: a, tool: t, expect: allow, colour: red}]", "unknown field 'colour'"),
        ("cases: [{name: a, tool: t, expect: allow, agent: bob}]", "agent must be a SPIFFE ID"),
        (
            "cases: [{name: a, tool: t, expect: allow, arguments: [1]}]",
            "arguments must be a mapping",
        ),
        ("cases: [{name: a, tool: t, expect: allow, task: 1}]", "task must be a mapping"),
        ("cases: [{name: a, tool: t, expect: allow, guards: {secrets: x}}]", "guards.secrets"),
        ("cases: [{name: a, tool: t, expect: allow, time: yesterday}]", "case 1 (a):"),
        ("cases: [{name: a, tool: t, expect: allow, decided_by: x}]", "decided_by must be"),
    ],
)
def test_malformed_case_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        parse(text, trust_domain="ztgate.local", now=NOW)


def test_results_say_what_differed(load: Load) -> None:
    snapshot = load(
        '@id("reads")\npermit (principal, action, resource) when { resource.risk == "read" };\n'
    )
    text = f"""
defaults: {{agent: {AGENT.spiffe_id}}}
cases:
  - {{name: ok, tool: lookup, expect: allow, decided_by: [reads], reason: permitted}}
  - {{name: outcome, tool: send, arguments: {{to: x}}, expect: allow}}
  - {{name: reason, tool: lookup, expect: allow, reason: forbidden}}
  - {{name: deciders, tool: lookup, expect: allow, decided_by: [other]}}
"""
    results = run(snapshot, parse(text, trust_domain="ztgate.local", now=NOW).cases)
    assert [r.problem for r in results] == [
        None,
        "expected allow, got deny",
        "the reason does not mention 'forbidden'",
        "expected ['other'] to decide, not ['reads']",
    ]
    assert [r.passed for r in results] == [True, False, False, False]
    assert tools()  # the fixture's tools are what `load` used
