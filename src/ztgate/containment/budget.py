"""The `budget` check: a task's call budget and spend budget.

A task may have a call budget (`budget_calls`) and a spend budget
(`budget_spend`, in units the tools define). A tool prices its calls in its
`limits`: a fixed `cost`, plus the number at `cost_argument` (an amount). A
call that would pass either budget is denied.

Only calls allowed to run are counted. The check reserves the call and its
cost atomically in hot state (so concurrent calls cannot overspend) and
gives the reservation back when the call ends up denied by a later check:
a refused call does not burn budget a retry needs. It is not a free probe
either: the rate limits, loop and burst detection before it count every
proven attempt, and every refusal is audited. A call whose price cannot be
read (the argument is missing, not a number, or negative) is denied when the
task has a spend budget.

Every task's use is counted (budget or not): the facts `task.calls` and
`task.spend` (before this call) and `call.cost` are there for the checks
after this one (policy). The use is written behind to the store
(`UsageLog`), so a restart does not hand out fresh budgets.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sqlalchemy import select

from ztgate.clock import Clock
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.database import Database
from ztgate.store.hot import HotState
from ztgate.store.tables import tasks as tasks_table
from ztgate.tools.model import ToolLimits

NAME = "budget"
KEEP_AFTER_TASK = 3600.0  # seconds a task's totals stay in hot state after it ends
_ACTIVE = "active"
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class TaskBudget:
    """What a task may spend, and until when it lives."""

    calls: int | None
    spend: float | None
    expires_at: float


class PricingError(ValueError):
    """A call's cost cannot be read from its arguments."""


def usage_key(task_id: str) -> str:
    """The hot-state key of a task's totals (calls, spend)."""
    return f"budget:{task_id}"


def price(call: ToolCall, limits: ToolLimits | None) -> float:
    """What `call` costs: the tool's fixed cost plus the amount at its cost argument.

    Raises:
        PricingError: the cost argument is absent, not a number, or negative.
    """
    if limits is None:
        return 0.0
    cost = limits.cost
    pointer = limits.cost_argument
    if pointer is None:
        return cost
    value = _resolve(call.arguments, pointer)
    if value is _ABSENT:
        raise PricingError(f"{call.tool} is priced by argument {pointer}, which is missing")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PricingError(f"{call.tool} is priced by argument {pointer}, which is not a number")
    if value < 0:
        raise PricingError(f"{call.tool} is priced by argument {pointer}, which is negative")
    return cost + float(value)


class BudgetCheck:
    """Pre-call check: reserve the call and its cost within the task's budget."""

    name = NAME

    def __init__(
        self,
        hot: HotState,
        *,
        budgets: Callable[[], Mapping[str, TaskBudget]],
        used: Callable[[str, float], None],
    ) -> None:
        """`budgets()`: live tasks' budgets by id; `used(task, cost)`: note an allowed call."""
        self._hot = hot
        self._budgets = budgets
        self._used = used

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow (reserving), or deny saying which budget is used up."""
        task = ctx.facts.get("task.id")
        if not isinstance(task, str):
            return Verdict(NAME, Outcome.ALLOW, "no task")
        budget = self._budgets().get(task)
        if budget is None:
            return Verdict(NAME, Outcome.DENY, f"task {task} has no budget on record")
        try:
            cost = price(call, ctx.tool.spec.limits if ctx.tool is not None else None)
        except PricingError as exc:
            if budget.spend is not None:
                return Verdict(NAME, Outcome.DENY, f"the call cannot be priced: {exc}")
            cost = 0.0
        key = usage_key(task)
        ttl = max(budget.expires_at - ctx.clock.now(), 0.0) + KEEP_AFTER_TASK
        taken, totals = await self._hot.charge(key, (1.0, cost), (budget.calls, budget.spend), ttl)
        calls, spend = totals
        if not taken:
            if budget.calls is not None and calls + 1 > budget.calls:
                why = f"task {task} has used its budget of {budget.calls} calls"
            else:
                left = max((budget.spend or 0.0) - spend, 0.0)
                why = (
                    f"the call costs {cost:g} and task {task} has {left:g} of its "
                    f"{budget.spend:g} spend units left"
                )
            return Verdict(NAME, Outcome.DENY, why, {"task.calls": int(calls), "task.spend": spend})

        async def settle(outcome: Outcome) -> None:
            if outcome is Outcome.ALLOW:
                self._used(task, cost)
            else:
                await self._hot.charge(key, (-1.0, -cost), (None, None), ttl)

        ctx.defer(settle)
        facts: dict[str, Any] = {
            "task.calls": int(calls) - 1,
            "task.spend": spend - cost,
            "call.cost": cost,
        }
        of = f" of {budget.calls}" if budget.calls is not None else ""
        return Verdict(NAME, Outcome.ALLOW, f"call {int(calls)}{of}", facts)


class LiveBudgets:
    """The budgets of live tasks, read again when the "tasks" generation moves."""

    def __init__(self, database: Database, clock: Clock) -> None:
        """Nothing is read until `reload`."""
        self._database = database
        self._clock = clock
        self.snapshot: Mapping[str, TaskBudget] = MappingProxyType({})

    def reload(self) -> Mapping[str, TaskBudget]:
        """Read the active, unexpired tasks' budgets.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        now = self._clock.now()
        columns = tasks_table.c
        with self._database.read() as conn:
            rows = conn.execute(
                select(columns.id, columns.budget_calls, columns.budget_spend, columns.expires_at)
                .where(columns.state == _ACTIVE)
                .where(columns.expires_at > now)
            ).all()
        self.snapshot = MappingProxyType(
            {
                row[0]: TaskBudget(
                    None if row[1] is None else int(row[1]),
                    None if row[2] is None else float(row[2]),
                    float(row[3]),
                )
                for row in rows
            }
        )
        return self.snapshot


def _resolve(document: Any, pointer: str) -> Any:
    """The value at a JSON Pointer (or a top-level name) in `document`, or `_ABSENT`."""
    current = document
    for token in _tokens(pointer):
        if isinstance(current, Mapping) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return _ABSENT
    return current


@functools.lru_cache(maxsize=1024)
def _tokens(pointer: str) -> tuple[str, ...]:
    """A pointer's reference tokens (RFC 6901); a bare name is one token."""
    if not pointer.startswith("/"):
        return (pointer,)
    return tuple(raw.replace("~1", "/").replace("~0", "~") for raw in pointer.split("/")[1:])
