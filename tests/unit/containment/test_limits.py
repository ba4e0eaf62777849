"""The `limits` check: bursts, rate limits, loops and budget in one entry of the chain."""

from __future__ import annotations

from typing import Any

from ztgate.containment.limits import LimitsCheck
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.testing import FrozenClock, make_call


class Fixed:
    def __init__(self, name: str, outcome: Outcome, **facts: Any) -> None:
        self.name = name
        self.outcome = outcome
        self.facts = facts
        self.calls = 0

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        self.calls += 1
        return Verdict(self.name, self.outcome, f"{self.name} says so", self.facts, retry_after=1.5)


async def test_all_allowing_is_one_verdict_with_every_fact(clock: FrozenClock) -> None:
    checks = [Fixed("burst", Outcome.ALLOW), Fixed("budget", Outcome.ALLOW, **{"task.calls": 3})]
    verdict = await LimitsCheck(checks)(make_call(), CallContext(clock))
    assert (verdict.check, verdict.outcome) == ("limits", Outcome.ALLOW)
    assert verdict.reason == "burst says so; budget says so"
    assert verdict.facts == {"task.calls": 3}
    assert verdict.retry_after is None


async def test_the_first_refusal_is_returned_as_it_is_and_stops(clock: FrozenClock) -> None:
    later = Fixed("loop", Outcome.ALLOW)
    checks = [Fixed("burst", Outcome.ALLOW), Fixed("rate", Outcome.DENY), later]
    verdict = await LimitsCheck(checks)(make_call(), CallContext(clock))
    assert (verdict.check, verdict.outcome, verdict.retry_after) == ("rate", Outcome.DENY, 1.5)
    assert later.calls == 0


async def test_no_checks_allows(clock: FrozenClock) -> None:
    verdict = await LimitsCheck([])(make_call(), CallContext(clock))
    assert verdict.outcome is Outcome.ALLOW
