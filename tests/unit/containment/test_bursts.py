"""The `burst` check: too many calls too fast suspend the agent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ztgate.containment.bursts import BurstCheck, window_key
from ztgate.models import Outcome
from ztgate.pipeline import CallContext
from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock, make_call

from .conftest import AGENT, OTHER


class Suspensions:
    def __init__(self) -> None:
        self.made: list[tuple[str, str, Mapping[str, Any]]] = []

    async def __call__(self, agent: str, reason: str, detail: Mapping[str, Any]) -> None:
        self.made.append((agent, reason, detail))


def ctx(clock: FrozenClock, agent: str | None = AGENT) -> CallContext:
    facts = {} if agent is None else {"principal.spiffe_id": agent, "task.id": "t1"}
    return CallContext(clock, facts=facts)


@pytest.fixture
def suspensions() -> Suspensions:
    return Suspensions()


@pytest.fixture
def check(clock: FrozenClock, suspensions: Suspensions) -> BurstCheck:
    return BurstCheck(MemoryHotState(clock), threshold=5, window=1.0, suspend=suspensions)


async def test_the_call_beyond_the_threshold_suspends_the_agent(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(5):
        assert (await check(make_call(), ctx(clock))).outcome is Outcome.ALLOW
        clock.advance(0.01)
    verdict = await check(make_call(call_id="c6", tool="lookup"), ctx(clock))
    assert verdict.outcome is Outcome.DENY
    assert "more than 5 calls within 1 s" in verdict.reason
    assert "suspended" in verdict.reason
    ((agent, reason, detail),) = suspensions.made
    assert agent == AGENT and reason == verdict.reason
    assert detail["calls"] == 6 and detail["call_id"] == "c6" and detail["task_id"] == "t1"


async def test_calls_spread_over_time_never_suspend(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(100):
        assert (await check(make_call(), ctx(clock))).outcome is Outcome.ALLOW
        clock.advance(0.2)  # exactly 5 per second
    assert not suspensions.made


async def test_each_agent_has_its_own_window(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(5):
        await check(make_call(), ctx(clock))
        await check(make_call(), ctx(clock, OTHER))
    assert not suspensions.made


async def test_without_an_agent_nothing_is_counted(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(50):
        assert (await check(make_call(), ctx(clock, None))).outcome is Outcome.ALLOW
    assert not suspensions.made


async def test_a_wall_clock_jump_does_not_empty_the_window(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(5):
        await check(make_call(), ctx(clock))
    clock.set(clock.now() + 3600)
    assert (await check(make_call(), ctx(clock))).outcome is Outcome.DENY
    assert len(suspensions.made) == 1


async def test_a_reset_agent_starts_with_an_empty_window(
    check: BurstCheck, clock: FrozenClock, suspensions: Suspensions
) -> None:
    for _ in range(6):
        await check(make_call(), ctx(clock))
    check.reset({AGENT})
    for _ in range(5):
        assert (await check(make_call(), ctx(clock))).outcome is Outcome.ALLOW
    assert window_key(AGENT) == f"burst:{AGENT}"


def test_a_threshold_needs_a_call_and_a_window() -> None:
    with pytest.raises(ValueError):
        BurstCheck(MemoryHotState(FrozenClock()), threshold=0, window=1, suspend=Suspensions())
    with pytest.raises(ValueError):
        BurstCheck(MemoryHotState(FrozenClock()), threshold=1, window=0, suspend=Suspensions())
