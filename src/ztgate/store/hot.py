"""Hot ephemeral state: nonces, windowed counters and marks with expiry.

The interface is small and asynchronous so that a shared implementation
(Redis, in the multi-node issue) can replace the in-process one unchanged.
Every entry expires; nothing here is durable.
"""

from __future__ import annotations

import heapq
from typing import Protocol

from ztgate.clock import Clock


class HotState(Protocol):
    """Shared, expiring state for checks that must remember across calls."""

    async def remember_once(self, key: str, ttl: float) -> bool:
        """Store `key` for `ttl` seconds; True if it was not already there (first use)."""
        ...

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add `amount` to a counter that expires `ttl` seconds after it was created."""
        ...

    async def mark(self, key: str, ttl: float) -> None:
        """Set a flag (a revocation, a suspension) for `ttl` seconds."""
        ...

    async def unmark(self, key: str) -> None:
        """Clear a flag."""
        ...

    async def is_marked(self, key: str) -> bool:
        """True while a flag is set and not expired."""
        ...


class MemoryHotState:
    """The embedded, in-process implementation.

    Expiry is lazy (checked on read) plus a bounded sweep on every write, so
    memory stays proportional to the live entries.
    """

    _SWEEP_PER_WRITE = 8

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._counters: dict[str, int] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        now = self._clock.now()
        return sum(1 for expires in self._expiry.values() if expires > now)

    async def remember_once(self, key: str, ttl: float) -> bool:
        """Store `key` for `ttl` seconds; True if it was new."""
        if self._alive(key):
            return False
        self._set(key, ttl)
        return True

    async def incr(self, key: str, amount: int, ttl: float) -> int:
        """Add `amount` to the counter at `key`, creating it with `ttl` if absent."""
        if not self._alive(key):
            self._set(key, ttl)
            self._counters[key] = 0
        value = self._counters.get(key, 0) + amount
        self._counters[key] = value
        return value

    async def mark(self, key: str, ttl: float) -> None:
        """Set a flag at `key` for `ttl` seconds."""
        self._set(key, ttl)

    async def unmark(self, key: str) -> None:
        """Clear the flag at `key`."""
        self._expiry.pop(key, None)
        self._counters.pop(key, None)

    async def is_marked(self, key: str) -> bool:
        """True while the flag at `key` is set."""
        return self._alive(key)

    def _alive(self, key: str) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if expires <= self._clock.now():
            self._expiry.pop(key, None)
            self._counters.pop(key, None)
            return False
        return True

    def _set(self, key: str, ttl: float) -> None:
        expires = self._clock.now() + ttl
        self._expiry[key] = expires
        heapq.heappush(self._heap, (expires, key))
        if len(self._heap) > 2 * len(self._expiry) + 64:
            # Renewed keys leave stale heap entries behind; rebuild from the truth.
            self._heap = [(when, name) for name, when in self._expiry.items()]
            heapq.heapify(self._heap)
        self._sweep()

    def _sweep(self) -> None:
        now = self._clock.now()
        for _ in range(self._SWEEP_PER_WRITE):
            if not self._heap or self._heap[0][0] > now:
                return
            expires, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires:
                del self._expiry[key]
                self._counters.pop(key, None)
