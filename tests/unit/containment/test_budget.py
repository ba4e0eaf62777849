"""The `budget` check: a task's call and spend budgets; only calls allowed to run count."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.containment.budget import (
    BudgetCheck,
    LiveBudgets,
    PricingError,
    TaskBudget,
    price,
    usage_key,
)
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext, Pipeline
from ztgate.store.database import Database
from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock, make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import ToolLimits

from .conftest import add_task

PRICED = make_tool("pay", limits=ToolLimits(cost=1.0, cost_argument="/amount"))


class Used:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, task: str, cost: float) -> None:
        self.calls.append((task, cost))


def ctx(clock: FrozenClock, tool: Any = None, task: str | None = "t1") -> CallContext:
    entry = None if tool is None else Catalog([tool]).get(tool.name)
    facts = {} if task is None else {"task.id": task}
    return CallContext(clock, tool=entry, facts=facts)


@pytest.fixture
def hot(clock: FrozenClock) -> MemoryHotState:
    return MemoryHotState(clock)


@pytest.fixture
def used() -> Used:
    return Used()


def budgeted(
    hot: MemoryHotState, used: Used, calls: int | None = None, spend: float | None = None
) -> BudgetCheck:
    budgets = {"t1": TaskBudget(calls, spend, 1_800_003_600.0)}
    return BudgetCheck(hot, budgets=lambda: budgets, used=used)


async def allowed(check: BudgetCheck, call: ToolCall, context: CallContext) -> Verdict:
    verdict = await check(call, context)
    await context.settle(verdict.outcome)
    return verdict


# -- price -----------------------------------------------------------------------------------


def test_a_tool_without_limits_costs_nothing() -> None:
    assert price(make_call(), None) == 0.0
    assert price(make_call(), ToolLimits(rate_per_second=1)) == 0.0


def test_a_fixed_cost_plus_an_amount() -> None:
    limits = ToolLimits(cost=0.5, cost_argument="/payment/amount")
    assert price(make_call(arguments={"payment": {"amount": 42}}), limits) == 42.5
    assert price(make_call(arguments={"amount": 3}), ToolLimits(cost_argument="amount")) == 3.0
    assert price(make_call(arguments={"a/b": [1, 7]}), ToolLimits(cost_argument="/a~1b/1")) == 7


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ({}, "missing"),
        ({"amount": "42"}, "not a number"),
        ({"amount": True}, "not a number"),
        ({"amount": -1}, "negative"),
        ({"amount": {"v": 1}}, "not a number"),
    ],
)
def test_an_unreadable_price_is_an_error(arguments: dict[str, Any], why: str) -> None:
    with pytest.raises(PricingError, match=why):
        price(make_call(arguments=arguments), ToolLimits(cost_argument="/amount"))


def test_a_pointer_into_a_list_out_of_range_is_missing() -> None:
    with pytest.raises(PricingError, match="missing"):
        price(make_call(arguments={"a": [1]}), ToolLimits(cost_argument="/a/5"))


# -- the check ---------------------------------------------------------------------------------


async def test_a_call_without_a_task_is_not_counted(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    verdict = await allowed(budgeted(hot, used, calls=1), make_call(), ctx(clock, task=None))
    assert verdict.outcome is Outcome.ALLOW and not used.calls


async def test_a_task_without_a_budget_on_record_is_denied(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    verdict = await budgeted(hot, used)(make_call(), ctx(clock, task="t9"))
    assert verdict.outcome is Outcome.DENY and "no budget on record" in verdict.reason


async def test_the_call_budget_allows_exactly_its_calls(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used, calls=3)
    for n in range(3):
        verdict = await allowed(check, make_call(), ctx(clock))
        assert verdict.outcome is Outcome.ALLOW
        assert verdict.facts["task.calls"] == n
        assert verdict.reason == f"call {n + 1} of 3"
    verdict = await allowed(check, make_call(), ctx(clock))
    assert verdict.outcome is Outcome.DENY
    assert "used its budget of 3 calls" in verdict.reason
    assert used.calls == [("t1", 0.0)] * 3


async def test_a_call_denied_later_gives_its_reservation_back(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used, calls=1)
    context = ctx(clock)
    assert (await check(make_call(), context)).outcome is Outcome.ALLOW
    await context.settle(Outcome.DENY)  # e.g. policy said no after the budget reserved
    assert not used.calls
    assert (await allowed(check, make_call(), ctx(clock))).outcome is Outcome.ALLOW
    assert (await allowed(check, make_call(), ctx(clock))).outcome is Outcome.DENY


async def test_reservations_in_flight_cannot_overspend(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used, calls=1)
    first, second = ctx(clock), ctx(clock)
    assert (await check(make_call(), first)).outcome is Outcome.ALLOW
    assert (await check(make_call(), second)).outcome is Outcome.DENY
    await first.settle(Outcome.ALLOW)
    assert used.calls == [("t1", 0.0)]


async def test_the_spend_budget_prices_each_call(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used, spend=100.0)
    verdict = await allowed(check, make_call("pay", {"amount": 60}), ctx(clock, PRICED))
    assert verdict.outcome is Outcome.ALLOW and verdict.facts["call.cost"] == 61.0
    verdict = await allowed(check, make_call("pay", {"amount": 40}), ctx(clock, PRICED))
    assert verdict.outcome is Outcome.DENY
    assert "costs 41 and task t1 has 39 of its 100 spend units left" in verdict.reason
    verdict = await allowed(check, make_call("pay", {"amount": 38}), ctx(clock, PRICED))
    assert verdict.outcome is Outcome.ALLOW
    assert verdict.facts["task.spend"] == 61.0
    assert used.calls == [("t1", 61.0), ("t1", 39.0)]


async def test_an_unpriceable_call_is_denied_only_under_a_spend_budget(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    call = make_call("pay", {"amount": "lots"})
    verdict = await allowed(budgeted(hot, used, spend=10.0), call, ctx(clock, PRICED))
    assert verdict.outcome is Outcome.DENY and "cannot be priced" in verdict.reason
    other = MemoryHotState(clock)
    verdict = await allowed(budgeted(other, used, calls=5), call, ctx(clock, PRICED))
    assert verdict.outcome is Outcome.ALLOW and verdict.facts["call.cost"] == 0.0


async def test_use_is_counted_for_tasks_without_a_budget(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used)
    for n in range(5):
        verdict = await allowed(check, make_call(), ctx(clock))
        assert verdict.facts["task.calls"] == n
    assert len(used.calls) == 5


async def test_stored_use_seeded_into_hot_state_counts(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    await hot.seed(usage_key("t1"), (2, 0.0), 3600)
    check = budgeted(hot, used, calls=3)
    assert (await allowed(check, make_call(), ctx(clock))).outcome is Outcome.ALLOW
    assert (await allowed(check, make_call(), ctx(clock))).outcome is Outcome.DENY


class Deny:
    name = "policy"

    async def __call__(self, call: ToolCall, context: CallContext) -> Verdict:
        return Verdict(self.name, Outcome.DENY, "no")


async def test_through_the_pipeline_a_later_deny_burns_no_budget(
    hot: MemoryHotState, used: Used, clock: FrozenClock
) -> None:
    check = budgeted(hot, used, calls=1)
    for _ in range(3):
        decision = await Pipeline([check, Deny()]).decide(make_call(), ctx(clock))
        assert decision.outcome is Outcome.DENY
    context = ctx(clock)
    decision = await Pipeline([check]).decide(make_call(), context)
    assert decision.outcome is Outcome.ALLOW
    await context.settle(decision.outcome)
    assert used.calls == [("t1", 0.0)]


# -- LiveBudgets -------------------------------------------------------------------------------


def test_live_budgets_are_the_active_unexpired_tasks(
    database: Database, clock: FrozenClock
) -> None:
    add_task(database, "t1", calls=5, spend=10.5)
    add_task(database, "t2")
    add_task(database, "old", expires_at=clock.now() - 1)
    add_task(database, "done", state="completed")
    budgets = LiveBudgets(database, clock)
    assert budgets.snapshot == {}
    loaded = budgets.reload()
    assert set(loaded) == {"t1", "t2"}
    assert loaded["t1"] == TaskBudget(5, 10.5, 1_800_003_600.0)
    assert loaded["t2"] == TaskBudget(None, None, 1_800_003_600.0)
    assert budgets.snapshot is loaded
