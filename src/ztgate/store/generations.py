"""Change generations: how a running gateway learns that stored state changed.

Every management write (a tool added, later an agent revoked) bumps a named
generation in the same transaction. The gateway asks `GenerationWatcher`
before each call whether anything changed, and reloads only what did, so a
change made by another process (the CLI) holds from the very next call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from ztgate.errors import StoreError, StoreUnavailableError
from ztgate.store.database import BUMPED, Database, DedicatedConnection
from ztgate.store.tables import generations

if TYPE_CHECKING:
    from ztgate.store.broadcasts import ChangeBroadcasts


def bump(conn: Connection, name: str) -> None:
    """Increment generation `name` inside the caller's write transaction.

    The name is noted on the connection: once `Database.write` commits, it
    tells `Database.after_commit` (the change broadcasts).
    """
    conn.info.setdefault(BUMPED, set()).add(name)
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
    case (nothing changed) reads no table. On PostgreSQL with change
    broadcasts (`ztgate.store.broadcasts`) it reads the generations table
    only after a broadcast (or a periodic re-read), and refuses while the
    broadcasts are down; without them, it reads the table (a handful of
    rows) on its own connection each time.
    """

    def __init__(
        self,
        database: Database,
        connection: DedicatedConnection | None = None,
        broadcasts: ChangeBroadcasts | None = None,
    ) -> None:
        """Watch `database`, on `connection` if given (else one of its own).

        Sharing the audit writer's connection (when it writes on the event
        loop) means the writer's own commits do not move data_version: only
        other processes' changes do.
        """
        self._database = database
        self._connection = connection or database.dedicated()
        self._broadcasts = broadcasts
        self._data_version: int | None = None
        self._seen: dict[str, int] = {}
        # One cursor kept on the connection it was made on (a reopened
        # connection gets a new one): a cursor per query cost a fifth of it.
        self._cursor: Any = None
        self._cursor_of: Any = None

    def prime(self) -> None:
        """Record the current generations as seen."""
        self.changed()

    def changed(self) -> set[str]:
        """Names whose generation changed since the last call.

        Raises:
            StoreUnavailableError: the database cannot be read, or the
                broadcasts are down (this replica cannot know what changed).
        """
        if self._broadcasts is not None:
            if not self._broadcasts.take():
                return set()
        elif self._database.is_sqlite and not self._sqlite_data_changed():
            return set()
        try:
            current = self._read_raw()
        except StoreError:
            if self._broadcasts is not None:
                self._broadcasts.again()
            raise
        changed = {n for n, v in current.items() if self._seen.get(n) != v}
        self._seen = current
        return changed

    def _sqlite_data_changed(self) -> bool:
        # The audit writer commits on another connection, so data_version
        # moves on most calls; the generations table is then read on this
        # same raw connection (a few microseconds), not through the pool.
        version = self._query("PRAGMA data_version")[0][0]
        if version == self._data_version:
            return False
        self._data_version = version
        return True

    def _read_raw(self) -> dict[str, int]:
        rows = self._query("SELECT name, value FROM generations")
        return {str(name): int(value) for name, value in rows}

    def _query(self, sql: str) -> list[Any]:
        try:
            raw = self._connection.raw()
            cursor = self._cursor
            if cursor is None or self._cursor_of is not raw:
                cursor = self._cursor = raw.cursor()
                self._cursor_of = raw
                # data_version counts per connection (a new one starts at 1 on
                # SQLite): a value seen on another connection compares to nothing.
                self._data_version = None
            cursor.execute(sql)
            rows: list[Any] = cursor.fetchall()
            if not self._database.is_sqlite:
                raw.rollback()  # end the read's transaction: never left idle in one
        except Exception as exc:
            self.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreUnavailableError(f"database unavailable: {exc}") from exc
        return rows

    def close(self) -> None:
        """Forget the connection's state (the connection is closed and reopened on demand)."""
        self._connection.close()
        self._data_version = None
        self._cursor = self._cursor_of = None
