"""Change generations: how a running gateway learns that stored state changed.

Every management write (a tool added, later an agent revoked) bumps a named
generation in the same transaction. The gateway asks `GenerationWatcher`
before each call whether anything changed, and reloads only what did, so a
change made by another process (the CLI) holds from the very next call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from ztgate.store.database import Database, map_store_errors
from ztgate.store.tables import generations


def bump(conn: Connection, name: str) -> None:
    """Increment generation `name` inside the caller's write transaction."""
    result = conn.execute(
        update(generations).where(generations.c.name == name).values(value=generations.c.value + 1)
    )
    if result.rowcount == 0:
        conn.execute(insert(generations).values(name=name, value=1))


def read_all(conn: Connection) -> dict[str, int]:
    """Every generation by name."""
    rows = conn.execute(select(generations.c.name, generations.c.value))
    return {name: int(value) for name, value in rows}


class GenerationWatcher:
    """Tells which generations changed since it last looked.

    On SQLite it first asks `PRAGMA data_version`, which changes only when
    another connection commits and costs a few microseconds, so the common
    case (nothing changed) reads no table.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._raw: Any = None
        self._data_version: int | None = None
        self._seen: dict[str, int] = {}

    def prime(self) -> None:
        """Record the current generations as seen."""
        self.changed()

    def changed(self) -> set[str]:
        """Names whose generation changed since the last call.

        Raises:
            StoreUnavailableError: the database cannot be read.
        """
        with map_store_errors():
            if self._database.is_sqlite and not self._sqlite_data_changed():
                return set()
            with self._database.read() as conn:
                current = read_all(conn)
        changed = {n for n, v in current.items() if self._seen.get(n) != v}
        self._seen = current
        return changed

    def _sqlite_data_changed(self) -> bool:
        if self._raw is None:
            self._raw = self._database.engine.raw_connection()
        try:
            version = self._raw.cursor().execute("PRAGMA data_version").fetchone()[0]
        except Exception:
            self.close()
            raise
        if version == self._data_version:
            return False
        self._data_version = version
        return True

    def close(self) -> None:
        """Release the watcher's own connection."""
        if self._raw is not None:
            self._raw.close()
            self._raw = None
            self._data_version = None
