"""Holds: kill and resume agents, tasks and everything, durably, audited, with a generation."""

from __future__ import annotations

import pytest

from ztgate.audit import AuditLog
from ztgate.containment.holds import (
    AGENT,
    ALL,
    BURST,
    EVERYTHING,
    GENERATION,
    KILL,
    TASK,
    Hold,
    HoldRegistry,
    HoldSet,
    normalise,
)
from ztgate.errors import InvalidInputError, NotFoundError
from ztgate.store.database import Database
from ztgate.store.generations import read_all
from ztgate.testing import FrozenClock

from .conftest import AGENT as RUNNER
from .conftest import OTHER, add_task, audit_bodies


@pytest.fixture
def registry(database: Database, clock: FrozenClock, audit: AuditLog) -> HoldRegistry:
    return HoldRegistry(database, clock, audit=audit)


def generation(database: Database) -> int:
    with database.read() as conn:
        return read_all(conn).get(GENERATION, 0)


def test_kill_an_agent_holds_it_durably_and_audits(
    registry: HoldRegistry, database: Database
) -> None:
    hold = registry.kill(AGENT, RUNNER, actor="alice", reason="it went rogue")
    assert (hold.scope, hold.target, hold.cause, hold.actor) == (AGENT, RUNNER, KILL, "alice")
    assert registry.list() == [hold]
    assert generation(database) == 1
    (record,) = audit_bodies(database)
    assert record["kind"] == "admin" and record["agent"] == RUNNER
    assert record["detail"]["action"] == "containment.kill"
    assert record["detail"]["principal"] == "alice"
    assert record["detail"]["reason"] == "it went rogue"


def test_killing_twice_returns_the_first_hold(registry: HoldRegistry, database: Database) -> None:
    first = registry.kill(AGENT, RUNNER, actor="alice")
    assert registry.kill(AGENT, RUNNER, actor="bob") == first
    assert len(registry.list()) == 1
    assert generation(database) == 1


def test_kill_a_task_needs_the_task(registry: HoldRegistry, database: Database) -> None:
    with pytest.raises(NotFoundError):
        registry.kill(TASK, "no-such-task", actor="alice")
    add_task(database, "t1")
    hold = registry.kill(TASK, "t1", actor="alice")
    assert (hold.scope, hold.target) == (TASK, "t1")
    assert audit_bodies(database)[-1]["task_id"] == "t1"


def test_kill_all_and_resume_all(registry: HoldRegistry, database: Database) -> None:
    hold = registry.kill(ALL, actor="alice")
    assert hold.target == EVERYTHING
    registry.kill(AGENT, RUNNER, actor="alice")
    lifted = registry.resume(ALL, actor="bob", reason="all clear")
    assert lifted == [hold]
    # `resume all` lifts `kill all` only: the agent stays held.
    assert [h.scope for h in registry.list()] == [AGENT]
    record = audit_bodies(database)[-1]
    assert record["detail"]["action"] == "containment.resume"
    assert record["detail"]["principal"] == "bob"
    assert record["detail"]["lifted"] == [hold.id]
    assert record["detail"]["reason"] == "all clear"


def test_resume_lifts_kills_and_burst_suspensions_of_the_target(
    registry: HoldRegistry, clock: FrozenClock
) -> None:
    suspension = Hold("h-burst", AGENT, RUNNER, BURST, "burst", "gateway", clock.now())
    assert registry.suspend(suspension, {"calls": 51})
    # A kill on top of a suspension is a second hold.
    registry.kill(AGENT, RUNNER, actor="alice")
    lifted = registry.resume(AGENT, RUNNER, actor="alice")
    assert {h.cause for h in lifted} == {BURST, KILL}
    assert registry.list() == []


def test_resume_of_nothing_held_is_not_found(registry: HoldRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.resume(AGENT, RUNNER, actor="alice")


def test_suspend_is_audited_as_containment_and_skips_a_held_agent(
    registry: HoldRegistry, database: Database, clock: FrozenClock
) -> None:
    hold = Hold("h1", AGENT, RUNNER, BURST, "too fast", "gateway", clock.now())
    assert registry.suspend(hold, {"calls": 51, "window_seconds": 1.0}) is True
    assert registry.suspend(Hold("h2", AGENT, RUNNER, BURST, "x", "gateway", 0.0), {}) is False
    (record,) = audit_bodies(database)
    assert record["kind"] == "containment" and record["outcome"] == "deny"
    assert record["agent"] == RUNNER
    assert record["detail"]["action"] == "agent.suspend"
    assert record["detail"]["calls"] == 51
    assert [h.id for h in registry.list()] == ["h1"]


@pytest.mark.parametrize(
    ("scope", "target", "message"),
    [
        ("agents", RUNNER, "one of agent, task, all"),
        (AGENT, "", "name the agent"),
        (AGENT, "not-a-spiffe-id", "SPIFFE"),
        (TASK, "x" * 65, "task id"),
        (TASK, "a\nb", "task id"),
        (ALL, "something", "no target"),
    ],
)
def test_malformed_targets_are_refused(scope: str, target: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        normalise(scope, target)


def test_a_long_reason_is_refused(registry: HoldRegistry) -> None:
    with pytest.raises(InvalidInputError, match="reason"):
        registry.kill(ALL, actor="alice", reason="x" * 501)


def test_without_an_audit_log_nothing_is_recorded(database: Database, clock: FrozenClock) -> None:
    HoldRegistry(database, clock).kill(ALL, actor="alice")
    assert audit_bodies(database) == []


# -- HoldSet ---------------------------------------------------------------------------------


def hold(scope: str, target: str, cause: str = KILL, at: float = 0.0) -> Hold:
    return Hold(f"{scope}-{target}-{cause}", scope, target, cause, "", "x", at)


def test_an_empty_set_holds_nothing() -> None:
    holds = HoldSet()
    assert not holds and len(holds) == 0
    assert holds.holding(RUNNER, "t1", [OTHER]) is None


def test_the_set_finds_the_agent_a_delegator_the_task_or_everything() -> None:
    holds = HoldSet.of([hold(AGENT, RUNNER), hold(TASK, "t1")])
    assert holds.holding(RUNNER, None) is not None
    assert holds.holding(OTHER, None, [RUNNER]) is not None  # a sub-agent of a held agent
    assert holds.holding(OTHER, "t1") is not None
    assert holds.holding(OTHER, "t2", ["spiffe://ztgate.local/agent/x"]) is None
    everything = HoldSet.of([hold(ALL, EVERYTHING)])
    assert everything.holding(None, None) is not None


def test_kills_are_reported_before_suspensions() -> None:
    holds = HoldSet.of([hold(AGENT, RUNNER, BURST, at=1.0), hold(AGENT, RUNNER, KILL, at=2.0)])
    found = holds.holding(RUNNER, None)
    assert found is not None and found.cause == KILL
    assert holds.burst_agents() == frozenset()
    assert len(holds.holds()) == 1


def test_what_the_caller_is_told_never_carries_the_operators_note() -> None:
    secret = Hold("h", AGENT, RUNNER, KILL, "internal incident 4711", "alice", 0.0)
    assert "4711" not in secret.why()
    assert "kill switch" in secret.why()
    assert "suspended" in Hold("h", AGENT, RUNNER, BURST, "", "gateway", 0.0).why()
    assert "every call" in hold(ALL, EVERYTHING).why()
    assert secret.describe()["reason"] == "internal incident 4711"
