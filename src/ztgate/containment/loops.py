"""The `loop` check: the same call again and again within a task is denied and flagged.

The same tool with the same canonical arguments (`ToolCall.arguments_sha256`)
more than `max_repeats` times within `window` seconds in one task: denied,
for as long as the repetition goes on (every attempt that reaches this check
counts, so a loop that keeps trying stays refused until it pauses for a
window). The first refusal of an episode is flagged: `flag` (the containment
service) writes an audit record and counts a metric. It runs after the rate
limits, so a polite retry of a call refused with 429 is not a repetition.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.hot import HotState

NAME = "loop"
_ALLOW = Verdict(NAME, Outcome.ALLOW, "no loop")

Flag = Callable[[ToolCall, str | None, str, int], Awaitable[None]]


class LoopCheck:
    """Pre-call check: deny a task's identical call beyond `max_repeats` within `window`."""

    name = NAME

    def __init__(self, hot: HotState, *, max_repeats: int, window: float, flag: Flag) -> None:
        """`flag(call, agent, task_id, count)` is awaited once per episode (per window)."""
        if max_repeats < 1 or not window > 0:
            raise ValueError("loop detection needs at least one repeat and a positive window")
        self._hot = hot
        self.max_repeats = max_repeats
        self.window = window
        self._flag = flag

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny (and flag the first time) a repetition beyond the limit."""
        task = ctx.facts.get("task.id")
        if not isinstance(task, str):
            return _ALLOW
        key = f"loop:{task}:{call.tool}:{call.arguments_sha256}"
        count = await self._hot.hit(key, self.window, self.max_repeats + 1)
        if count <= self.max_repeats:
            return _ALLOW
        if await self._hot.remember_once(f"loop-flagged:{key}", self.window):
            agent = ctx.facts.get("principal.spiffe_id")
            await self._flag(call, agent if isinstance(agent, str) else None, task, count)
        return Verdict(
            NAME,
            Outcome.DENY,
            f"{call.tool} with the same arguments more than {self.max_repeats} times within "
            f"{self.window:g} s in task {task}: a loop",
            {"containment.loop": True},
        )
