"""Alerts: a log line, and a webhook POST with a JSON body, never in a call's way.

`send` logs the alert at once and schedules the POST as a background task
with a timeout; a failure (refused, timed out, a non-2xx answer) is logged
and counted, never raised. At most `max_pending` posts are in flight; more
are dropped, with a log line, rather than piling up behind a dead receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from ztgate.metrics import Metrics

logger = logging.getLogger(__name__)
MAX_PENDING = 100


class Alerter:
    """Sends containment alerts to the log and, when configured, to a webhook."""

    def __init__(
        self,
        url: str = "",
        *,
        timeout: float = 5.0,
        max_pending: int = MAX_PENDING,
        metrics: Metrics | None = None,
    ) -> None:
        """POST to `url` ("" for log lines only) within `timeout` seconds."""
        self.url = url
        self.metrics = metrics
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_pending = max_pending
        self._pending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def send(self, event: Mapping[str, Any]) -> None:
        """Log `event` and, with a webhook, post it in the background (needs a running loop)."""
        body = orjson.dumps(dict(event), option=orjson.OPT_SORT_KEYS)
        logger.warning("containment alert: %s", body.decode())
        if not self.url:
            return
        if len(self._pending) >= self._max_pending:
            logger.error(
                "containment alert dropped: %d alerts already in flight", len(self._pending)
            )
            self._count("dropped")
            return
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: bytes) -> None:
        try:
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(
                    timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
                )
            async with self._session.post(
                self.url, data=body, headers={"content-type": "application/json"}
            ) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning(
                "containment alert to %s failed: %s", self.url, exc or type(exc).__name__
            )
            self._count("failed")
        else:
            self._count("sent")

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(result).inc()

    async def close(self, grace: float = 2.0) -> None:
        """Wait up to `grace` seconds for alerts in flight, then cancel the rest and close."""
        if self._pending:
            _, late = await asyncio.wait(set(self._pending), timeout=grace)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None
