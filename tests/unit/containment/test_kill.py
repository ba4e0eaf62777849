"""The `halt` check: the kill switch and suspensions deny before anything else is looked at."""

from __future__ import annotations

from typing import Any

from ztgate.containment.holds import AGENT, ALL, BURST, EVERYTHING, KILL, TASK, Hold, HoldSet
from ztgate.containment.kill import HaltCheck
from ztgate.models import Outcome
from ztgate.pipeline import CallContext
from ztgate.testing import FrozenClock, make_call

from .conftest import AGENT as RUNNER
from .conftest import OTHER


def ctx(clock: FrozenClock, **facts: Any) -> CallContext:
    return CallContext(clock, facts=dict(facts))


def facts(agent: str = RUNNER, task: str = "t1", delegated_by: Any = ()) -> dict[str, Any]:
    return {"principal.spiffe_id": agent, "task.id": task, "warrant.delegated_by": delegated_by}


async def test_nothing_held_allows(clock: FrozenClock) -> None:
    check = HaltCheck(HoldSet)
    verdict = await check(make_call(), ctx(clock, **facts()))
    assert verdict.outcome is Outcome.ALLOW and verdict.check == "halt"


async def test_a_killed_agent_is_denied_and_others_are_not(clock: FrozenClock) -> None:
    holds = HoldSet.of([Hold("h1", AGENT, RUNNER, KILL, "secret note", "alice", 0.0)])
    check = HaltCheck(lambda: holds)
    denied = await check(make_call(), ctx(clock, **facts()))
    assert denied.outcome is Outcome.DENY
    assert "kill switch" in denied.reason and "secret note" not in denied.reason
    assert denied.facts["containment.hold"] == "h1"
    assert (await check(make_call(), ctx(clock, **facts(OTHER)))).outcome is Outcome.ALLOW


async def test_a_sub_agent_of_a_killed_agent_is_denied(clock: FrozenClock) -> None:
    holds = HoldSet.of([Hold("h1", AGENT, RUNNER, KILL, "", "alice", 0.0)])
    verdict = await HaltCheck(lambda: holds)(
        make_call(), ctx(clock, **facts(OTHER, delegated_by=[RUNNER]))
    )
    assert verdict.outcome is Outcome.DENY


async def test_a_killed_task_and_kill_all(clock: FrozenClock) -> None:
    task = HoldSet.of([Hold("h1", TASK, "t1", KILL, "", "alice", 0.0)])
    assert (await HaltCheck(lambda: task)(make_call(), ctx(clock, **facts()))).outcome is (
        Outcome.DENY
    )
    assert (
        await HaltCheck(lambda: task)(make_call(), ctx(clock, **facts(task="t2")))
    ).outcome is Outcome.ALLOW
    everything = HoldSet.of([Hold("h2", ALL, EVERYTHING, KILL, "", "alice", 0.0)])
    # Without authentication there are no facts at all: kill all still stops the call.
    verdict = await HaltCheck(lambda: everything)(make_call(), ctx(clock))
    assert verdict.outcome is Outcome.DENY and "every call" in verdict.reason


async def test_a_suspended_agent_is_told_to_wait_for_a_principal(clock: FrozenClock) -> None:
    holds = HoldSet.of([Hold("h1", AGENT, RUNNER, BURST, "", "gateway", 0.0)])
    verdict = await HaltCheck(lambda: holds)(make_call(), ctx(clock, **facts()))
    assert verdict.outcome is Outcome.DENY and "suspended" in verdict.reason


async def test_facts_of_the_wrong_type_are_ignored(clock: FrozenClock) -> None:
    holds = HoldSet.of([Hold("h1", TASK, "t1", KILL, "", "alice", 0.0)])
    odd = {"principal.spiffe_id": 7, "task.id": ["t1"], "warrant.delegated_by": [None, 3]}
    verdict = await HaltCheck(lambda: holds)(make_call(), ctx(clock, **odd))
    assert verdict.outcome is Outcome.ALLOW


async def test_the_snapshot_is_read_on_every_call(clock: FrozenClock) -> None:
    current = [HoldSet()]
    check = HaltCheck(lambda: current[0])
    assert (await check(make_call(), ctx(clock, **facts()))).outcome is Outcome.ALLOW
    current[0] = HoldSet.of([Hold("h", AGENT, RUNNER, KILL, "", "a", 0.0)])
    assert (await check(make_call(), ctx(clock, **facts()))).outcome is Outcome.DENY
