"""Alerts: a log line, and a webhook POST in the background that never fails a call."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from ztgate.containment.alerts import Alerter
from ztgate.metrics import Metrics


class Receiver:
    """A webhook receiver on loopback that records what it is sent."""

    def __init__(self, delay: float = 0.0, status: int = 204) -> None:
        self.delay = delay
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.content_types.append(request.headers.get("content-type", ""))
        self.received.append(orjson.loads(await request.read()))
        self.arrived.set()
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status)


async def serve(receiver: Receiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    return runner


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    runner = await serve(found)
    yield found
    await runner.cleanup()


def sample(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("ztgate_alerts_total", {"result": result}) or 0.0


async def test_an_alert_is_logged_and_posted_as_json(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    alerter = Alerter(receiver.url, timeout=2, metrics=metrics)
    with caplog.at_level(logging.WARNING, "ztgate.containment.alerts"):
        alerter.send({"event": "agent.suspended", "agent": "spiffe://x/a"})
    assert "containment alert" in caplog.text and "agent.suspended" in caplog.text
    await asyncio.wait_for(receiver.arrived.wait(), 5)
    await alerter.close()
    assert receiver.received == [{"event": "agent.suspended", "agent": "spiffe://x/a"}]
    assert receiver.content_types == ["application/json"]
    assert sample(metrics, "sent") == 1


async def test_without_a_webhook_only_the_log_line(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter()
    with caplog.at_level(logging.WARNING, "ztgate.containment.alerts"):
        alerter.send({"event": "x"})
    assert "containment alert" in caplog.text
    await alerter.close()


async def test_a_dead_receiver_is_logged_and_counted_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        metrics = Metrics()
        alerter = Alerter(f"http://127.0.0.1:{port}/hook", timeout=2, metrics=metrics)
        alerter.send({"event": "x"})
        await alerter.close(grace=5)
    assert sample(metrics, "failed") == 1
    assert "failed" in caplog.text


async def test_a_slow_receiver_times_out_without_holding_anything_up() -> None:
    slow = Receiver(delay=1.0)
    runner = await serve(slow)
    try:
        metrics = Metrics()
        alerter = Alerter(slow.url, timeout=0.2, metrics=metrics)
        started = asyncio.get_running_loop().time()
        alerter.send({"event": "x"})
        assert asyncio.get_running_loop().time() - started < 0.05  # send never waits
        await alerter.close(grace=3)
        assert sample(metrics, "failed") == 1
    finally:
        await runner.cleanup()


async def test_an_error_status_counts_as_failed() -> None:
    refusing = Receiver(status=500)
    runner = await serve(refusing)
    try:
        metrics = Metrics()
        alerter = Alerter(refusing.url, timeout=2, metrics=metrics)
        alerter.send({"event": "x"})
        await alerter.close(grace=3)
        assert sample(metrics, "failed") == 1
    finally:
        await runner.cleanup()


async def test_alerts_beyond_the_limit_in_flight_are_dropped() -> None:
    slow = Receiver(delay=1.0)
    runner = await serve(slow)
    try:
        metrics = Metrics()
        alerter = Alerter(slow.url, timeout=10, max_pending=2, metrics=metrics)
        for _ in range(5):
            alerter.send({"event": "x"})
        assert sample(metrics, "dropped") == 3
        await alerter.close(grace=0.1)  # the two in flight are cancelled
    finally:
        await runner.cleanup()
