"""What the gateway keeps in memory about tasks and warrants, reloaded when they change.

The `warrant` check asks, on every call, whether a warrant's task is still
active and whether the warrant (or one above it) was revoked. Both answers
come from a snapshot of the store that the gateway reloads when the "tasks"
generation moves: the tasks that can still have a live warrant (not past
their expiry) and the revoked warrants not yet expired. A call with nothing
changed costs two dictionary lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy import select

from ztgate.clock import Clock
from ztgate.store.database import Database
from ztgate.store.tables import tasks as tasks_table
from ztgate.store.tables import warrants as warrants_table
from ztgate.tasks.registry import ACTIVE
from ztgate.warrants.token import Warrant


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """The tasks' states and the revoked warrants, as of one reload."""

    states: Mapping[str, tuple[str, float]] = field(default_factory=lambda: MappingProxyType({}))
    revoked: frozenset[str] = frozenset()

    def refusal(self, warrant: Warrant, now: float) -> str | None:
        """Why `warrant` cannot be used now (task ended or expired, revoked), or None."""
        known = self.states.get(warrant.task_id)
        if known is None:
            return f"task {warrant.task_id} is unknown or has expired"
        state, expires_at = known
        if state != ACTIVE:
            return f"task {warrant.task_id} is {state}"
        if now >= expires_at:
            return f"task {warrant.task_id} has expired"
        for warrant_id in warrant.lineage:
            if warrant_id in self.revoked:
                which = "this warrant" if warrant_id == warrant.id else "a warrant above it"
                return f"{which} ({warrant_id}) is revoked"
        return None


class LiveTasks:
    """A `TaskSnapshot` reloaded from the store on demand."""

    def __init__(self, database: Database, clock: Clock) -> None:
        """Nothing is read until `reload`."""
        self._database = database
        self._clock = clock
        self.snapshot = TaskSnapshot()

    def reload(self) -> TaskSnapshot:
        """Read the live tasks and revoked warrants again.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        now = self._clock.now()
        with self._database.read() as conn:
            tasks = conn.execute(
                select(tasks_table.c.id, tasks_table.c.state, tasks_table.c.expires_at).where(
                    tasks_table.c.expires_at > now
                )
            ).all()
            revoked = conn.execute(
                select(warrants_table.c.id).where(
                    warrants_table.c.revoked_at.is_not(None), warrants_table.c.expires_at > now
                )
            ).all()
        self.snapshot = TaskSnapshot(
            MappingProxyType({row[0]: (row[1], float(row[2])) for row in tasks}),
            frozenset(row[0] for row in revoked),
        )
        return self.snapshot
