"""The checks that keep hot state, on two gateways sharing one Redis: they count as one.

Each "replica" is the check as the gateway builds it, on its own
`RedisHotState` (own connections, the server's clock), both on one server
and prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ztgate.containment.bursts import BurstCheck
from ztgate.containment.loops import LoopCheck
from ztgate.guards.injection.check import InjectionSeenCheck, mark_key
from ztgate.models import Outcome, ToolCall
from ztgate.pipeline import CallContext
from ztgate.store.hot_redis import RedisHotState
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock, make_call

AGENT = "spiffe://ztgate.local/agents/a"


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisHotState, ...]]:
    prefix = f"test:{uuid.uuid4().hex}:"
    states = tuple(RedisHotState.from_url(redis_server.url, prefix=prefix) for _ in range(2))
    for state in states:
        await state.begin()
    yield states
    for state in states:
        await state.close()


def _ctx(task: str = "task-1") -> CallContext:
    return CallContext(FrozenClock(), facts={"principal.spiffe_id": AGENT, "task.id": task})


async def test_a_burst_spread_over_two_replicas_suspends(
    replicas: tuple[RedisHotState, ...],
) -> None:
    suspended: list[str] = []

    async def suspend(agent: str, reason: str, detail: Any) -> None:
        suspended.append(agent)

    checks = [BurstCheck(hot, threshold=6, window=60, suspend=suspend) for hot in replicas]
    outcomes = [(await checks[i % 2](make_call(), _ctx())).outcome for i in range(7)]
    # Six calls in all, three on each: the seventh, on either, is the burst.
    assert outcomes == [Outcome.ALLOW] * 6 + [Outcome.DENY]
    assert suspended == [AGENT]


async def test_a_loop_spread_over_two_replicas_is_denied_and_flagged_once(
    replicas: tuple[RedisHotState, ...],
) -> None:
    flagged: list[int] = []

    async def flag(call: ToolCall, agent: str | None, task: str, count: int) -> None:
        flagged.append(count)

    checks = [LoopCheck(hot, max_repeats=4, window=60, flag=flag) for hot in replicas]
    call = make_call("search", {"q": "same"})
    outcomes = [(await checks[i % 2](call, _ctx())).outcome for i in range(8)]
    assert outcomes == [Outcome.ALLOW] * 4 + [Outcome.DENY] * 4
    assert flagged == [5]  # one episode, flagged by one replica


async def test_a_task_marked_on_one_replica_carries_the_fact_on_the_other(
    replicas: tuple[RedisHotState, ...],
) -> None:
    one, two = replicas
    call, ctx = make_call(), _ctx("task-read-injection")
    key = mark_key(call, ctx)
    assert key is not None
    seen = InjectionSeenCheck(two)
    assert not (await seen(call, ctx)).facts
    await one.mark(key, 60)  # what InjectionResultCheck does on the replica that read it
    assert (await seen(call, _ctx("task-read-injection"))).facts == {"guards.injection_seen": True}
    await one.unmark(key)
    assert not (await seen(call, _ctx("task-read-injection"))).facts
