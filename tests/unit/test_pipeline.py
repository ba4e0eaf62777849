"""The call pipeline: ordered checks, fail-closed on anything unexpected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from ztgate.errors import StoreUnavailableError
from ztgate.models import Obligation, Outcome, Phase, ToolCall, ToolResult, Verdict
from ztgate.pipeline import STORE_UNAVAILABLE, CallContext, Pipeline
from ztgate.testing import FrozenClock, make_call

ALLOW, ASK, DENY = Outcome.ALLOW, Outcome.ASK, Outcome.DENY


class Fixed:
    """A check that records that it ran and returns a fixed verdict."""

    def __init__(
        self,
        name: str,
        outcome: Outcome,
        log: list[str],
        facts: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._verdict = Verdict(name, outcome, f"{name} says {outcome.value}", facts or {})
        self._log = log

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        self._log.append(self.name)
        return self._verdict


class FixedResult(Fixed):
    """The same, as a post-call check."""

    async def __call__(  # type: ignore[override]
        self, call: ToolCall, result: ToolResult, ctx: CallContext
    ) -> Verdict:
        self._log.append(self.name)
        return self._verdict


class Returns:
    """A check returning whatever it is given, verdict or not."""

    def __init__(self, value: object, name: str = "odd") -> None:
        self.name = name
        self._value = value

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Any:
        return self._value


@pytest.fixture
def ctx(clock: FrozenClock) -> CallContext:
    return CallContext(clock)


@pytest.fixture
def log() -> list[str]:
    return []


async def test_checks_run_in_order(ctx: CallContext, log: list[str]) -> None:
    names = ["authenticate", "warrant", "proof", "schema", "policy"]
    pipeline = Pipeline([Fixed(n, ALLOW, log) for n in names])
    decision = await pipeline.decide(make_call(), ctx)
    assert log == names
    assert [v.check for v in decision.verdicts] == names
    assert decision.outcome is ALLOW
    assert decision.phase is Phase.CALL


async def test_first_deny_short_circuits(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline([Fixed("a", ALLOW, log), Fixed("b", DENY, log), Fixed("c", ALLOW, log)])
    decision = await pipeline.decide(make_call(), ctx)
    assert log == ["a", "b"]
    assert decision.outcome is DENY
    assert decision.reasons() == [{"check": "b", "outcome": "deny", "reason": "b says deny"}]


async def test_ask_is_remembered_and_the_chain_goes_on(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline([Fixed("a", ASK, log), Fixed("b", ALLOW, log)])
    decision = await pipeline.decide(make_call(), ctx)
    assert log == ["a", "b"]
    assert decision.outcome is ASK
    assert [v.check for v in decision.deciding] == ["a"]


async def test_a_later_deny_beats_an_earlier_ask(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline(
        [Fixed("a", ASK, log), Fixed("b", DENY, log), Fixed("c", ALLOW, log)],
    )
    decision = await pipeline.decide(make_call(), ctx)
    assert log == ["a", "b"]
    assert decision.outcome is DENY
    assert [v.check for v in decision.deciding] == ["b"]


async def test_no_checks_at_all_is_a_deny(ctx: CallContext) -> None:
    decision = await Pipeline([]).decide(make_call(), ctx)
    assert decision.verdicts == ()
    assert decision.outcome is DENY


class Boom(Exception):
    pass


async def test_a_raising_check_denies_with_the_exception_type(
    ctx: CallContext, log: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    class Raising:
        name = "flaky"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            raise Boom("secret-detail-in-message")

    pipeline = Pipeline([Raising(), Fixed("after", ALLOW, log)])
    with caplog.at_level(logging.ERROR, logger="ztgate.pipeline"):
        decision = await pipeline.decide(make_call(), ctx)
    assert decision.outcome is DENY
    assert log == []
    (verdict,) = decision.verdicts
    assert verdict.check == "flaky"
    assert verdict.reason == "check failed: Boom"
    assert "secret-detail-in-message" not in verdict.reason
    assert any("flaky" in record.getMessage() for record in caplog.records)


async def test_a_check_whose_store_does_not_answer_denies_and_says_so(
    ctx: CallContext, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreachable:
        name = "proof"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            raise StoreUnavailableError("hot state (redis at redis://cache:6379/0) unavailable")

    with caplog.at_level(logging.ERROR, logger="ztgate.pipeline"):
        decision = await Pipeline([Unreachable()]).decide(make_call(), ctx)
    assert decision.outcome is DENY
    (verdict,) = decision.verdicts
    assert verdict.reason == "check failed: StoreUnavailableError"
    assert verdict.facts == {STORE_UNAVAILABLE: True}
    # Logged as an outage (one line naming the store), not as a bug with a traceback.
    (record,) = caplog.records
    assert "redis://cache:6379/0" in record.getMessage() and record.exc_info is None


async def test_a_synchronous_check_that_raises_denies(ctx: CallContext) -> None:
    class SyncRaising:
        name = "sync"

        def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            raise KeyError("nope")

    decision = await Pipeline([SyncRaising()]).decide(make_call(), ctx)  # type: ignore[list-item]
    assert decision.outcome is DENY
    assert decision.verdicts[0].reason == "check failed: KeyError"


async def test_a_synchronous_check_returning_a_verdict_still_denies(ctx: CallContext) -> None:
    """A verdict that cannot be awaited is not trusted: the check is misbuilt."""

    class SyncAllow:
        name = "sync"

        def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            return Verdict(self.name, ALLOW)

    decision = await Pipeline([SyncAllow()]).decide(make_call(), ctx)  # type: ignore[list-item]
    assert decision.outcome is DENY


async def test_a_check_that_times_out_denies(ctx: CallContext, log: list[str]) -> None:
    class Slow:
        name = "slow"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            await asyncio.sleep(30)
            return Verdict(self.name, ALLOW)

    pipeline = Pipeline([Slow(), Fixed("after", ALLOW, log)], check_timeout=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    decision = await pipeline.decide(make_call(), ctx)
    assert loop.time() - started < 5
    assert decision.outcome is DENY
    assert decision.verdicts[0].check == "slow"
    assert decision.verdicts[0].reason == "check timed out after 0.02s"
    assert log == []


async def test_a_check_within_its_timeout_passes(ctx: CallContext) -> None:
    class Quick:
        name = "quick"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            await asyncio.sleep(0)
            return Verdict(self.name, ALLOW)

    decision = await Pipeline([Quick()], check_timeout=5).decide(make_call(), ctx)
    assert decision.outcome is ALLOW


class Sleepy:
    """A check that sleeps `seconds`, then allows (or swallows a cancellation, and allows)."""

    def __init__(self, name: str, seconds: float, *, stubborn: bool = False) -> None:
        self.name = name
        self.seconds = seconds
        self.stubborn = stubborn

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            if not self.stubborn:
                raise
        return Verdict(self.name, ALLOW)


async def test_each_check_has_the_whole_timeout_however_long_the_chain(
    ctx: CallContext,
) -> None:
    # One timer serves the chain: a later check's time counts from its own start.
    checks = [Sleepy(f"c{n}", 0.06) for n in range(4)]
    decision = await Pipeline(checks, check_timeout=0.1).decide(make_call(), ctx)
    assert decision.outcome is ALLOW and len(decision.verdicts) == 4


async def test_a_late_check_that_times_out_denies_after_quick_ones(ctx: CallContext) -> None:
    checks = [Sleepy("quick", 0.03), Sleepy("quick too", 0), Sleepy("slow", 30)]
    pipeline = Pipeline(checks, check_timeout=0.05)
    decision = await asyncio.wait_for(pipeline.decide(make_call(), ctx), 5)
    assert decision.outcome is DENY
    assert decision.verdicts[-1] == Verdict("slow", DENY, "check timed out after 0.05s")
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_outside_is_not_taken_for_a_timeout(ctx: CallContext) -> None:
    pipeline = Pipeline([Sleepy("slow", 30)], check_timeout=10)
    task = asyncio.create_task(pipeline.decide(make_call(), ctx))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_check_that_swallows_its_timeout_leaves_no_cancellation_behind(
    ctx: CallContext,
) -> None:
    # As with asyncio.timeout: its verdict stands, and the task is not cancelled later.
    pipeline = Pipeline([Sleepy("stubborn", 30, stubborn=True)], check_timeout=0.02)
    decision = await pipeline.decide(make_call(), ctx)
    assert decision.outcome is ALLOW
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0.05)  # no timer left to fire


async def test_result_checks_each_have_the_whole_timeout(ctx: CallContext) -> None:
    class SleepyResult(Sleepy):
        async def __call__(  # type: ignore[override]
            self, call: ToolCall, result: ToolResult, ctx: CallContext
        ) -> Verdict:
            return await super().__call__(call, ctx)

    checks = [SleepyResult("r1", 0.06), SleepyResult("r2", 0.06), SleepyResult("r3", 30)]
    review = await Pipeline([], checks, check_timeout=0.1).review(make_call(), _result(), ctx)
    assert [v.outcome for v in review.verdicts] == [ALLOW, ALLOW, DENY]
    assert review.verdicts[-1].reason == "check timed out after 0.1s"


@pytest.mark.parametrize(
    "value",
    [None, True, "allow", ALLOW, {"outcome": "allow"}, ("c", ALLOW)],
    ids=["none", "bool", "str", "outcome", "dict", "tuple"],
)
async def test_a_check_returning_no_verdict_denies(ctx: CallContext, value: object) -> None:
    decision = await Pipeline([Returns(value)]).decide(make_call(), ctx)
    assert decision.outcome is DENY
    assert decision.verdicts[0].check == "odd"
    assert decision.verdicts[0].reason == "check returned no verdict"


@pytest.mark.parametrize("outcome", ["deny", None])
async def test_a_verdict_whose_outcome_is_not_an_outcome_denies(
    ctx: CallContext, outcome: object
) -> None:
    """Fail closed on a malformed verdict: only a real `Outcome.ALLOW` may allow.

    A plugin check written against the wire format (`"deny"`) must not let the call through.
    """
    malformed = Verdict("odd", outcome)  # type: ignore[arg-type]
    decision = await Pipeline([Returns(malformed)]).decide(make_call(), ctx)
    assert decision.outcome is DENY


async def test_a_verdict_with_malformed_facts_denies_instead_of_raising(ctx: CallContext) -> None:
    malformed = Verdict("odd", ALLOW, facts=None)  # type: ignore[arg-type]
    decision = await Pipeline([Returns(malformed)]).decide(make_call(), ctx)
    assert decision.outcome is DENY


async def test_facts_accumulate_into_the_context(ctx: CallContext, log: list[str]) -> None:
    seen: dict[str, Any] = {}

    class Reader:
        name = "policy"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            seen.update(ctx.facts)
            return Verdict(self.name, ALLOW)

    pipeline = Pipeline(
        [
            Fixed("secrets", ALLOW, log, {"secrets": 2, "tainted": False}),
            Fixed("provenance", ASK, log, {"tainted": True}),
            Reader(),
        ]
    )
    await pipeline.decide(make_call(), ctx)
    assert seen == {"secrets": 2, "tainted": True}
    assert ctx.facts == {"secrets": 2, "tainted": True}


async def test_facts_of_a_denying_check_are_kept(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline([Fixed("guard", DENY, log, {"found": "x"})])
    await pipeline.decide(make_call(), ctx)
    assert ctx.facts == {"found": "x"}


async def test_checks_receive_the_call_and_context(ctx: CallContext) -> None:
    received: list[tuple[ToolCall, CallContext]] = []

    class Spy:
        name = "spy"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            received.append((call, ctx))
            return Verdict(self.name, ALLOW)

    call = make_call("weather", {"city": "Oslo"})
    await Pipeline([Spy()]).decide(call, ctx)
    assert received == [(call, ctx)]


async def test_elapsed_time_is_read_from_the_context_clock() -> None:
    clock = FrozenClock()

    class Ticking:
        name = "ticking"

        async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
            clock.advance(1.5)
            return Verdict(self.name, ALLOW)

    decision = await Pipeline([Ticking(), Ticking()]).decide(make_call(), CallContext(clock))
    assert decision.elapsed_seconds == pytest.approx(3.0)


# -- review ------------------------------------------------------------------------------


def _result(body: Any = None) -> ToolResult:
    return ToolResult(200, body if body is not None else {"ok": True})


async def test_review_runs_result_checks_in_order(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline([], [FixedResult("r1", ALLOW, log), FixedResult("r2", ALLOW, log)])
    decision = await pipeline.review(make_call(), _result(), ctx)
    assert log == ["r1", "r2"]
    assert decision.phase is Phase.RESULT
    assert decision.outcome is ALLOW
    assert [v.check for v in decision.verdicts] == ["r1", "r2"]


async def test_review_with_no_result_checks_allows(ctx: CallContext) -> None:
    decision = await Pipeline([]).review(make_call(), _result(), ctx)
    assert decision.outcome is ALLOW
    assert decision.phase is Phase.RESULT
    assert [v.check for v in decision.verdicts] == ["pipeline"]


async def test_review_deny_withholds_and_short_circuits(ctx: CallContext, log: list[str]) -> None:
    pipeline = Pipeline(
        [],
        [
            FixedResult("r1", ALLOW, log),
            FixedResult("r2", DENY, log),
            FixedResult("r3", ALLOW, log),
        ],
    )
    decision = await pipeline.review(make_call(), _result(), ctx)
    assert decision.outcome is DENY
    assert log == ["r1", "r2"]
    assert decision.reasons() == [{"check": "r2", "outcome": "deny", "reason": "r2 says deny"}]


async def test_review_collects_obligations(ctx: CallContext) -> None:
    redact = Obligation("redact", "secrets", {"paths": ["/token"]})

    class Redacting:
        name = "secrets"

        async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
            return Verdict(self.name, ALLOW, "found a token", obligations=(redact,))

    decision = await Pipeline([], [Redacting()]).review(make_call(), _result(), ctx)
    assert decision.outcome is ALLOW
    assert decision.obligations == (redact,)


async def test_review_passes_the_result_to_checks(ctx: CallContext) -> None:
    seen: list[ToolResult] = []

    class Spy:
        name = "spy"

        async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
            seen.append(result)
            return Verdict(self.name, ALLOW)

    result = _result({"answer": 42})
    await Pipeline([], [Spy()]).review(make_call(), result, ctx)
    assert seen == [result]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _raise(ValueError()), "check failed: ValueError"),
        (lambda: None, "check returned no verdict"),
    ],
    ids=["raises", "none"],
)
async def test_review_fails_closed(ctx: CallContext, make: Callable[[], Any], reason: str) -> None:
    class Odd:
        name = "odd"

        async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Any:
            return make()

    decision = await Pipeline([], [Odd()]).review(make_call(), _result(), ctx)
    assert decision.outcome is DENY
    assert decision.verdicts[0].reason == reason


async def test_review_timeout_denies(ctx: CallContext) -> None:
    class Slow:
        name = "slow"

        async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
            await asyncio.sleep(30)
            return Verdict(self.name, ALLOW)

    decision = await Pipeline([], [Slow()], check_timeout=0.02).review(make_call(), _result(), ctx)
    assert decision.outcome is DENY
    assert "timed out" in decision.verdicts[0].reason


def _raise(exc: Exception) -> Any:
    raise exc
