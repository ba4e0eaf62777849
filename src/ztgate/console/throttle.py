"""Login throttling: failed attempts per name and per client address, in memory.

A small sliding window per key. Throttling applies the same to names that
exist and names that do not, so it tells an attacker nothing. It is per
gateway process: with several workers an attacker gets a few times more
tries, still far too few to guess a 12-character password.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ztgate.clock import Clock

MAX_KEYS = 10_000  # beyond, the least recently failed keys are forgotten


class LoginThrottle:
    """Counts failures per name and per address within a window."""

    def __init__(self, clock: Clock, *, per_name: int, per_address: int, window: float) -> None:
        """At most `per_name` / `per_address` failures within `window` seconds."""
        self._clock = clock
        self._limits = {"name": per_name, "address": per_address}
        self._window = window
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def retry_after(self, name: str, address: str) -> float | None:
        """Seconds until a login for `name` from `address` may be tried, or None: now."""
        now = self._clock.monotonic()
        waits = []
        for kind, value in (("name", name), ("address", address)):
            times = self._recent((kind, value), now)
            if len(times) >= self._limits[kind]:
                waits.append(times[0] + self._window - now)
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        """Count a failed login."""
        now = self._clock.monotonic()
        for key in (("name", name), ("address", address)):
            times = self._recent(key, now)
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str | None = None) -> None:
        """A good login clears the name's failures, and takes back the attempt it counted.

        Logins count as failed *before* the password is checked (`failed`),
        so that requests sent in parallel cannot all pass `retry_after`
        first; a good one then gives its address's count back.
        """
        self._failures.pop(("name", name), None)
        if address is not None:
            times = self._failures.get(("address", address))
            if times:
                times.pop()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        return times
