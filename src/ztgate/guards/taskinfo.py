"""What guards need to know about a call's task: its intent and its expiry, cached.

A task's intent and expiry never change after creation, so each is read
from the store once per gateway process (in a worker thread) and kept in a
bounded cache. The task a call belongs to is the one its verified warrant
names (the `task.id` fact of the `warrant` check); with authentication off
there is none, and guards that work per task have nothing to go on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TASK_FACT = "task.id"  # set by the `warrant` check


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task's immutable facts."""

    id: str
    intent: str
    expires_at: float


def task_id(facts: Mapping[str, Any]) -> str | None:
    """The call's task, as the `warrant` check verified it, or None."""
    found = facts.get(TASK_FACT)
    return found if isinstance(found, str) and found else None


class TaskInfoCache:
    """`TaskInfo` by task id, loaded once each (a missing task is not cached)."""

    def __init__(self, load: Callable[[str], TaskInfo | None], *, size: int = 4096) -> None:
        """`load(task_id)` reads the store (it runs in a worker thread)."""
        self._load = load
        self._size = size
        self._cache: OrderedDict[str, TaskInfo] = OrderedDict()

    async def get(self, task: str) -> TaskInfo | None:
        """The task's info, or None if the store does not know it."""
        hit = self._cache.get(task)
        if hit is not None:
            self._cache.move_to_end(task)
            return hit
        info = await asyncio.to_thread(self._load, task)
        if info is not None:
            self._cache[task] = info
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return info
