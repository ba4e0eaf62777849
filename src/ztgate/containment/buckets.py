"""The `rate` check: token buckets per agent, per task and per tool.

Each bucket holds up to `burst` calls and refills at `rate_per_second`; a
call takes one token from each bucket that applies, from all or from none,
atomically in hot state. An empty bucket refuses the call with the time
until it would pass (`Verdict.retry_after`; HTTP 429 with Retry-After).
Refill is measured on the hot state's monotonic clock, so a wall-clock step
neither mints nor loses tokens.

Which buckets apply: the agent's (`[limits] agent`) and the task's
(`[limits] task`) when the call has them; the tool's own (`limits` of the
tool, else `[limits] tool`) when the tool is registered, shared by all its
callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.hot import Bucket, HotState

NAME = "rate"
MAX_RETRY_AFTER = 86400.0
_ALLOW = Verdict(NAME, Outcome.ALLOW, "within rate limits")


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket's refill rate (calls a second) and size."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError("a rate is a positive number of calls a second")
        if not (math.isfinite(self.burst) and self.burst >= 1):
            raise ValueError("a burst is at least one call")

    def describe(self) -> str:
        """E.g. `5/s, burst 10`."""
        return f"{self.per_second:g}/s, burst {self.burst:g}"


class RateLimitCheck:
    """Pre-call check: one token from each applicable bucket, or a deny with when to retry."""

    name = NAME

    def __init__(
        self,
        hot: HotState,
        *,
        agent: Rate | None = None,
        task: Rate | None = None,
        tool: Rate | None = None,
    ) -> None:
        """Default buckets per agent, per task and per tool (None: no such limit)."""
        self._hot = hot
        self._agent = agent
        self._task = task
        self._tool = tool

    def buckets(self, call: ToolCall, ctx: CallContext) -> list[tuple[Bucket, str]]:
        """The buckets this call takes from, each with what it limits."""
        found: list[tuple[Bucket, str]] = []
        if self._agent is not None:
            agent = ctx.facts.get("principal.spiffe_id")
            if isinstance(agent, str):
                found.append((_bucket(f"rate:agent:{agent}", self._agent), f"agent {agent}"))
        if self._task is not None:
            task = ctx.facts.get("task.id")
            if isinstance(task, str):
                found.append((_bucket(f"rate:task:{task}", self._task), f"task {task}"))
        if ctx.tool is not None:
            rate = self._tool
            own = ctx.tool.spec.limits
            if own is not None and own.rate_per_second is not None:
                rate = Rate(own.rate_per_second, own.bucket_burst or 1.0)
            if rate is not None:
                found.append((_bucket(f"rate:tool:{call.tool}", rate), f"tool {call.tool}"))
        return found

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny naming the limit and when to retry."""
        buckets = self.buckets(call, ctx)
        if not buckets:
            return _ALLOW
        wait, key = await self._hot.take([bucket for bucket, _ in buckets])
        if key is None:
            return _ALLOW
        bucket, label = next((b, label) for b, label in buckets if b.key == key)
        wait = min(wait, MAX_RETRY_AFTER)
        return Verdict(
            NAME,
            Outcome.DENY,
            f"rate limit of {label} reached ({bucket.rate:g}/s, burst {bucket.burst:g}): "
            f"retry in {wait:.2f} s",
            {"containment.rate_limited": label},
            retry_after=wait,
        )


def _bucket(key: str, rate: Rate) -> Bucket:
    return Bucket(key, rate.per_second, rate.burst)
