"""Injected time. Every expiry, window and bucket reads a `Clock`, never the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of time: wall-clock seconds and a monotonic counter."""

    def now(self) -> float:
        """Seconds since the Unix epoch (wall clock)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds from `time.monotonic()`."""
        return time.monotonic()


def isoformat(timestamp: float) -> str:
    """RFC 3339 UTC timestamp with microseconds, e.g. `2026-01-01T00:00:00.000000Z`."""
    # The text of strftime("%Y-%m-%dT%H:%M:%S.%fZ") for any year 1000-9999, at
    # a fraction of its cost (strftime is the C library's; it is called for
    # every audit record).
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
