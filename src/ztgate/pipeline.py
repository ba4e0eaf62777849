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
        for check in self.checks:
            verdict = await self._run(check.name, functools.partial(check, call, ctx))
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
        for check in self.result_checks:
            verdict = await self._run(check.name, functools.partial(check, call, result, ctx))
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

    async def _run(self, name: str, invoke: Callable[[], Awaitable[Verdict]]) -> Verdict:
        try:
            async with asyncio.timeout(self.check_timeout):
                verdict: object = await invoke()
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
