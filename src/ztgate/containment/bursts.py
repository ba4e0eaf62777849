"""The `burst` check: an agent making calls too fast is suspended until a principal resumes it.

Every proven call of an agent is one event in a sliding window in hot state
(on its monotonic clock). More than `threshold` calls within `window`
seconds (`[limits] burst_calls_per_second` x `burst_window_seconds`) and the
agent is suspended: this call is denied, and `suspend` (the containment
service) holds the agent at once in memory, then durably, audits, alerts.
The check runs after `proof`, so only the holder of the agent's key can get
it suspended, and before the rate limits, so calls refused with 429 still
count: hammering through them suspends too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.hot import HotState

NAME = "burst"
_ALLOW = Verdict(NAME, Outcome.ALLOW, "no burst")

Suspend = Callable[[str, str, Mapping[str, Any]], Awaitable[None]]


def window_key(agent: str) -> str:
    """The hot-state key of an agent's window."""
    return f"burst:{agent}"


class BurstCheck:
    """Pre-call check: count the agent's calls; suspend it beyond the threshold."""

    name = NAME

    def __init__(self, hot: HotState, *, threshold: int, window: float, suspend: Suspend) -> None:
        """Beyond `threshold` calls within `window` seconds: `suspend(agent, reason, detail)`."""
        if threshold < 1 or not window > 0:
            raise ValueError("a burst threshold is at least one call within a positive window")
        self._hot = hot
        self.threshold = threshold
        self.window = window
        self._suspend = suspend
        self._reset: set[str] = set()

    def reset(self, agents: set[str] | frozenset[str]) -> None:
        """Forget these agents' windows before their next call (they were resumed)."""
        self._reset.update(agents)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or suspend the agent and deny."""
        agent = ctx.facts.get("principal.spiffe_id")
        if not isinstance(agent, str):
            return _ALLOW
        key = window_key(agent)
        if self._reset and agent in self._reset:
            self._reset.discard(agent)
            await self._hot.forget(key)
        count = await self._hot.hit(key, self.window, self.threshold + 1)
        if count <= self.threshold:
            return _ALLOW
        reason = (
            f"agent {agent} made more than {self.threshold} calls within {self.window:g} s: "
            "suspended until a principal resumes it"
        )
        detail = {
            "calls": count,
            "window_seconds": self.window,
            "threshold": self.threshold,
            "call_id": call.call_id,
            "tool": call.tool,
            "task_id": ctx.facts.get("task.id"),
        }
        await self._suspend(agent, reason, detail)
        return Verdict(NAME, Outcome.DENY, reason, {"containment.suspended": agent})
