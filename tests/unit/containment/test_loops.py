"""The `loop` check: the same call again and again in a task is denied and flagged once."""

from __future__ import annotations

import pytest

from ztgate.containment.loops import LoopCheck
from ztgate.models import Outcome, ToolCall
from ztgate.pipeline import CallContext
from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock, make_call

from .conftest import AGENT


class Flags:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str | None, str, int]] = []

    async def __call__(self, call: ToolCall, agent: str | None, task: str, count: int) -> None:
        self.raised.append((call.call_id, agent, task, count))


def ctx(clock: FrozenClock, task: str | None = "t1") -> CallContext:
    facts = {} if task is None else {"principal.spiffe_id": AGENT, "task.id": task}
    return CallContext(clock, facts=facts)


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def check(clock: FrozenClock, flags: Flags) -> LoopCheck:
    return LoopCheck(MemoryHotState(clock), max_repeats=3, window=60.0, flag=flags)


async def test_more_than_n_identical_calls_are_denied_and_flagged_once(
    check: LoopCheck, clock: FrozenClock, flags: Flags
) -> None:
    for _ in range(3):
        assert (await check(make_call(arguments={"q": 1}), ctx(clock))).outcome is Outcome.ALLOW
    for i in range(5):
        verdict = await check(make_call(arguments={"q": 1}, call_id=f"c{i}"), ctx(clock))
        assert verdict.outcome is Outcome.DENY
        assert "more than 3 times within 60 s in task t1" in verdict.reason
    assert flags.raised == [("c0", AGENT, "t1", 4)]


async def test_other_arguments_tools_and_tasks_are_other_calls(
    check: LoopCheck, clock: FrozenClock
) -> None:
    for _ in range(3):
        await check(make_call(arguments={"q": 1}), ctx(clock))
    assert (await check(make_call(arguments={"q": 2}), ctx(clock))).outcome is Outcome.ALLOW
    assert (await check(make_call("other", {"q": 1}), ctx(clock))).outcome is Outcome.ALLOW
    assert (await check(make_call(arguments={"q": 1}), ctx(clock, "t2"))).outcome is (Outcome.ALLOW)


async def test_key_order_does_not_make_a_call_different(
    check: LoopCheck, clock: FrozenClock
) -> None:
    for _ in range(3):
        await check(make_call(arguments={"a": 1, "b": 2}), ctx(clock))
    verdict = await check(make_call(arguments={"b": 2, "a": 1}), ctx(clock))
    assert verdict.outcome is Outcome.DENY


async def test_a_pause_of_a_window_ends_the_loop(
    check: LoopCheck, clock: FrozenClock, flags: Flags
) -> None:
    for _ in range(4):
        await check(make_call(), ctx(clock))
    clock.advance(60)
    assert (await check(make_call(), ctx(clock))).outcome is Outcome.ALLOW
    for _ in range(3):
        await check(make_call(), ctx(clock))
    assert len(flags.raised) == 2  # a second episode, flagged again


async def test_without_a_task_nothing_is_counted(check: LoopCheck, clock: FrozenClock) -> None:
    for _ in range(10):
        assert (await check(make_call(), ctx(clock, None))).outcome is Outcome.ALLOW


def test_loop_detection_needs_a_repeat_and_a_window() -> None:
    with pytest.raises(ValueError):
        LoopCheck(MemoryHotState(FrozenClock()), max_repeats=0, window=1, flag=Flags())


async def test_wall_clock_jumps_neither_end_nor_stretch_a_window(
    check: LoopCheck, clock: FrozenClock
) -> None:
    for _ in range(3):
        await check(make_call(), ctx(clock))
    clock.set(clock.now() + 86400)  # a day ahead: the repetitions are not forgotten
    assert (await check(make_call(), ctx(clock))).outcome is Outcome.DENY
    clock.set(clock.now() - 2 * 86400)  # a day behind: a real window later they are
    clock.advance(60)
    assert (await check(make_call(), ctx(clock))).outcome is Outcome.ALLOW
