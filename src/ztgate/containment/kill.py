"""The `halt` check: the kill switch and suspensions stop a call before anything else is looked at.

It runs right after `authenticate` and `warrant` (it needs the agent and the
task they proved), before the proof is verified: a stopped agent learns
nothing more about its calls. It reads an in-memory `HoldSet`, swapped when
the "containment" generation moves, so a call with nothing held costs one
attribute read.
"""

from __future__ import annotations

from collections.abc import Callable

from ztgate.containment.holds import HoldSet
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext

NAME = "halt"
_ALLOW = Verdict(NAME, Outcome.ALLOW, "not stopped")


class HaltCheck:
    """Pre-call check: deny while everything, the agent (or one above it) or the task is held."""

    name = NAME

    def __init__(self, holds: Callable[[], HoldSet]) -> None:
        """`holds` returns the current snapshot."""
        self._holds = holds

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny saying what is stopped."""
        holds = self._holds()
        if not holds:
            return _ALLOW
        facts = ctx.facts
        agent = facts.get("principal.spiffe_id")
        task = facts.get("task.id")
        delegators = facts.get("warrant.delegated_by") or ()
        hold = holds.holding(
            agent if isinstance(agent, str) else None,
            task if isinstance(task, str) else None,
            [d for d in delegators if isinstance(d, str)],
        )
        if hold is None:
            return _ALLOW
        return Verdict(NAME, Outcome.DENY, hold.why(), {"containment.hold": hold.id})
