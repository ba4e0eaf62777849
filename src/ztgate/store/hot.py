"""Hot ephemeral state: nonces, windowed counters, marks, token buckets, sliding windows, totals.

The interface is small and asynchronous so that a shared implementation
(Redis, in the multi-node issue) can replace the in-process one unchanged.
Every entry expires; nothing here is durable.

Two kinds of time:

- TTLs (`remember_once`, `incr`, `mark`, `charge`, `seed`, `note`) are on the wall
  clock, because what they guard is wall-clock time too: a proof's `iat`
  window, a task's expiry.
- Token buckets (`take`) and sliding windows (`hit`) measure durations on
  the implementation's monotonic clock, so a wall-clock step (NTP, an
  operator) neither mints tokens nor forgets events. Each operation reads
  its own time: a shared store uses one clock for every node (Redis:
  `TIME` inside the script, with a negative elapsed time counted as zero).

Each operation is atomic: `take` takes from all its buckets or from none,
`charge` adds to all its totals or to none (a Lua script in Redis).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ztgate.clock import Clock

# The labels one field of a `note` map keeps (a value seen in many tools' results).
MAX_LABELS = 8


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: `rate` tokens a second flow in, up to `burst`; it starts full."""

    key: str
    rate: float
    burst: float


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

    async def take(self, buckets: Sequence[Bucket], cost: float = 1.0) -> tuple[float, str | None]:
        """Take `cost` tokens from every bucket, or from none.

        Returns (0.0, None) when taken; else the seconds until all of them
        would hold `cost` tokens (infinity if `cost` is more than a bucket's
        burst) and the key of the bucket that takes longest to refill.
        """
        ...

    async def hit(self, key: str, window: float, cap: int) -> int:
        """Record one event at `key`; the events in the last `window` seconds, this one included.

        Only the newest `cap` events are kept, so the answer is at most `cap`.
        """
        ...

    async def charge(
        self,
        key: str,
        amounts: Sequence[float],
        limits: Sequence[float | None],
        ttl: float,
    ) -> tuple[bool, tuple[float, ...]]:
        """Add `amounts` to the totals at `key` unless one would pass its limit (None: none).

        Returns whether they were added and the totals after (or as they
        stand, if not). Totals start at zero and expire `ttl` seconds after
        they were created; negative amounts give back.
        """
        ...

    async def seed(self, key: str, totals: Sequence[float], ttl: float) -> bool:
        """Set the totals at `key` if there are none; True if set."""
        ...

    async def forget(self, key: str) -> None:
        """Delete whatever is stored at `key` (a bucket, a window, totals, a flag)."""
        ...

    async def note(self, key: str, entries: Mapping[str, str], ttl: float, cap: int) -> None:
        """Add labels to the map at `key`: each field keeps the set of labels noted for it.

        The map expires `ttl` seconds after this note; it holds at most `cap`
        fields (new fields beyond are dropped) and each field at most
        `MAX_LABELS` labels. (Redis: a hash whose values join the labels,
        merged by a script, then EXPIRE.)
        """
        ...

    async def notes(self, key: str, fields: Sequence[str]) -> list[frozenset[str]]:
        """The labels noted at `key` for each of `fields` (empty for a field never noted)."""
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
        self._totals: dict[str, list[float]] = {}
        self._notes: dict[str, dict[str, set[str]]] = {}
        self._heap: list[tuple[float, str]] = []
        # Buckets and windows, on the monotonic clock: key -> [tokens, last
        # refill], key -> event times. An entry whose bucket would be full
        # again, or whose window is empty, is the same as none: dropped.
        self._buckets: dict[str, list[float]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._idle: dict[str, float] = {}
        self._idle_heap: list[tuple[float, str]] = []

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
        self._drop(key)

    async def is_marked(self, key: str) -> bool:
        """True while the flag at `key` is set."""
        return self._alive(key)

    async def take(self, buckets: Sequence[Bucket], cost: float = 1.0) -> tuple[float, str | None]:
        """Take `cost` tokens from every bucket, or none; (0.0, None), or the wait and why."""
        now = self._clock.monotonic()
        states = self._buckets
        levels = []
        wait = 0.0
        slowest = None
        for bucket in buckets:
            state = states.get(bucket.key)
            if state is None:
                tokens = bucket.burst
            else:
                # A monotonic clock never goes back; if one does, no time passed
                # (nothing drains a bucket but calls).
                elapsed = now - state[1]
                tokens = state[0] + elapsed * bucket.rate if elapsed > 0 else state[0]
                if tokens > bucket.burst:
                    tokens = bucket.burst
            levels.append(tokens)
            if tokens < cost:
                short = math.inf if cost > bucket.burst else (cost - tokens) / bucket.rate
                if short > wait:
                    wait, slowest = short, bucket.key
        if slowest is not None:
            return wait, slowest
        for index, bucket in enumerate(buckets):
            left = levels[index] - cost
            state = states.get(bucket.key)
            if state is None:
                states[bucket.key] = [left, now]
            else:
                state[0] = left
                state[1] = now
            self._until_idle(bucket.key, now + (bucket.burst - left) / bucket.rate, now)
        return 0.0, None

    async def hit(self, key: str, window: float, cap: int) -> int:
        """Record an event; how many of the newest `cap` are within `window` seconds."""
        now = self._clock.monotonic()
        events = self._windows.get(key)
        if events is None:
            events = self._windows[key] = deque(maxlen=max(1, cap))
        elif events.maxlen != max(1, cap):
            events = self._windows[key] = deque(events, maxlen=max(1, cap))
        horizon = now - window
        while events and events[0] <= horizon:
            events.popleft()
        events.append(now)  # beyond maxlen, the oldest goes
        self._until_idle(key, now + window, now)
        return len(events)

    async def charge(
        self,
        key: str,
        amounts: Sequence[float],
        limits: Sequence[float | None],
        ttl: float,
    ) -> tuple[bool, tuple[float, ...]]:
        """Add `amounts` to the totals at `key` unless a limit would be passed."""
        current = self._totals.get(key) if self._alive(key) else None
        totals = [0.0] * len(amounts) if current is None else current
        after = [total + amount for total, amount in zip(totals, amounts, strict=True)]
        for index, limit in enumerate(limits):
            if limit is not None and amounts[index] > 0 and after[index] > limit:
                return False, tuple(totals)
        if current is None:
            self._set(key, ttl)
        self._totals[key] = after
        return True, tuple(after)

    async def seed(self, key: str, totals: Sequence[float], ttl: float) -> bool:
        """Set the totals at `key` unless some are there."""
        if key in self._totals and self._alive(key):
            return False
        self._set(key, ttl)
        self._totals[key] = [float(total) for total in totals]
        return True

    async def forget(self, key: str) -> None:
        """Delete whatever is stored at `key`."""
        self._drop(key)
        self._buckets.pop(key, None)
        self._windows.pop(key, None)
        self._idle.pop(key, None)

    async def note(self, key: str, entries: Mapping[str, str], ttl: float, cap: int) -> None:
        """Add `entries` (field -> label) to the map at `key`, which then lives `ttl` seconds."""
        noted = self._notes.get(key) if self._alive(key) else None
        if noted is None:
            noted = self._notes[key] = {}
        for name, label in entries.items():
            labels = noted.get(name)
            if labels is None:
                if len(noted) >= cap:
                    continue
                labels = noted[name] = set()
            if len(labels) < MAX_LABELS:
                labels.add(label)
        self._set(key, ttl)

    async def notes(self, key: str, fields: Sequence[str]) -> list[frozenset[str]]:
        """The labels noted at `key` for each of `fields`."""
        noted = self._notes.get(key) if self._alive(key) else None
        if noted is None:
            return [frozenset()] * len(fields)
        return [frozenset(noted.get(name, ())) for name in fields]

    def _alive(self, key: str) -> bool:
        expires = self._expiry.get(key)
        if expires is None:
            return False
        if expires <= self._clock.now():
            self._drop(key)
            return False
        return True

    def _drop(self, key: str) -> None:
        self._expiry.pop(key, None)
        self._notes.pop(key, None)
        self._counters.pop(key, None)
        self._totals.pop(key, None)

    def _until_idle(self, key: str, idle_at: float, now: float) -> None:
        """Note when the bucket or window at `key` becomes the same as none, and sweep.

        A key has one heap entry, pushed when it appears; an entry found
        early (the key was used since) is pushed again with its new time.
        """
        idle = self._idle
        heap = self._idle_heap
        if key not in idle:
            heapq.heappush(heap, (idle_at, key))
            if len(heap) > 2 * len(idle) + 64:  # entries of forgotten keys
                heap[:] = [(when, name) for name, when in idle.items()]
                heapq.heapify(heap)
        idle[key] = idle_at
        if heap[0][0] > now:
            return  # nothing idle yet: the common case
        for _ in range(self._SWEEP_PER_WRITE):
            if not heap or heap[0][0] > now:
                return
            _, name = heapq.heappop(heap)
            current = idle.get(name)
            if current is None:
                continue
            if current > now:
                heapq.heappush(heap, (current, name))
                continue
            del idle[name]
            self._buckets.pop(name, None)
            self._windows.pop(name, None)

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
                self._drop(key)
