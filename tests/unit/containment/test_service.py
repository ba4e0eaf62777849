"""The containment runtime: where its checks go, holds and budgets in memory, suspensions, flags."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ztgate.audit import AuditLog
from ztgate.config import Settings
from ztgate.containment.budget import usage_key
from ztgate.containment.holds import AGENT, ALL, BURST, GENERATION, HoldRegistry
from ztgate.containment.service import Containment
from ztgate.errors import StoreUnavailableError
from ztgate.metrics import Metrics
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.database import Database
from ztgate.store.hot import MemoryHotState
from ztgate.tasks.registry import GENERATION as TASKS_GENERATION
from ztgate.testing import FrozenClock, make_call

from .conftest import AGENT as RUNNER
from .conftest import add_task, audit_bodies


def settings(authentication: str = "required", **limits: Any) -> Settings:
    return Settings(gateway={"authentication": authentication}, limits=limits)


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        return Verdict(self.name, Outcome.ALLOW)


def names(checks: Any) -> list[str]:
    return [check.name for check in checks]


@pytest.fixture
def hot(clock: FrozenClock) -> MemoryHotState:
    return MemoryHotState(clock)


@pytest.fixture
async def containment(
    database: Database, clock: FrozenClock, hot: MemoryHotState, audit: AuditLog
) -> AsyncIterator[Containment]:
    found = Containment(
        settings(burst_calls_per_second=3, loop_max_repeats=2, usage_flush_seconds=60),
        database,
        clock,
        hot,
        audit,
    )
    await audit.start()
    await found.start(Metrics())
    yield found
    await found.stop()
    await audit.stop()


def ctx(clock: FrozenClock, agent: str = RUNNER, task: str = "t1") -> CallContext:
    return CallContext(clock, facts={"principal.spiffe_id": agent, "task.id": task})


# -- arrange -------------------------------------------------------------------------------------


def test_the_checks_go_where_the_docs_say(database: Database, clock: FrozenClock) -> None:
    found = Containment(settings(), database, clock, MemoryHotState(clock))
    chain = [
        Named(n) for n in ("authenticate", "warrant", "proof", "scope", "justification", "schema")
    ]
    assert names(found.arrange(chain)) == [
        "authenticate",
        "warrant",
        "halt",
        "proof",
        "limits",
        "scope",
        "justification",
        "schema",
    ]
    assert names(found.checks()) == ["halt", "limits"]
    assert names(found.limits.checks) == ["burst", "rate", "loop", "budget"]


def test_without_authentication_only_the_kill_switch_and_rate_limits(
    database: Database, clock: FrozenClock
) -> None:
    found = Containment(settings("off"), database, clock, MemoryHotState(clock))
    assert names(found.arrange([Named("justification"), Named("schema")])) == [
        "halt",
        "limits",
        "justification",
        "schema",
    ]
    assert found.burst is None and found.loop is None and found.budget is None
    assert names(found.limits.checks) == ["rate"]


def test_an_empty_chain_stays_empty(database: Database, clock: FrozenClock) -> None:
    found = Containment(settings(), database, clock, MemoryHotState(clock))
    assert found.arrange([]) == []


def test_zero_thresholds_turn_loops_and_bursts_off(database: Database, clock: FrozenClock) -> None:
    quiet = settings(burst_calls_per_second=0, loop_max_repeats=0)
    found = Containment(quiet, database, clock, MemoryHotState(clock))
    assert names(found.limits.checks) == ["rate", "budget"]


# -- holds ---------------------------------------------------------------------------------------


async def test_start_reads_the_holds_and_a_generation_reloads_them(
    database: Database, clock: FrozenClock, containment: Containment
) -> None:
    assert not containment.holds
    HoldRegistry(database, clock).kill(ALL, actor="alice")  # e.g. the CLI, another process
    assert not containment.holds
    containment.changed({GENERATION})
    assert containment.holds.everything is not None
    verdict = await containment.halt(make_call(), ctx(clock))
    assert verdict.outcome is Outcome.DENY


async def test_a_burst_suspends_at_once_then_durably_audited_and_alerted(
    database: Database,
    clock: FrozenClock,
    containment: Containment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert containment.burst is not None
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert (await containment.burst(make_call(), ctx(clock))).outcome is Outcome.ALLOW
        verdict = await containment.burst(make_call(), ctx(clock))
    assert verdict.outcome is Outcome.DENY
    # Held in memory before anything is written: the next call is stopped.
    assert (await containment.halt(make_call(), ctx(clock))).outcome is Outcome.DENY
    assert "containment alert" in caplog.text and "agent.suspended" in caplog.text
    await containment.stop()  # waits for the write
    (stored,) = HoldRegistry(database, clock).list()
    assert (stored.scope, stored.target, stored.cause) == (AGENT, RUNNER, BURST)
    (record,) = [r for r in audit_bodies(database) if r["kind"] == "containment"]
    assert record["detail"]["action"] == "agent.suspend" and record["detail"]["calls"] == 4
    assert containment.metrics is not None
    assert (
        containment.metrics.registry.get_sample_value(
            "ztgate_suspensions_total", {"cause": "burst"}
        )
        == 1.0
    )


async def test_concurrent_calls_of_one_burst_suspend_once(
    database: Database, clock: FrozenClock, containment: Containment
) -> None:
    assert containment.burst is not None
    verdicts = await asyncio.gather(
        *(containment.burst(make_call(), ctx(clock)) for _ in range(10))
    )
    assert sum(v.outcome is Outcome.DENY for v in verdicts) == 7
    await containment.stop()
    assert len(HoldRegistry(database, clock).list()) == 1


async def test_a_suspension_the_store_refuses_stays_held_and_is_retried(
    database: Database,
    clock: FrozenClock,
    containment: Containment,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = containment.registry.suspend
    failures = [StoreUnavailableError("database is locked")]

    def flaky(*args: Any) -> bool:
        if failures:
            raise failures.pop()
        return original(*args)

    monkeypatch.setattr(containment.registry, "suspend", flaky)
    await containment.suspend(RUNNER, "burst", {"calls": 9})
    await asyncio.sleep(0.05)
    assert HoldRegistry(database, clock).list() == []
    containment.reload_holds()  # a reload keeps what is not stored yet
    assert RUNNER in containment.holds.agents
    await containment.flush()
    assert [h.target for h in HoldRegistry(database, clock).list()] == [RUNNER]


async def test_a_resumed_agent_starts_with_an_empty_burst_window(
    database: Database, clock: FrozenClock, containment: Containment
) -> None:
    assert containment.burst is not None
    for _ in range(4):
        await containment.burst(make_call(), ctx(clock))
    for _ in range(500):  # until the suspension is stored (a fixed sleep flaked under load)
        if not containment._unconfirmed:
            break
        await asyncio.sleep(0.01)
    containment.changed({GENERATION})
    HoldRegistry(database, clock).resume(AGENT, RUNNER, actor="alice")
    containment.changed({GENERATION})
    assert not containment.holds
    for _ in range(3):
        assert (await containment.burst(make_call(), ctx(clock))).outcome is Outcome.ALLOW


# -- loops ---------------------------------------------------------------------------------------


async def test_a_loop_is_flagged_in_the_audit_log_and_a_metric(
    database: Database, clock: FrozenClock, containment: Containment
) -> None:
    assert containment.loop is not None
    for _ in range(2):
        await containment.loop(make_call(arguments={"q": 1}), ctx(clock))
    verdict = await containment.loop(make_call(arguments={"q": 1}, call_id="c3"), ctx(clock))
    assert verdict.outcome is Outcome.DENY
    (record,) = [r for r in audit_bodies(database) if r["kind"] == "containment"]
    assert record["detail"]["action"] == "loop.flag"
    assert (record["call_id"], record["task_id"], record["agent"]) == ("c3", "t1", RUNNER)
    assert record["arguments_sha256"] == make_call(arguments={"q": 1}).arguments_sha256
    assert containment.metrics is not None
    assert containment.metrics.registry.get_sample_value("ztgate_loops_flagged_total") == 1.0


# -- budgets ---------------------------------------------------------------------------------------


async def test_budget_use_is_written_behind_and_read_back_at_start(
    database: Database, clock: FrozenClock, containment: Containment, audit: AuditLog
) -> None:
    add_task(database, "t1", calls=2)
    containment.changed({TASKS_GENERATION})
    assert containment.budget is not None
    context = ctx(clock)
    assert (await containment.budget(make_call(), context)).outcome is Outcome.ALLOW
    await context.settle(Outcome.ALLOW)
    await containment.flush()
    assert containment.usage.read("t1") == (1, 0.0)
    # A restart: fresh hot state, the use comes back from the store.
    hot = MemoryHotState(clock)
    again = Containment(settings(), database, clock, hot, audit)
    await again.start()
    try:
        assert await hot.charge(usage_key("t1"), (0, 0), (None, None), 60) == (True, (1.0, 0.0))
        assert again.budget is not None
        context = ctx(clock)
        assert (await again.budget(make_call(), context)).outcome is Outcome.ALLOW
        await context.settle(Outcome.ALLOW)
        assert (await again.budget(make_call(), ctx(clock))).outcome is Outcome.DENY
    finally:
        await again.stop()
    assert containment.usage.read("t1") == (2, 0.0)  # stop wrote the rest


async def test_a_failed_usage_write_is_kept_for_the_next_flush(
    containment: Containment, monkeypatch: pytest.MonkeyPatch
) -> None:
    containment.usage.add("t1", 1, 0.0)

    def broken(batch: Any) -> None:
        raise StoreUnavailableError("gone")

    monkeypatch.setattr(containment.usage, "write", broken)
    await containment.flush()
    assert len(containment.usage) == 1


async def test_the_flush_loop_writes_periodically(
    database: Database, clock: FrozenClock, audit: AuditLog
) -> None:
    add_task(database, "t1")
    found = Containment(
        settings(usage_flush_seconds=0.01), database, clock, MemoryHotState(clock), audit
    )
    await found.start()
    try:
        found.usage.add("t1", 1, 0.0)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if found.usage.read("t1") is not None:
                break
        assert found.usage.read("t1") == (1, 0.0)
    finally:
        await found.stop()


async def test_a_hot_state_that_lost_its_data_gets_the_budget_use_back(
    database: Database, clock: FrozenClock, containment: Containment, hot: MemoryHotState
) -> None:
    add_task(database, "t1", calls=2)
    containment.changed({TASKS_GENERATION})
    assert containment.budget is not None
    context = ctx(clock)
    assert (await containment.budget(make_call(), context)).outcome is Outcome.ALLOW
    await context.settle(Outcome.ALLOW)  # pending: not written yet (flushed every 60 s)
    await hot.forget(usage_key("t1"))  # what a Redis restarted empty has
    await containment.reseed()
    assert containment.usage.read("t1") == (1, 0.0)  # the pending use was written first
    assert await hot.charge(usage_key("t1"), (0, 0), (None, None), 60) == (True, (1.0, 0.0))
    context = ctx(clock)
    assert (await containment.budget(make_call(), context)).outcome is Outcome.ALLOW
    await context.settle(Outcome.ALLOW)
    assert (await containment.budget(make_call(), ctx(clock))).outcome is Outcome.DENY
