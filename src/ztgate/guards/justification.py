"""The `justification` check: calls with side effects say why they are made.

Every call may carry a short justification from the agent, recorded with
the decision. Calls to tools of the configured risk tiers (by default
`write` and `critical`) without one are denied. (The guardrails issue checks
what the justification says against the task's intent.)
"""

from __future__ import annotations

from collections.abc import Iterable

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext

NAME = "justification"


class JustificationCheck:
    """Pre-call check: a non-blank justification for tools of the given risk tiers."""

    name = NAME

    def __init__(self, tiers: Iterable[str] = ("write", "critical")) -> None:
        """Require a justification for calls to tools of `tiers`."""
        self._tiers = frozenset(tiers)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny when a required justification is missing."""
        if ctx.tool is None:
            return Verdict(NAME, Outcome.ALLOW, "unknown tool: the registry decides")
        tier = ctx.tool.spec.risk.value
        if tier in self._tiers and not call.justification.strip():
            return Verdict(
                NAME, Outcome.DENY, f"a call to a {tier} tool must carry a justification"
            )
        return Verdict(
            NAME, Outcome.ALLOW, "justified" if call.justification.strip() else "not required"
        )
