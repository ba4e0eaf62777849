"""Evaluation: default deny, forbid wins, @ask, and failing closed."""

from __future__ import annotations

import dataclasses
from typing import Any

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ztgate.models import Outcome
from ztgate.policy import engine, model
from ztgate.policy.engine import decide, evaluate, scrub
from ztgate.policy.entities import build
from ztgate.policy.model import AgentFacts, GuardFacts

from .conftest import AGENT, Load, call

PERMIT_READS = """@id("reads")
permit (principal, action in Action::"call", resource) when { resource.risk == "read" };
"""


def test_nothing_is_allowed_without_a_permit(load: Load) -> None:
    evaluation = decide(load(PERMIT_READS), call("send", {"to": "x"}))
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason == "no policy permits this call (default deny)"
    assert evaluation.deciding == ()


def test_a_permit_allows_naming_the_policy(load: Load) -> None:
    evaluation = decide(load(PERMIT_READS), call("lookup"))
    assert evaluation.outcome is Outcome.ALLOW
    assert evaluation.reason == "permitted by reads (main.cedar:1)"
    assert [r.id for r in evaluation.deciding] == ["reads"]


def test_forbid_wins_over_permit_and_ask(load: Load) -> None:
    snapshot = load(
        PERMIT_READS
        + '@ask("look")\npermit (principal, action, resource);\n'
        + '@id("no-secrets")\n@reason("secrets stay")\n'
        + "forbid (principal, action, resource) when { !context.guards.secrets.isEmpty() };\n"
    )
    evaluation = decide(snapshot, call("lookup", guards=GuardFacts(secrets=("aws",))))
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason == "forbidden by no-secrets (main.cedar:5): secrets stay"
    assert [r.id for r in evaluation.deciding] == ["no-secrets"]


def test_an_ask_annotation_turns_a_permit_into_ask(load: Load) -> None:
    snapshot = load(
        PERMIT_READS
        + '@id("critical")\n@ask("a human approves each payment")\n'
        + 'permit (principal, action in Action::"call", resource)\n'
        + 'when { resource.risk == "critical" };\n'
    )
    evaluation = decide(snapshot, call("pay", {"amount": 1}))
    assert evaluation.outcome is Outcome.ASK
    assert evaluation.reason == (
        "approval required by critical (main.cedar:3): a human approves each payment"
    )


def test_every_deciding_annotation_is_said_once_in_policy_order(load: Load) -> None:
    snapshot = load(
        '@id("tainted")\n@ask("argument came from untrusted content")\n'
        + "permit (principal, action, resource) when { context.guards.tainted };\n"
        + '@id("injected")\n@ask("injection found in an earlier result")\n'
        + "permit (principal, action, resource)\n"
        + "when { context.guards.tainted && context.guards.injection };\n"
        + '@id("again")\n@ask("argument came from untrusted content")\n'
        + "permit (principal, action, resource) when { context.guards.tainted };\n"
    )
    facts = GuardFacts(tainted_arguments=("/to",), injection=True)
    evaluation = decide(snapshot, call("send", {"to": "x"}, guards=facts))
    assert evaluation.outcome is Outcome.ASK
    assert evaluation.reason == (
        "approval required by tainted (main.cedar:1), injected (main.cedar:4), "
        "again (main.cedar:8): argument came from untrusted content; "
        "injection found in an earlier result"
    )


def test_one_asking_permit_is_enough_whatever_other_permits_say(load: Load) -> None:
    snapshot = load(
        PERMIT_READS
        + "@ask\npermit (principal, action, resource) when { context.guards.tainted };\n"
    )
    tainted = call("lookup", guards=GuardFacts(tainted_arguments=("/q",)))
    assert decide(snapshot, tainted).outcome is Outcome.ASK
    assert decide(snapshot, call("lookup")).outcome is Outcome.ALLOW


def test_an_evaluation_error_denies_even_if_another_permit_holds(load: Load) -> None:
    snapshot = load(
        PERMIT_READS
        + 'permit (principal, action == Action::"call:pay", resource)\n'
        + "when { context.arguments.amount + 1 > 0 };\n"
    )
    evaluation = decide(snapshot, call("pay", {"amount": 2**63 - 1}))
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason.startswith("a policy could not be evaluated, so the call is denied")
    assert "overflow" in evaluation.reason
    # Cedar alone would have skipped the failing policy: the others say nothing for pay.


def test_an_argument_of_the_wrong_type_denies_with_the_reason(load: Load) -> None:
    snapshot = load(
        'forbid (principal, action == Action::"call:pay", resource) '
        "when { context.arguments.amount > 1000 };\n" + "permit (principal, action, resource);"
    )
    evaluation = decide(snapshot, call("pay", {"amount": "lots"}))
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason == (
        "argument /amount should be an integer for policy conditions, but is a string (fail closed)"
    )
    assert "lots" not in evaluation.reason


@pytest.mark.parametrize(
    ("policy", "facts"),
    [
        (
            'forbid (principal, action, resource) when { context.justification like "*drop*" };',
            call("lookup", justification="drop \ud800"),
        ),
        (
            'forbid (principal, action == Action::"call:send", resource) '
            'when { context.arguments.to like "*x*" };',
            call("send", {"to": "x\udfff"}),
        ),
    ],
    ids=["justification", "argument"],
)
def test_a_context_with_a_lone_surrogate_denies_without_raising(
    load: Load, policy: str, facts: model.CallFacts
) -> None:
    snapshot = load(policy + "\npermit (principal, action, resource);")
    evaluation = decide(snapshot, facts)  # documented never to raise
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason.startswith("the call's context cannot be put to the policies")
    assert evaluation.reason.endswith("(fail closed)")


def test_a_missing_entity_denies(load: Load) -> None:
    snapshot = load('permit (principal, action, resource) when { resource.risk == "read" };')
    request = build(snapshot, call("lookup"))
    other = cedarpy.Entities.from_json_str("[]")
    evaluation = evaluate(snapshot, dataclasses.replace(request, entities=other))
    assert evaluation.outcome is Outcome.DENY
    assert "does not exist" in evaluation.reason


def test_an_engine_exception_denies(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = load(PERMIT_READS)

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.cedarpy, "is_authorized", explode)
    evaluation = decide(snapshot, call("lookup"))
    assert (evaluation.outcome, evaluation.reason) == (
        Outcome.DENY,
        "the policy engine failed: RuntimeError",
    )


class _Malformed:
    """What an engine that lost its way might return: no decision to read."""

    decision = "Allow"  # not a cedarpy.Decision
    diagnostics = None


def test_a_malformed_engine_answer_denies(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = load(PERMIT_READS)
    monkeypatch.setattr(engine.cedarpy, "is_authorized", lambda *args: _Malformed())
    evaluation = decide(snapshot, call("lookup"))
    assert evaluation.outcome is Outcome.DENY
    assert evaluation.reason.startswith("the policy engine failed")


SET_FOR_ANSWERS = (
    PERMIT_READS
    + '@id("tainted")\n@ask("tainted")\n'
    + "permit (principal, action, resource) when { context.guards.tainted };\n"
    + '@id("no-secrets")\n@reason("secrets stay")\n'
    + "forbid (principal, action, resource) when { !context.guards.secrets.isEmpty() };\n"
    + 'permit (principal, action == Action::"call:pay", resource)\n'
    + "when { context.arguments.amount + 1 > 0 };\n"
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tool=st.sampled_from(["lookup", "send", "pay"]),
    tainted=st.booleans(),
    secrets=st.lists(st.sampled_from(["aws", "gcp"]), max_size=2),
    amount=st.sampled_from([0, 1, 2**63 - 1]),
)
def test_evaluations_are_what_the_public_engine_and_interpret_say(
    load: Load, tool: str, tainted: bool, secrets: list[str], amount: int
) -> None:
    """The fast path (engine JSON, remembered interpretations) is held to the slow one."""
    snapshot = load(SET_FOR_ANSWERS)
    guards = GuardFacts(tainted_arguments=("/to",) if tainted else (), secrets=tuple(secrets))
    facts = call(tool, {"amount": amount} if tool == "pay" else {"to": "x"}, guards=guards)
    request = build(snapshot, facts)
    slow = engine.interpret(
        snapshot, cedarpy.is_authorized(request.cedar(), snapshot.policies, request.entities)
    )
    for _ in range(2):  # the first time interprets, the second remembers
        assert evaluate(snapshot, request) == slow


def test_a_different_answer_is_not_taken_from_the_remembered_ones(load: Load) -> None:
    snapshot = load(SET_FOR_ANSWERS)
    made: list[tuple[Any, ...]] = []

    def interpret(answer: tuple[Any, ...]) -> Any:
        made.append(answer)
        return engine._interpret(snapshot, *answer)

    allow = ("Allow", ("reads",), ())
    first = snapshot.evaluation(allow, lambda: interpret(allow))
    assert snapshot.evaluation(allow, lambda: interpret(allow)) is first
    assert made == [allow]
    for answer in (
        ("Deny", ("reads",), ()),
        ("Allow", ("tainted",), ()),
        ("Allow", ("reads", "tainted"), ()),
        ("Allow", ("reads",), ("an error",)),
        ("Allow", ("reads",), ("another error",)),
    ):
        evaluation = snapshot.evaluation(answer, lambda answer=answer: interpret(answer))
        assert made[-1] == answer
        assert evaluation == engine._interpret(snapshot, *answer)
    assert snapshot.evaluation(("Deny", ("reads",), ()), lambda: None).outcome is Outcome.DENY
    assert [
        e.outcome for e in (decide(snapshot, call("lookup")), decide(snapshot, call("send")))
    ] == [
        Outcome.ALLOW,
        Outcome.DENY,
    ]


def test_remembered_interpretations_are_bounded(load: Load) -> None:
    snapshot = load(PERMIT_READS)
    for n in range(model.EVALUATION_CACHE_SIZE * 2 + 5):
        answer = ("Allow", ("reads",), (f"error {n}",))
        evaluation = snapshot.evaluation(
            answer, lambda answer=answer: engine._interpret(snapshot, *answer)
        )
        assert f"error {n}" in evaluation.reason
        assert len(snapshot._evaluations) <= model.EVALUATION_CACHE_SIZE


def test_a_decision_naming_an_unknown_policy_denies(load: Load) -> None:
    snapshot = load(PERMIT_READS)
    result = cedarpy.AuthzResult(
        {"decision": "Allow", "diagnostics": {"reason": ["ghost"], "errors": []}}
    )
    evaluation = engine.interpret(snapshot, result)
    assert evaluation.outcome is Outcome.DENY
    assert "unknown policy 'ghost'" in evaluation.reason


def test_many_deciding_policies_are_summarised(load: Load) -> None:
    snapshot = load("permit (principal, action, resource);\n" * 5)
    evaluation = decide(snapshot, call("lookup"))
    assert evaluation.outcome is Outcome.ALLOW
    assert evaluation.reason == ("permitted by main.cedar:1, main.cedar:2, main.cedar:3, 2 more")
    assert len(evaluation.deciding) == 5


def test_scrub_elides_quoted_strings() -> None:
    assert (
        scrub('entity `Tool::"sec\\"ret"` does\n not exist') == 'entity `Tool::"…"` does not exist'
    )


OWNER_AND_ARGUMENTS = (
    '@id("alice-sends")\n'
    + 'permit (principal == Agent::"spiffe://ztgate.local/agent/a", '
    + 'action == Action::"call:send", resource)\n'
    + 'when { principal.owner == "alice" && context.arguments.to == "x" };\n'
)


class _CountingEngine:
    """`cedarpy.is_authorized` as it is, counting the requests put to it."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self._authorize = engine.cedarpy.is_authorized

    def __call__(self, request: dict[str, Any], policies: Any, entities: Any) -> Any:
        self.asked.append(request)
        return self._authorize(request, policies, entities)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> _CountingEngine:
    counter = _CountingEngine()
    monkeypatch.setattr(engine.cedarpy, "is_authorized", counter)
    return counter


def test_an_identical_request_is_decided_once_per_set(
    load: Load, counting: _CountingEngine
) -> None:
    snapshot = load(OWNER_AND_ARGUMENTS)
    first = decide(snapshot, call("send", {"to": "x"}))
    assert first.outcome is Outcome.ALLOW
    assert decide(snapshot, call("send", {"to": "x"})) is first
    assert len(counting.asked) == 1
    # A reload is a new set: asked again.
    reloaded = load(OWNER_AND_ARGUMENTS)
    assert decide(reloaded, call("send", {"to": "x"})) == first
    assert len(counting.asked) == 2


@pytest.mark.parametrize(
    "changed",
    [
        call("send", {"to": "y"}),  # the context
        call("send", {"to": "x"}, agent=AgentFacts(AGENT.spiffe_id, "ztgate.local", True, "bob")),
        call(
            "send",
            {"to": "x"},
            agent=AgentFacts("spiffe://ztgate.local/agent/b", "ztgate.local", True, "alice"),
        ),
        call("send", {"to": "x"}, agent=None),  # anonymous
        call("lookup", {"to": "x"}),  # the action and resource
    ],
)
def test_a_request_that_differs_in_anything_is_put_to_the_engine(
    load: Load, counting: _CountingEngine, changed: Any
) -> None:
    snapshot = load(OWNER_AND_ARGUMENTS)
    assert decide(snapshot, call("send", {"to": "x"})).outcome is Outcome.ALLOW
    evaluation = decide(snapshot, changed)
    assert len(counting.asked) == 2
    assert evaluation.outcome is Outcome.DENY
    fresh = load(OWNER_AND_ARGUMENTS)
    assert evaluation == decide(fresh, changed)  # what a set that kept nothing says


def test_an_engine_failure_is_not_kept(load: Load, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = load(PERMIT_READS)
    works = engine.cedarpy.is_authorized

    def explode(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(engine.cedarpy, "is_authorized", explode)
    assert decide(snapshot, call("lookup")).outcome is Outcome.DENY
    monkeypatch.setattr(engine.cedarpy, "is_authorized", works)
    assert decide(snapshot, call("lookup")).outcome is Outcome.ALLOW


def test_kept_decisions_are_bounded_and_large_contexts_are_not_kept(
    load: Load, counting: _CountingEngine
) -> None:
    snapshot = load(OWNER_AND_ARGUMENTS)
    for n in range(model.DECISION_CACHE_SIZE + 10):
        decide(snapshot, call("send", {"to": f"x{n}"}))
        assert len(snapshot._decisions) <= model.DECISION_CACHE_SIZE
    large = call("send", {"to": "x" * (model.DECISION_CACHE_MAX_CONTEXT_CHARS + 1)})
    before = len(counting.asked)
    decide(snapshot, large)
    decide(snapshot, large)
    assert len(counting.asked) == before + 2
