"""Decision: deny beats ask beats allow; no verdict at all is a deny."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.models import Decision, Obligation, Outcome, Phase, Verdict
from ztgate.testing import make_call

ALLOW, ASK, DENY = Outcome.ALLOW, Outcome.ASK, Outcome.DENY


def _decision(*outcomes: Outcome) -> Decision:
    return Decision(
        make_call(),
        tuple(Verdict(f"c{i}", o, f"reason {i}") for i, o in enumerate(outcomes)),
    )


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ((), DENY),
        ((ALLOW,), ALLOW),
        ((ALLOW, ALLOW, ALLOW), ALLOW),
        ((ASK,), ASK),
        ((ALLOW, ASK), ASK),
        ((ASK, ALLOW), ASK),
        ((DENY,), DENY),
        ((ALLOW, DENY), DENY),
        ((DENY, ALLOW), DENY),
        ((ASK, DENY), DENY),
        ((DENY, ASK), DENY),
        ((ALLOW, ASK, DENY, ALLOW), DENY),
    ],
)
def test_outcome_deny_beats_ask_beats_allow(
    outcomes: tuple[Outcome, ...], expected: Outcome
) -> None:
    assert _decision(*outcomes).outcome is expected


def test_defaults_are_call_phase_and_zero_elapsed() -> None:
    decision = _decision(ALLOW)
    assert decision.phase is Phase.CALL
    assert decision.elapsed_seconds == 0.0


@pytest.mark.parametrize(
    ("outcomes", "deciding"),
    [
        ((ALLOW, ALLOW), ("c0", "c1")),
        ((ALLOW, ASK, ALLOW, ASK), ("c1", "c3")),
        ((ALLOW, ASK, DENY), ("c2",)),
        ((DENY, ASK, DENY), ("c0", "c2")),
        ((), ()),
    ],
)
def test_deciding_names_the_verdicts_that_made_the_outcome(
    outcomes: tuple[Outcome, ...], deciding: tuple[str, ...]
) -> None:
    assert tuple(v.check for v in _decision(*outcomes).deciding) == deciding


def test_obligations_are_collected_from_every_verdict_in_check_order() -> None:
    redact = Obligation("redact", "secrets", {"paths": ["/a"]})
    spotlight = Obligation("spotlight", "injection")
    quarantine = Obligation("quarantine", "injection")
    decision = Decision(
        make_call(),
        (
            Verdict("secrets", ALLOW, obligations=(redact,)),
            Verdict("plain", ALLOW),
            Verdict("injection", ALLOW, obligations=(spotlight, quarantine)),
        ),
    )
    assert decision.obligations == (redact, spotlight, quarantine)


def test_no_verdicts_means_no_obligations() -> None:
    assert _decision().obligations == ()


def test_obligation_detail_defaults_to_an_immutable_empty_mapping() -> None:
    detail = Obligation("redact", "secrets").detail
    assert dict(detail) == {}
    with pytest.raises(TypeError):
        detail["x"] = 1  # type: ignore[index]


def test_reasons_of_an_empty_decision_say_no_check_ran() -> None:
    assert _decision().reasons() == [
        {"check": "pipeline", "outcome": "deny", "reason": "no check ran"}
    ]


def test_reasons_list_only_the_deciding_verdicts() -> None:
    decision = _decision(ALLOW, ASK, DENY, ASK)
    assert decision.reasons() == [{"check": "c2", "outcome": "deny", "reason": "reason 2"}]


def test_reasons_of_an_ask_list_every_ask() -> None:
    assert _decision(ASK, ALLOW, ASK).reasons() == [
        {"check": "c0", "outcome": "ask", "reason": "reason 0"},
        {"check": "c2", "outcome": "ask", "reason": "reason 2"},
    ]


def test_reasons_of_an_allow_list_every_verdict() -> None:
    assert _decision(ALLOW, ALLOW).reasons() == [
        {"check": "c0", "outcome": "allow", "reason": "reason 0"},
        {"check": "c1", "outcome": "allow", "reason": "reason 1"},
    ]


def test_records_are_frozen() -> None:
    verdict = Verdict("c", ALLOW)
    with pytest.raises(AttributeError):
        verdict.outcome = DENY  # type: ignore[misc]
    decision = _decision(ALLOW)
    with pytest.raises(AttributeError):
        decision.verdicts = ()  # type: ignore[misc]


def test_findings_are_the_guard_facts_behind_a_call_not_allowed() -> None:
    tainted = Verdict("provenance", ALLOW, "argument /to: tainted", {"guards.tainted": ["/to"]})
    clean = Verdict("dlp", ALLOW, "nothing found", {"guards.secrets_leaving": []})
    other = Verdict("scope", ALLOW, "within scope", {"scope.within": True})
    asked = Verdict("policy", ASK, "approval required")
    decision = Decision(make_call(), (other, tainted, clean, asked))
    assert decision.findings() == [
        {"check": "provenance", "outcome": "allow", "reason": "argument /to: tainted"}
    ]
    allowed = Decision(make_call(), (tainted, Verdict("policy", ALLOW, "permitted")))
    assert allowed.findings() == []  # an allowed call's record lists every verdict already


def _reference_outcome(outcomes: list[object]) -> Outcome:
    """The rule as written: deny (or anything not an Outcome) beats ask beats allow."""
    if not outcomes or any(o is not ALLOW and o is not ASK for o in outcomes):
        return DENY
    return ASK if ASK in outcomes else ALLOW


@given(st.lists(st.sampled_from([ALLOW, ASK, DENY, "allow", None]), max_size=8))
def test_the_outcome_found_once_is_the_outcome_of_the_verdicts(outcomes: list[object]) -> None:
    verdicts = tuple(Verdict(f"c{i}", o, "") for i, o in enumerate(outcomes))  # type: ignore[arg-type]
    decision = Decision(make_call(), verdicts)
    expected = _reference_outcome(outcomes)
    assert decision.outcome is expected
    assert decision.outcome is expected  # read again: the remembered one
    # A copy with another call has the same verdicts, so the same outcome;
    # one with other verdicts has theirs, never the copied one.
    assert dataclasses.replace(decision, call=make_call(call_id="c2")).outcome is expected
    other = dataclasses.replace(decision, verdicts=(*verdicts, Verdict("x", DENY)))
    assert other.outcome is DENY
    assert decision == Decision(make_call(), verdicts)  # the remembered outcome is not compared
