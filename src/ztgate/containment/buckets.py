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
from ztgate.tools.model import ToolLimits

NAME = "rate"
MAX_RETRY_AFTER = 86400.0
MAX_CACHED = 100_000  # buckets kept built per kind (the state itself is in hot state)
AGENT_KEY = "rate:agent:"
TASK_KEY = "rate:task:"
TOOL_KEY = "rate:tool:"
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
        # Buckets by agent, task and tool, built once (a call builds none).
        self._agents: dict[str, Bucket] = {}
        self._tasks: dict[str, Bucket] = {}
        self._tools: dict[str, tuple[ToolLimits | None, Bucket | None]] = {}

    def buckets(self, call: ToolCall, ctx: CallContext) -> list[Bucket]:
        """The buckets this call takes from."""
        found: list[Bucket] = []
        facts = ctx.facts
        if self._agent is not None:
            agent = facts.get("principal.spiffe_id")
            if isinstance(agent, str):
                bucket = self._agents.get(agent)
                if bucket is None:
                    bucket = _remember(self._agents, agent, f"{AGENT_KEY}{agent}", self._agent)
                found.append(bucket)
        if self._task is not None:
            task = facts.get("task.id")
            if isinstance(task, str):
                bucket = self._tasks.get(task)
                if bucket is None:
                    bucket = _remember(self._tasks, task, f"{TASK_KEY}{task}", self._task)
                found.append(bucket)
        if ctx.tool is not None:
            own = ctx.tool.spec.limits
            known = self._tools.get(call.tool)
            if known is None or known[0] is not own:
                rate = self._tool
                if own is not None and own.rate_per_second is not None:
                    rate = Rate(own.rate_per_second, own.bucket_burst or 1.0)
                tool_bucket = None if rate is None else _bucket(f"{TOOL_KEY}{call.tool}", rate)
                known = self._tools[call.tool] = (own, tool_bucket)
            if known[1] is not None:
                found.append(known[1])
        return found

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny naming the limit and when to retry."""
        buckets = self.buckets(call, ctx)
        if not buckets:
            return _ALLOW
        wait, key = await self._hot.take(buckets)
        if key is None:
            return _ALLOW
        bucket = next(b for b in buckets if b.key == key)
        label = _label(key)
        wait = min(wait, MAX_RETRY_AFTER)
        return Verdict(
            NAME,
            Outcome.DENY,
            f"rate limit of {label} reached ({bucket.rate:g}/s, burst {bucket.burst:g}): "
            f"retry in {wait:.2f} s",
            {"containment.rate_limited": label},
            retry_after=wait,
        )


def _remember(cache: dict[str, Bucket], name: str, key: str, rate: Rate) -> Bucket:
    if len(cache) >= MAX_CACHED:
        cache.clear()
    bucket = cache[name] = _bucket(key, rate)
    return bucket


def _label(key: str) -> str:
    """`agent spiffe://…`, `task …` or `tool …`, from a bucket's key."""
    kind, _, name = key.removeprefix("rate:").partition(":")
    return f"{kind} {name}"


def _bucket(key: str, rate: Rate) -> Bucket:
    return Bucket(key, rate.per_second, rate.burst)
