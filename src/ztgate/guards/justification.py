"""The `justification` check: calls with side effects say why, in the agent's own words.

Every call may carry a short justification from the agent, recorded with
the decision. Calls to tools of the configured risk tiers (by default
`write` and `critical`) are denied when it is:

- missing or blank;
- copied from a tool result: when most of its word 4-grams were seen in the
  untrusted text the task has read (guards/ledger.py), the "reason" is
  the injected instruction itself (`[guards] justification_not_copied`).

Whether the call serves the task's intent is asked of a model by the
`intent` check (guards/judge.py), when one is configured.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ztgate.guards.ledger import Ledger, shingles
from ztgate.guards.taskinfo import task_id
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext

NAME = "justification"
# A justification is copied when at least this share of its word 4-grams
# (and at least two of them) were seen in the task's untrusted results.
COPIED_SHARE = 0.6


class JustificationCheck:
    """Pre-call check: a justification of the agent's own for tools of the given risk tiers."""

    name = NAME

    def __init__(
        self, tiers: Iterable[str] = ("write", "critical"), *, ledger: Ledger | None = None
    ) -> None:
        """Require a justification for tools of `tiers`; with `ledger`, not a copied one."""
        self._tiers = frozenset(tiers)
        self._ledger = ledger

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow, or deny when a required justification is missing or copied."""
        if ctx.tool is None:
            return Verdict(NAME, Outcome.ALLOW, "unknown tool: the registry decides")
        tier = ctx.tool.spec.risk.value
        if tier not in self._tiers:
            return Verdict(
                NAME, Outcome.ALLOW, "justified" if call.justification.strip() else "not required"
            )
        if not call.justification.strip():
            return Verdict(
                NAME, Outcome.DENY, f"a call to a {tier} tool must carry a justification"
            )
        task = task_id(ctx.facts)
        if self._ledger is not None and task is not None:
            grams = shingles(call.justification)
            if len(grams) >= 2:
                seen = await self._ledger.shingles_seen(task, grams)
                if seen >= max(2, math.ceil(COPIED_SHARE * len(grams))):
                    return Verdict(
                        NAME,
                        Outcome.DENY,
                        "the justification is copied from a tool result the task read "
                        f"({seen} of its {len(grams)} word sequences): it must say why, "
                        "in the agent's own words",
                    )
        return Verdict(NAME, Outcome.ALLOW, "justified")
