"""The `limits` check: bursts, rate limits, loops and the budget, one after the other.

One entry in the chain for four small checks that all belong right after
`proof`: each pipeline entry has a cost of its own (a timeout armed and
disarmed), and each allowed verdict is one more reason in every audit
record. In order:

- `burst` first, so calls refused with 429 still count towards a suspension;
- `rate`, then `loop`, so a retry of a call refused with 429 is no repetition;
- `budget` last: it reserves only for a call every other limit let through.

A refusal is the refusing check's own verdict (its name, reason, facts,
`retry_after`), so metrics and audit records name `burst`, `rate`, `loop` or
`budget`; an allowed call gets one `limits` verdict carrying all their facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext, Check

NAME = "limits"


class LimitsCheck:
    """Pre-call check: run `checks` in order; the first that does not allow decides."""

    name = NAME

    def __init__(self, checks: Sequence[Check]) -> None:
        """The checks to run, in order."""
        self.checks = tuple(checks)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow with every check's facts, or the first refusal as it is."""
        facts: dict[str, Any] = {}
        reasons = []
        for check in self.checks:
            verdict = await check(call, ctx)
            if verdict.outcome is not Outcome.ALLOW:
                return verdict
            if verdict.facts:
                facts.update(verdict.facts)
            reasons.append(verdict.reason)
        return Verdict(NAME, Outcome.ALLOW, "; ".join(reasons), facts)
