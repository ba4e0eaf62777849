"""Notifications of new approval requests: a webhook POST, never in a call's way.

The body is generic JSON (`format = "json"`: the event, the request as
approvers see it, and a link) or a Slack-compatible message
(`format = "slack"`: `{"text": ...}`). Sending reuses the containment
alerter: posted in the background with a timeout, failures logged and
counted, never raised, and dropped rather than piled up behind a dead
receiver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ztgate.approvals.registry import Approval
from ztgate.clock import isoformat
from ztgate.config import ApprovalsSettings
from ztgate.containment.alerts import Alerter


def link(base: str, approval: Approval) -> str:
    """Where the request is shown: `<base>/approvals/<id>` (the API path without a base)."""
    if not base:
        return f"/v1/approvals/{approval.id}"
    return f"{base.rstrip('/')}/approvals/{approval.id}"


def body(approval: Approval, *, format: str, base: str = "") -> Mapping[str, Any]:
    """The webhook body announcing `approval`."""
    where = link(base, approval)
    if format == "slack":
        request = approval.request
        why = "; ".join(str(r.get("reason", "")) for r in request.get("reasons", []))
        text = (
            f"Approval needed for {approval.tool} ({approval.risk}) "
            f"by agent {approval.agent}, task {approval.task_id} of {approval.principal}.\n"
            f"Arguments: {request.get('arguments_preview', '')}\n"
            f"Why asked: {why or '-'}\n"
            f"Expires {isoformat(approval.expires_at)}: {where}"
        )
        return {"text": text}
    return {
        "event": "approval.requested",
        "approval": approval.id,
        "link": where,
        "expires_at": approval.expires_at,
        "second_person": approval.second_person,
        "request": dict(approval.request),
        "request_sha256": approval.request_sha256,
    }


class Notifier:
    """Announces new requests to the configured webhook (a log line without one)."""

    def __init__(self, settings: ApprovalsSettings) -> None:
        """Post to `settings.webhook_url` in `settings.webhook_format`."""
        self.format = settings.webhook_format
        self.base = settings.link_base
        self.alerter = Alerter(settings.webhook_url, timeout=settings.webhook_timeout_seconds)

    def send(self, approval: Approval) -> None:
        """Announce `approval` (needs a running loop; returns at once)."""
        self.alerter.send(body(approval, format=self.format, base=self.base))

    async def close(self) -> None:
        """Wait briefly for posts in flight, then close."""
        await self.alerter.close()
