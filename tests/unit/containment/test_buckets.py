"""The `rate` check: token buckets per agent, per task and per tool, and when to retry."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.containment.buckets import Rate, RateLimitCheck
from ztgate.models import Outcome
from ztgate.pipeline import CallContext
from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import ToolLimits

from .conftest import AGENT, OTHER


def ctx(clock: FrozenClock, tool: Any = None, **facts: Any) -> CallContext:
    entry = None if tool is None else Catalog([tool]).get(tool.name)
    return CallContext(clock, tool=entry, facts=dict(facts))


def agent_facts(agent: str = AGENT, task: str = "t1") -> dict[str, Any]:
    return {"principal.spiffe_id": agent, "task.id": task}


@pytest.fixture
def hot(clock: FrozenClock) -> MemoryHotState:
    return MemoryHotState(clock)


async def test_no_limits_configured_allows_without_touching_hot_state(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    check = RateLimitCheck(hot)
    for _ in range(1000):
        verdict = await check(make_call(), ctx(clock, make_tool(), **agent_facts()))
        assert verdict.outcome is Outcome.ALLOW
    assert not hot._buckets


async def test_the_agent_bucket_refuses_with_when_to_retry(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    check = RateLimitCheck(hot, agent=Rate(2, 2))
    for _ in range(2):
        assert (await check(make_call(), ctx(clock, **agent_facts()))).outcome is Outcome.ALLOW
    verdict = await check(make_call(), ctx(clock, **agent_facts()))
    assert verdict.outcome is Outcome.DENY
    assert verdict.retry_after == pytest.approx(0.5)
    assert f"agent {AGENT}" in verdict.reason and "2/s" in verdict.reason
    # Another agent has a bucket of its own.
    assert (await check(make_call(), ctx(clock, **agent_facts(OTHER)))).outcome is Outcome.ALLOW
    clock.advance(0.5)
    assert (await check(make_call(), ctx(clock, **agent_facts()))).outcome is Outcome.ALLOW


async def test_the_task_bucket_is_shared_by_the_tasks_agents(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    check = RateLimitCheck(hot, task=Rate(1, 1))
    assert (await check(make_call(), ctx(clock, **agent_facts()))).outcome is Outcome.ALLOW
    verdict = await check(make_call(), ctx(clock, **agent_facts(OTHER)))
    assert verdict.outcome is Outcome.DENY and "task t1" in verdict.reason


async def test_the_tool_bucket_and_a_tools_own_limit(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    check = RateLimitCheck(hot, tool=Rate(100, 100))
    slow = make_tool("wire", limits=ToolLimits(rate_per_second=0.5, burst=1))
    assert (await check(make_call("wire"), ctx(clock, slow))).outcome is Outcome.ALLOW
    verdict = await check(make_call("wire"), ctx(clock, slow))
    assert verdict.outcome is Outcome.DENY and "tool wire" in verdict.reason
    assert verdict.retry_after == pytest.approx(2.0)
    # Other tools get the default bucket: no agent needed (authentication off).
    for _ in range(100):
        assert (await check(make_call(), ctx(clock, make_tool()))).outcome is Outcome.ALLOW
    assert (await check(make_call(), ctx(clock, make_tool()))).outcome is Outcome.DENY


async def test_an_unknown_tool_gets_no_bucket(hot: MemoryHotState, clock: FrozenClock) -> None:
    check = RateLimitCheck(hot, tool=Rate(1, 1))
    for _ in range(5):
        verdict = await check(make_call("nope"), ctx(clock))
        assert verdict.outcome is Outcome.ALLOW
    assert not hot._buckets


async def test_a_refused_call_takes_from_no_bucket(hot: MemoryHotState, clock: FrozenClock) -> None:
    check = RateLimitCheck(hot, agent=Rate(1, 5), task=Rate(1, 1))
    await check(make_call(), ctx(clock, **agent_facts()))
    for _ in range(3):
        verdict = await check(make_call(), ctx(clock, **agent_facts()))
        assert verdict.outcome is Outcome.DENY and "task t1" in verdict.reason
    # The agent's bucket lost one token, not four: four more calls in other tasks pass.
    for task in ("t2", "t3", "t4", "t5"):
        verdict = await check(make_call(), ctx(clock, **agent_facts(task=task)))
        assert verdict.outcome is Outcome.ALLOW, verdict.reason
    verdict = await check(make_call(), ctx(clock, **agent_facts(task="t6")))
    assert verdict.outcome is Outcome.DENY and f"agent {AGENT}" in verdict.reason


async def test_wall_clock_changes_around_refill_mint_nothing(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    check = RateLimitCheck(hot, agent=Rate(1, 1))
    assert (await check(make_call(), ctx(clock, **agent_facts()))).outcome is Outcome.ALLOW
    clock.set(clock.now() + 3600)
    verdict = await check(make_call(), ctx(clock, **agent_facts()))
    assert verdict.outcome is Outcome.DENY and verdict.retry_after == pytest.approx(1.0)
    clock.set(clock.now() - 7200)
    clock.advance(1.0)
    assert (await check(make_call(), ctx(clock, **agent_facts()))).outcome is Outcome.ALLOW


def test_a_rate_must_be_positive_and_a_burst_at_least_one() -> None:
    with pytest.raises(ValueError, match="rate"):
        Rate(0, 1)
    with pytest.raises(ValueError, match="burst"):
        Rate(1, 0.5)
    assert Rate(2.5, 3).describe() == "2.5/s, burst 3"
