"""The injection checks: scan results before the agent sees them; tell policy what a task read.

- `InjectionResultCheck` (after the call): scans the result of every tool
  not declared trusted (`flow.trusted`). A flagged result is allowed with an
  obligation (spotlight, quarantine or redact, as configured) that the
  gateway applies to what the agent gets, and its task (or, without one,
  its agent) is marked in hot state: it has read injected content.
- `InjectionSeenCheck` (before the call): puts `guards.injection_seen` into
  the call's facts when its task is marked, and allows. Guards find facts;
  policy decides what a task that read injected content may still do.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ztgate.guards.facts import INJECTION_SEEN
from ztgate.guards.injection.scanner import Scanner, ScanReport
from ztgate.models import Obligation, Outcome, ToolCall, ToolResult, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.hot import HotState

NAME = "injection"
SEEN = "injection_seen"
# Results with more characters than this are scanned in a worker thread, so
# a large result does not hold up the other calls on the event loop.
_OFFLOAD_CHARACTERS = 64 * 1024


def mark_key(call: ToolCall, ctx: CallContext) -> str | None:
    """The hot-state key that remembers a task (or an agent without one) read injected content."""
    task = ctx.facts.get("task.id") or call.task_id
    if isinstance(task, str) and task:
        return f"injection-seen:task:{task}"
    agent = ctx.facts.get("principal.spiffe_id") or call.agent
    if isinstance(agent, str) and agent:
        return f"injection-seen:agent:{agent}"
    return None


class InjectionResultCheck:
    """Post-call check: scan the result; flag it, mark the task, attach the obligation."""

    name = NAME

    def __init__(
        self, scanner: Scanner, hot: HotState, *, action: str = "spotlight", ttl: float = 604800
    ) -> None:
        """Scan with `scanner`; mark tasks in `hot` for `ttl` seconds; oblige `action`."""
        self.scanner = scanner
        self.hot = hot
        self.action = action
        self.ttl = ttl

    async def __call__(self, call: ToolCall, result: ToolResult, ctx: CallContext) -> Verdict:
        """Allow; if the result is flagged, with an obligation and `guards.injection_seen`."""
        if not self.scanner.enabled:
            return Verdict(NAME, Outcome.ALLOW, "result scanning is off")
        if ctx.tool is not None and _trusted(ctx.tool.spec):
            return Verdict(NAME, Outcome.ALLOW, "trusted tool: result not scanned")
        parts = self.scanner.strings(result.body)
        if parts.characters > _OFFLOAD_CHARACTERS:
            report = await asyncio.to_thread(self.scanner.scan_segments, parts)
        else:
            report = self.scanner.scan_segments(parts)
        if not report.flagged:
            return Verdict(NAME, Outcome.ALLOW, "no injected instructions found")
        key = mark_key(call, ctx)
        if key is not None:
            await self.hot.mark(key, self.ttl)
        return Verdict(
            NAME,
            Outcome.ALLOW,
            f"injected instructions found ({report.summary()}); result {_PAST[self.action]}",
            facts={INJECTION_SEEN: True},
            obligations=(self._obligation(report),),
        )

    def _obligation(self, report: ScanReport) -> Obligation:
        detail: dict[str, Any] = {
            "findings": report.kinds,
            "rules": sorted({finding.rule for finding in report.findings}),
            "score": round(report.score, 3),
        }
        if report.truncated:
            detail["truncated"] = True
        if self.action == "redact":
            detail["spans"] = tuple(
                (f.pointer, f.in_key, f.offset, f.offset + f.length) for f in report.findings
            )
        return Obligation(self.action, NAME, detail)


_PAST = {"spotlight": "spotlighted", "quarantine": "quarantined", "redact": "redacted"}


class InjectionSeenCheck:
    """Pre-call check: the `guards.injection_seen` fact for a task that read injected content."""

    name = SEEN

    def __init__(self, hot: HotState) -> None:
        """Read the marks `InjectionResultCheck` leaves in `hot`."""
        self.hot = hot

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow; with the fact when the call's task (or agent) is marked."""
        key = mark_key(call, ctx)
        if key is None or not await self.hot.is_marked(key):
            return Verdict(SEEN, Outcome.ALLOW, "no injected content read in this task")
        return Verdict(
            SEEN,
            Outcome.ALLOW,
            "this task has read content flagged as injected instructions",
            facts={INJECTION_SEEN: True},
        )


def _trusted(tool: Any) -> bool:
    flow = getattr(tool, "flow", None)
    return bool(getattr(flow, "trusted", False))
