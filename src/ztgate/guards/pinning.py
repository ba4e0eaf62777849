"""Tool pinning: a tool is used only as a principal approved it.

The `pinning` check refuses calls to a tool whose description or schemas
are not the ones pinned when it was registered or last approved
(tools/pins.py): a rug pull — a tool server, a config reload or a `tools
add --replace` changing what the tool says — disables the tool until a
principal runs `ztgate tools approve NAME`.

Descriptions and schemas are scanned for hidden instructions with the
injection detector (guards/injection), at its configured threshold; a new
tool whose description or schemas are flagged is registered unpinned, so
that it too waits for a principal's approval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext

NAME = "pinning"
DEFAULT_THRESHOLD = 0.5


def description_findings(
    text: str, schemas: Sequence[Any] = (), threshold: float = DEFAULT_THRESHOLD
) -> list[str]:
    """The kinds of hidden instructions the injection detector finds in what a tool says.

    That is its description and every string of its schemas (a property's
    `description` or `title`, an `enum` value: a model reads them all), held
    to the injection guard's `threshold` (`[guards.injection]`).
    """
    from ztgate.guards.injection.detector import Segment, scan_segments, score, strings

    parts: list[Segment] = [Segment("/description", text)] if text.strip() else []
    for index, schema in enumerate(schemas):
        if schema is not None:
            parts.extend(strings(schema, f"/schemas/{index}"))
    if not parts:
        return []
    findings = scan_segments(parts)
    if score(findings) < threshold:
        return []
    return sorted({finding.kind for finding in findings})


def pin_on_registration(
    description: str, schemas: Sequence[Any] = (), threshold: float = DEFAULT_THRESHOLD
) -> bool:
    """Whether a new tool is approved by registering it: what it says hides nothing."""
    return not description_findings(description, schemas, threshold)


class PinningCheck:
    """Pre-call check: the tool's description and schemas are the approved ones."""

    name = NAME

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        """Allow a pinned tool; deny one that changed or was never approved."""
        entry = ctx.tool
        if entry is None:
            return Verdict(NAME, Outcome.ALLOW, "unknown tool: the registry decides")
        if entry.pinned:
            return Verdict(NAME, Outcome.ALLOW, "the tool is as approved")
        approve = f"a principal must approve it (ztgate tools approve {call.tool})"
        if entry.spec.pin_sha256 is None:
            return Verdict(NAME, Outcome.DENY, f"tool {call.tool!r} was never approved: {approve}")
        return Verdict(
            NAME,
            Outcome.DENY,
            f"tool {call.tool!r} changed since it was approved (its description or schemas): "
            + approve.replace("approve it", "approve it again"),
        )
