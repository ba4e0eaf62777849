"""Notifications: generic JSON or a Slack-compatible body, posted in the background."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
from aiohttp import web

from ztgate.approvals.notify import Notifier, body, link
from ztgate.approvals.registry import Approval
from ztgate.config import ApprovalsSettings

APPROVAL = Approval(
    id="a1",
    state="pending",
    tool="payments.send",
    risk="critical",
    arguments_sha256="0" * 64,
    agent="spiffe://ztgate.local/agent/runner",
    task_id="t1",
    principal="alice",
    request={
        "arguments_preview": '{"amount":100}',
        "reasons": [{"check": "policy", "outcome": "ask", "reason": "a human decides"}],
    },
    request_sha256="1" * 64,
    second_person=False,
    created_at=1_800_000_000.0,
    expires_at=1_800_000_600.0,
)


def test_the_link_points_at_the_console_or_the_api() -> None:
    assert link("", APPROVAL) == "/v1/approvals/a1"
    assert link("https://gw.example/", APPROVAL) == "https://gw.example/approvals/a1"


def test_generic_and_slack_bodies() -> None:
    generic = body(APPROVAL, format="json", base="https://gw.example")
    assert generic["event"] == "approval.requested" and generic["approval"] == "a1"
    assert generic["link"] == "https://gw.example/approvals/a1"
    assert generic["request"]["arguments_preview"] == '{"amount":100}'
    slack = body(APPROVAL, format="slack")
    assert list(slack) == ["text"]
    text = slack["text"]
    assert "payments.send (critical)" in text and "a human decides" in text
    assert "/v1/approvals/a1" in text


async def test_a_notification_is_posted_without_waiting_for_it() -> None:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        received.append(orjson.loads(await request.read()))
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    port = sock.getsockname()[1]
    notifier = Notifier(
        ApprovalsSettings(webhook_url=f"http://127.0.0.1:{port}/hook", webhook_format="slack")
    )
    try:
        notifier.send(APPROVAL)  # returns at once
        await asyncio.wait_for(arrived.wait(), 5)
        assert "payments.send" in received[0]["text"]
    finally:
        await notifier.close()
        await runner.cleanup()


async def test_without_a_webhook_nothing_is_posted() -> None:
    notifier = Notifier(ApprovalsSettings())
    notifier.send(APPROVAL)
    await notifier.close()
