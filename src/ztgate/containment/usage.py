"""Tasks' budget use, written behind to the store so that a restart does not reset it.

The budget check counts in hot state; each gateway process also notes here
what it counted (`add`), and writes it to the `task_usage` table as
increments every `[limits] usage_flush_seconds` and at shutdown (`take` on
the event loop, `write` in a worker thread, `restore` if the write failed).
Increments, not totals, so that several processes (workers, nodes) add up.
At start, `load` reads the use of the live tasks back into hot state. A
crash loses at most one flush interval of counting.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from ztgate.clock import Clock
from ztgate.store.database import Database
from ztgate.store.tables import task_usage
from ztgate.store.tables import tasks as tasks_table


@dataclass(frozen=True, slots=True)
class Usage:
    """What a task has used, as stored."""

    task_id: str
    calls: int
    spend: float
    expires_at: float


class UsageLog:
    """Pending increments per task, and the table they go to."""

    def __init__(self, database: Database, clock: Clock) -> None:
        """Nothing is pending at first."""
        self._database = database
        self._clock = clock
        self._pending: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, task_id: str, calls: int, spend: float) -> None:
        """Note `calls` more calls and `spend` more spend for a task."""
        pending = self._pending.get(task_id)
        if pending is None:
            self._pending[task_id] = [float(calls), spend]
        else:
            pending[0] += calls
            pending[1] += spend

    def take(self) -> dict[str, list[float]]:
        """The pending increments, now no longer pending."""
        pending, self._pending = self._pending, {}
        return pending

    def restore(self, batch: dict[str, list[float]]) -> None:
        """Put back increments whose write failed."""
        for task_id, (calls, spend) in batch.items():
            self.add(task_id, int(calls), spend)

    def write(self, batch: dict[str, list[float]]) -> None:
        """Add `batch` to the stored use, in one transaction.

        Raises:
            StoreError: the write failed (nothing was written).
        """
        if not batch:
            return
        now = self._clock.now()
        columns = task_usage.c
        with self._database.write() as conn:
            for task_id, (calls, spend) in sorted(batch.items()):
                result = conn.execute(
                    update(task_usage)
                    .where(columns.task_id == task_id)
                    .values(
                        calls=columns.calls + int(calls),
                        spend=columns.spend + spend,
                        updated_at=now,
                    )
                )
                if result.rowcount == 0:
                    conn.execute(
                        insert(task_usage).values(
                            task_id=task_id, calls=int(calls), spend=spend, updated_at=now
                        )
                    )

    def load(self) -> list[Usage]:
        """The stored use of every task that has not expired.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        now = self._clock.now()
        with self._database.read() as conn:
            rows = conn.execute(
                select(
                    task_usage.c.task_id,
                    task_usage.c.calls,
                    task_usage.c.spend,
                    tasks_table.c.expires_at,
                )
                .join(tasks_table, tasks_table.c.id == task_usage.c.task_id)
                .where(tasks_table.c.expires_at > now)
            ).all()
        return [Usage(row[0], int(row[1]), float(row[2]), float(row[3])) for row in rows]

    def read(self, task_id: str) -> tuple[int, float] | None:
        """The stored use of one task (without what is pending), or None."""
        with self._database.read() as conn:
            row = conn.execute(
                select(task_usage.c.calls, task_usage.c.spend).where(
                    task_usage.c.task_id == task_id
                )
            ).first()
        return None if row is None else (int(row[0]), float(row[1]))
