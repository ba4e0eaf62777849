"""The call pipeline: an ordered chain of small, independent checks.

Each check looks at one thing and returns a `Verdict`. The first deny stops
the chain; an ask is remembered and the chain goes on, so a later deny still
wins. A check that raises, times out or returns something other than a
`Verdict` is a deny: the pipeline fails closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ztgate.clock import Clock
from ztgate.errors import StoreUnavailableError
from ztgate.models import Decision, Outcome, Phase, ToolCall, ToolResult, Verdict

if TYPE_CHECKING:
    from ztgate.tools.catalog import CatalogEntry

logger = logging.getLogger(__name__)

# The fact on the deny of a check that could not reach a store it needs (the
# database, the hot state): the front doors answer 503, not a denial.
STORE_UNAVAILABLE = "store.unavailable"


@dataclass(slots=True)
class CallContext:
    """What checks share about one call besides the call itself.

    `tool` is the registered tool the call names (None when unknown); `facts`
    accumulates what earlier checks observed, for later checks (policy) to read.
    `deferred` holds what checks want done once the call's final outcome is
    known (a budget reservation is kept only if the call is allowed): see
    `defer` and `settle`.
    """

    clock: Clock
    tool: CatalogEntry | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    deferred: list[Callable[[Outcome], Awaitable[None]]] = field(default_factory=list)

    def defer(self, effect: Callable[[Outcome], Awaitable[None]]) -> None:
        """Run `effect(outcome)` once the call's final outcome is known."""
        self.deferred.append(effect)

    async def settle(self, outcome: Outcome) -> None:
        """Run the deferred effects with the final outcome, each once; an error is logged.

        `Pipeline.decide` settles a deny itself (nothing turns a deny into an
        allow); whoever turns its allow or ask into a final answer settles that.
        """
        effects, self.deferred = self.deferred, []
        for effect in effects:
            try:
                await effect(outcome)
            except Exception:
                logger.exception("a deferred effect failed")


class Check(Protocol):
    """A pre-call check: looks at the call before it runs."""

    name: str

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Return a verdict; raise only when the call cannot be evaluated."""
        ...


class ResultCheck(Protocol):
    """A post-call check: looks at the tool's result before the agent sees it."""

    name: str

    async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
        """Return a verdict; raise only when the result cannot be evaluated."""
        ...


class Pipeline:
    """Runs pre-call checks over a call, and post-call checks over its result."""

    def __init__(
        self,
        checks: Sequence[Check],
        result_checks: Sequence[ResultCheck] = (),
        *,
        check_timeout: float = 2.0,
    ) -> None:
        self.checks = tuple(checks)
        self.result_checks = tuple(result_checks)
        self.check_timeout = check_timeout

    async def decide(self, call: ToolCall, ctx: CallContext) -> Decision:
        """Decide whether `call` may run."""
        start = ctx.clock.monotonic()
        verdicts: list[Verdict] = []
        with _Watchdog(self.check_timeout) as watchdog:
            for check in self.checks:
                verdict = await self._run(check.name, functools.partial(check, call, ctx), watchdog)
                if not self._record(verdict, verdicts, ctx):
                    break
        decision = Decision(call, tuple(verdicts), Phase.CALL, ctx.clock.monotonic() - start)
        if ctx.deferred and decision.outcome is Outcome.DENY:
            await ctx.settle(Outcome.DENY)
        return decision

    async def review(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Decision:
        """Decide whether the agent may see `result`, and with which obligations."""
        start = ctx.clock.monotonic()
        verdicts: list[Verdict] = []
        with _Watchdog(self.check_timeout) as watchdog:
            for check in self.result_checks:
                invoke = functools.partial(check, call, result, ctx)
                verdict = await self._run(check.name, invoke, watchdog)
                if not self._record(verdict, verdicts, ctx):
                    break
        if not self.result_checks:
            # Nothing to object to: an empty post-call chain passes the result
            # through, unlike an empty pre-call chain, which denies.
            verdicts.append(Verdict("pipeline", Outcome.ALLOW, "no result checks configured"))
        return Decision(call, tuple(verdicts), Phase.RESULT, ctx.clock.monotonic() - start)

    @staticmethod
    def _record(verdict: Verdict, verdicts: list[Verdict], ctx: CallContext) -> bool:
        verdicts.append(verdict)
        ctx.facts.update(verdict.facts)
        return verdict.outcome is not Outcome.DENY

    async def _run(
        self, name: str, invoke: Callable[[], Awaitable[Verdict]], watchdog: _Watchdog
    ) -> Verdict:
        try:
            # The watchdog's steps written out, not a context manager: a
            # generator per check costs a few microseconds (some twenty a call).
            cancelling = watchdog.arm()
            try:
                verdict: object = await invoke()
            except asyncio.CancelledError as exc:
                if watchdog.expired(cancelling):
                    raise TimeoutError from exc
                raise
            else:
                watchdog.passed()
            finally:
                watchdog.disarm()
        except TimeoutError:
            return Verdict(name, Outcome.DENY, f"check timed out after {self.check_timeout:g}s")
        except StoreUnavailableError as exc:  # fail closed; an outage, not a bug: no traceback
            logger.error("check %s failed: %s", name, exc)
            reason = f"check failed: {type(exc).__name__}"
            return Verdict(name, Outcome.DENY, reason, {STORE_UNAVAILABLE: True})
        except Exception as exc:  # fail closed: a check that cannot evaluate denies
            logger.exception("check %s failed", name)
            return Verdict(name, Outcome.DENY, f"check failed: {type(exc).__name__}")
        if not isinstance(verdict, Verdict):
            return Verdict(name, Outcome.DENY, "check returned no verdict")
        outcome: object = verdict.outcome
        facts: object = verdict.facts
        if not isinstance(outcome, Outcome) or not isinstance(facts, Mapping):
            return Verdict(name, Outcome.DENY, "check returned a malformed verdict")
        return verdict


class _Watchdog:
    """Each check's timeout, over one timer for a whole chain.

    What `asyncio.timeout` around each check would do — cancel a check that
    runs longer than `seconds` and raise `TimeoutError` in its place — but
    `asyncio.timeout` arms and disarms a timer per check (about 10 µs each
    under uvloop, some twenty checks per call). Here one timer is armed for
    the first check's deadline; when it fires and the check then running
    still has time (a later check, started later), it is armed again for
    that check's deadline. Cancellations are counted as `asyncio.Timeout`
    counts them: a cancellation from outside is never taken for a timeout.
    """

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline: float | None = None  # of the check running now
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def __enter__(self) -> _Watchdog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def arm(self) -> int:
        """A check starts: its deadline set, the timer armed if none is; the cancellations now."""
        task = self._task
        if task is None:  # not in a task: nothing to cancel; no timeout
            return 0
        self._deadline = self._loop.time() + self._seconds
        self._expired = False
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._fire)
        return task.cancelling()

    def expired(self, cancelling: int) -> bool:
        """A check was cancelled: True if by its timeout alone (then no longer counted)."""
        task = self._task
        return task is not None and self._expired and task.uncancel() <= cancelling

    def passed(self) -> None:
        """A check returned: a timeout it swallowed is still taken back from the task."""
        if self._expired and self._task is not None:
            self._task.uncancel()

    def disarm(self) -> None:
        """A check ended: no deadline until the next one starts."""
        self._deadline = None

    def _fire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._task is None:  # between checks
            return
        if self._loop.time() >= deadline:
            self._expired = True
            self._task.cancel()
        else:
            self._timer = self._loop.call_at(deadline, self._fire)
