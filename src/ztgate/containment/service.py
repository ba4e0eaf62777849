"""The gateway's containment runtime: its checks, where they go, and what they share.

`Containment` builds the checks from `[limits]`, places them in the chain
(`arrange`), keeps the holds and the tasks' budgets in memory (reloaded when
their generations move), suspends runaway agents (in memory at once, then
durably, audited, alerted), flags loops, and writes the tasks' budget use
behind to the store.

The order, and why:

    authenticate, warrant, halt, proof, limits (burst, rate, loop, budget), scope, ..., policy

- `halt` right after `warrant`: it needs the agent and the task they proved,
  and a stopped agent learns nothing more (not even whether its proof holds).
- `limits` right after `proof`: only calls signed with the agent's key
  count, so a stolen bearer token cannot get an agent suspended or burn its
  limits and budget; and before `scope`, `schema` and the rest, so that
  probing what is allowed is not free. Within it, `burst` first, so calls
  refused with 429 still count towards a suspension; `loop` after `rate`,
  so a polite retry of a call refused with 429 is not a repetition; `budget`
  last: it reserves, and keeps the reservation only if the call is finally
  allowed (a later check's deny gives it back).

With `[gateway] authentication = "off"` there are no agents and no tasks:
only `halt` (`kill all`) and the tools' rate limits apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from ztgate.audit import AuditEntry, AuditLog
from ztgate.clock import Clock, isoformat
from ztgate.config import RateSettings, Settings
from ztgate.containment.alerts import Alerter
from ztgate.containment.buckets import Rate, RateLimitCheck
from ztgate.containment.budget import BudgetCheck, LiveBudgets, usage_key
from ztgate.containment.bursts import BurstCheck
from ztgate.containment.holds import (
    AGENT,
    BURST,
    GATEWAY_ACTOR,
    GENERATION,
    Hold,
    HoldRegistry,
    HoldSet,
)
from ztgate.containment.kill import HaltCheck
from ztgate.containment.limits import LimitsCheck
from ztgate.containment.loops import LoopCheck
from ztgate.containment.usage import UsageLog
from ztgate.errors import GatewayError
from ztgate.ids import time_ordered_id
from ztgate.metrics import Metrics
from ztgate.models import ToolCall
from ztgate.pipeline import Check
from ztgate.store.database import Database
from ztgate.store.hot import HotState
from ztgate.tasks.registry import GENERATION as TASKS_GENERATION

logger = logging.getLogger(__name__)

# The checks containment places itself after (by name: check packages do not
# import each other).
AFTER_IDENTITY = "warrant"
AFTER_PROOF = "proof"


class Containment:
    """Kill switch, burst suspension, rate limits, loops and budgets for one gateway."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        clock: Clock,
        hot: HotState,
        audit: AuditLog | None = None,
    ) -> None:
        """Build the checks `[limits]` asks for; holds and budgets are read in `start`."""
        limits = settings.limits
        agents = settings.gateway.authentication == "required"
        self._clock = clock
        self._hot = hot
        self._audit = audit
        self.metrics: Metrics | None = None
        self.registry = HoldRegistry(database, clock, audit=audit)
        self.holds = HoldSet()
        # Suspensions made here whose durable write has not succeeded yet.
        self._unconfirmed: dict[str, tuple[Hold, Mapping[str, Any]]] = {}
        self._persisting: set[str] = set()
        self.alerts = Alerter(limits.alert_webhook_url, timeout=limits.alert_timeout_seconds)
        self.usage = UsageLog(database, clock)
        self.budgets = LiveBudgets(database, clock)
        self._flush_every = limits.usage_flush_seconds
        self._flusher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

        self.halt = HaltCheck(lambda: self.holds)
        self.rate = RateLimitCheck(
            hot, agent=_rate(limits.agent), task=_rate(limits.task), tool=_rate(limits.tool)
        )
        self.burst: BurstCheck | None = None
        if agents and limits.burst_threshold:
            self.burst = BurstCheck(
                hot,
                threshold=limits.burst_threshold,
                window=limits.burst_window_seconds,
                suspend=self.suspend,
            )
        self.loop: LoopCheck | None = None
        if agents and limits.loop_max_repeats:
            self.loop = LoopCheck(
                hot,
                max_repeats=limits.loop_max_repeats,
                window=limits.loop_window_seconds,
                flag=self.flag_loop,
            )
        self.budget: BudgetCheck | None = None
        if agents:
            self.budget = BudgetCheck(
                hot,
                budgets=lambda: self.budgets.snapshot,
                used=lambda task, cost: self.usage.add(task, 1, cost),
            )
        self.limits = LimitsCheck(
            [c for c in (self.burst, self.rate, self.loop, self.budget) if c is not None]
        )

    # -- the chain -------------------------------------------------------------------

    def checks(self) -> list[Check]:
        """The checks as they go in the chain: `halt`, then `limits` (see `arrange`)."""
        return [self.halt, self.limits]

    def arrange(self, checks: Sequence[Check]) -> list[Check]:
        """`checks` with `halt` after `warrant` and `limits` after `proof`.

        Without a `warrant` check, `halt` goes first; without a `proof`
        check, `limits` follows `halt`. Containment only restricts what other
        checks allow: an empty chain stays empty (and denies every call).
        """
        if not checks:
            return []
        names = {check.name for check in checks}
        arranged: list[Check] = []
        if AFTER_IDENTITY not in names:
            arranged.append(self.halt)
        if AFTER_PROOF not in names:
            arranged.append(self.limits)
        for check in checks:
            arranged.append(check)
            if check.name == AFTER_IDENTITY:
                arranged.append(self.halt)
            elif check.name == AFTER_PROOF:
                arranged.append(self.limits)
        return arranged

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, metrics: Metrics | None = None) -> None:
        """Read the holds, the budgets and the stored budget use; start writing use behind.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        self.metrics = metrics
        self.alerts.metrics = metrics
        self.reload_holds()
        if self.budget is not None:
            self.budgets.reload()
            await self._seed_usage()
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def reseed(self) -> None:
        """Give a hot state that lost its data the budget use back: what is pending, then stored.

        Raises:
            StoreUnavailableError: the database cannot be written or read.
            HotStateUnavailableError: the hot state does not answer.
        """
        if self.budget is None:
            return
        batch = self.usage.take()
        if batch:
            try:
                await asyncio.to_thread(self.usage.write, batch)
            except GatewayError:
                self.usage.restore(batch)
                raise
        await self._seed_usage()

    async def _seed_usage(self) -> None:
        now = self._clock.now()
        for used in self.usage.load():
            ttl = max(used.expires_at - now, 0.0) + 3600.0
            await self._hot.seed(usage_key(used.task_id), (used.calls, used.spend), ttl)

    async def stop(self) -> None:
        """Write what is pending, wait for suspensions being stored, close the alerter."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        await self.flush()
        await self.alerts.close()

    def changed(self, names: set[str]) -> None:
        """Reload what the generations in `names` cover.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        if GENERATION in names:
            self.reload_holds()
        if TASKS_GENERATION in names and self.budget is not None:
            self.budgets.reload()

    def reload_holds(self) -> None:
        """Read the holds again; agents no longer suspended start with an empty burst window.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        before = self.holds.burst_agents()
        pending = [hold for hold, _ in self._unconfirmed.values()]
        self.holds = HoldSet.of([*self.registry.list(), *pending])
        lifted = before - self.holds.burst_agents()
        if lifted and self.burst is not None:
            self.burst.reset(lifted)
        if lifted or len(self.holds):
            logger.info("containment holds reloaded: %d held", len(self.holds))

    # -- what the checks call --------------------------------------------------------

    async def suspend(self, agent: str, reason: str, detail: Mapping[str, Any]) -> None:
        """Suspend `agent` after a burst: held here at once, then stored, audited, alerted."""
        if agent in self.holds.agents:
            return  # concurrent calls of the same burst
        now = self._clock.now()
        hold = Hold(time_ordered_id(), AGENT, agent, BURST, reason, GATEWAY_ACTOR, now)
        self._unconfirmed[agent] = (hold, detail)
        self.holds = HoldSet.of([*self.holds.holds(), hold])
        if self.metrics is not None:
            self.metrics.suspensions.labels(BURST).inc()
        self.alerts.send(
            {
                "event": "agent.suspended",
                "agent": agent,
                "cause": BURST,
                "reason": reason,
                "hold": hold.id,
                "at": isoformat(now),
                **detail,
            }
        )
        self._spawn(self._persist(agent))

    async def flag_loop(self, call: ToolCall, agent: str | None, task: str, count: int) -> None:
        """Flag a loop: a metric, a log line and an audit record (errors are logged)."""
        if self.metrics is not None:
            self.metrics.loops_flagged.inc()
        logger.warning(
            "loop flagged: task %s, agent %s, tool %s, arguments %s (%d times)",
            task,
            agent,
            call.tool,
            call.arguments_sha256,
            count,
        )
        if self._audit is None:
            return
        entry = AuditEntry(
            kind="containment",
            outcome="deny",
            call_id=call.call_id,
            agent=agent,
            task_id=task,
            tool=call.tool,
            arguments_sha256=call.arguments_sha256,
            detail={
                "action": "loop.flag",
                "repeats": count,
                "max_repeats": self.loop.max_repeats if self.loop else None,
                "window_seconds": self.loop.window if self.loop else None,
            },
        )
        try:
            await self._audit.append(entry)
        except GatewayError as exc:
            logger.error("could not record the loop flag of task %s: %s", task, exc)

    # -- writing behind ----------------------------------------------------------------

    async def flush(self) -> None:
        """Write the pending budget use, and retry suspensions not stored yet."""
        batch = self.usage.take()
        if batch:
            try:
                await asyncio.to_thread(self.usage.write, batch)
            except GatewayError as exc:
                self.usage.restore(batch)
                logger.warning("budget use not written yet (retried): %s", exc)
        for agent in list(self._unconfirmed):
            if agent not in self._persisting:
                await self._persist(agent)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self.flush()

    async def _persist(self, agent: str) -> None:
        found = self._unconfirmed.get(agent)
        if found is None or agent in self._persisting:
            return
        hold, detail = found
        self._persisting.add(agent)
        try:
            await asyncio.to_thread(self.registry.suspend, hold, detail)
        except GatewayError as exc:
            logger.error("suspension of %s held in memory, not stored yet: %s", agent, exc)
            return
        finally:
            self._persisting.discard(agent)
        if self._unconfirmed.get(agent, (None,))[0] is hold:
            del self._unconfirmed[agent]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _rate(settings: RateSettings | None) -> Rate | None:
    return None if settings is None else Rate(settings.rate_per_second, settings.capacity)
