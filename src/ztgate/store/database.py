"""The durable store: one SQLAlchemy engine, migrated by Alembic.

SQLite (WAL) is the embedded default; the same schema and migrations run on
PostgreSQL (psycopg 3), selected by a `postgresql+psycopg://` URL. Every
driver failure that means "the database is not there" becomes a
`StoreUnavailableError`, which the front doors turn into a fail-closed 503.

Write transactions are serialised on both: SQLite has a single writer (BEGIN
IMMEDIATE); on PostgreSQL every `Database.write` transaction first takes one
transaction-level advisory lock, so the registries' read-check-write
transactions keep the semantics they have on SQLite. The audit append takes
only its chain head's row lock (`SELECT ... FOR UPDATE`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url

from ztgate.errors import ConfigError, StoreError, StoreUnavailableError

# `Connection.info` key under which `generations.bump` notes what a write
# transaction bumped, for `Database.after_commit`.
BUMPED = "ztgate_bumped_generations"

Synchronous = Literal["normal", "full"]
DEFAULT_BUSY_TIMEOUT_MS = 5000
_WAL_AUTOCHECKPOINT_PAGES = 8000
# The key of the transaction-level advisory lock every PostgreSQL write
# transaction takes ("ztgate" in ASCII): PostgreSQL's stand-in for SQLite's
# single writer.
WRITE_LOCK_KEY = 0x7A7467617465
_POSTGRES_DRIVERS = ("psycopg",)
_CONNECT_TIMEOUT_SECONDS = 5


def check_database_url(url: str) -> str:
    """`url` if it names a database ztgate runs on; raise `ValueError` saying why not.

    SQLite (`sqlite:///PATH`) and PostgreSQL through psycopg 3
    (`postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE`;
    `postgresql://` means the same driver).
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ValueError(f"not a database URL: {url!r}") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite":
        return url
    if backend == "postgresql":
        if "+" in parsed.drivername and driver not in _POSTGRES_DRIVERS:
            raise ValueError(
                f"PostgreSQL is reached through psycopg 3: postgresql+psycopg://, not {driver}"
            )
        if not parsed.database:
            raise ValueError("a PostgreSQL URL must name a database: postgresql+psycopg://HOST/DB")
        return url
    raise ValueError(
        "the store must be SQLite (sqlite:///PATH) or PostgreSQL (postgresql+psycopg://HOST/DB)"
    )


def display_url(url: str) -> str:
    """`url` with its password (if any) masked, for logs and banners."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "(not a database URL)"


def _engine_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # psycopg 3, never SQLAlchemy's psycopg2 default
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


class Database:
    """A database URL, its engine and the schema's migrations."""

    def __init__(
        self,
        url: str,
        *,
        synchronous: Synchronous = "normal",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        try:
            check_database_url(url)
        except ValueError as error:
            raise ConfigError("store", "url", str(error)) from error
        parsed = make_url(url)
        self.url = url
        self.synchronous = synchronous
        # Dedicated connections open right now: closed by `dispose`.
        self._dedicated: set[DedicatedConnection] = set()
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgresql = not self.is_sqlite
        # Told the generations each committed `write` bumped (the change
        # broadcasts' publisher, `ztgate.store.broadcasts`); None: nobody.
        self.after_commit: Callable[[Iterable[str]], None] | None = None
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database))
        if self.is_sqlite:
            self.engine: Engine = create_engine(url)
            _configure_sqlite(self.engine, synchronous, busy_timeout_ms)
        else:
            self.engine = create_engine(
                _engine_url(url),
                pool_pre_ping=True,
                connect_args=_postgresql_options(busy_timeout_ms, parsed.query.get("options")),
            )

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success.

        On SQLite the transaction starts with BEGIN IMMEDIATE, so concurrent
        writers (a CLI and the gateway) queue instead of failing mid-way; on
        PostgreSQL it first takes the advisory write lock (`WRITE_LOCK_KEY`)
        to the same end, waiting at most `busy_timeout_ms` as SQLite does.
        """
        with map_store_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(ztgate_immediate=True)
            try:
                with conn.begin():
                    if self.is_postgresql:
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
                    yield conn
            finally:
                bumped = _take_bumped(conn)
        if bumped and self.after_commit is not None:
            self.after_commit(bumped)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads."""
        with map_store_errors(), self.engine.connect() as conn:
            yield conn

    def dedicated(self) -> DedicatedConnection:
        """A connection of its own, kept open, for a single long-lived writer."""
        return DedicatedConnection(self)

    @contextlib.contextmanager
    def raw_write(self) -> Iterator[RawCursor]:
        """A DBAPI cursor in a write transaction, committed on success.

        For the few hot paths (the audit append) where SQLAlchemy's
        per-statement overhead (about 100 us) would dominate. Statements use
        `:name` parameters and portable SQL; `RawCursor.for_update` is the
        one dialect difference (SQLite's BEGIN IMMEDIATE already locks). It
        does not take `Database.write`'s advisory lock.
        """
        connection = self.dedicated()
        try:
            with connection.transaction() as cursor:
                yield cursor
        finally:
            connection.close()

    def probe_write(self) -> None:
        """Raise `StoreUnavailableError` unless a write transaction can start and commit.

        On PostgreSQL: a pooled connection whose transactions may write (not
        a standby, not a read-only default), without waiting for any lock.
        """
        if self.is_sqlite:
            with self.raw_write():
                pass
            return
        with map_store_errors(), self.engine.connect() as conn:
            read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
            conn.rollback()
        if read_only != "off":
            raise StoreUnavailableError("database unavailable: it is read-only (a standby?)")

    def checkpoint_wal(self) -> None:
        """Copy the SQLite write-ahead log into the database file (PASSIVE: never blocks writers).

        The gateway runs this in the background, so that the automatic
        checkpoint (with its fsyncs) rarely lands on a call's commit.
        PostgreSQL checkpoints by itself: nothing to do there.
        """
        if not self.is_sqlite:
            return
        with map_store_errors(), self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def ping(self) -> None:
        """Raise `StoreUnavailableError` unless the database answers."""
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def migrate(self) -> None:
        """Bring the schema to the newest migration.

        On PostgreSQL under the write lock, in one transaction (its DDL is
        transactional): replicas starting at once migrate one after the
        other, and the later ones find the schema already at the head.
        """
        from ztgate.store.migrate import upgrade

        with map_store_errors(), self.engine.begin() as conn:
            if self.is_postgresql:
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
            upgrade(conn)

    def dispose(self) -> None:
        """Close every pooled connection, and every dedicated one still open, and the publisher."""
        close = getattr(self.after_commit, "close", None)
        if close is not None:
            close()
        for connection in list(self._dedicated):
            connection.close()
        self.engine.dispose()


class DedicatedConnection:
    """One DBAPI connection kept out of the pool, for the audit writer.

    Checking a connection out of SQLAlchemy's pool and back (with its reset)
    costs more than an SQLite commit; the writer keeps its own instead and
    reopens it after any failure.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: Any = None
        # The driver's connection behind `_connection`, and one cursor on it
        # (with its converted statements), kept for every transaction.
        self._driver: Any = None
        self._cursor: RawCursor | None = None

    def raw(self) -> Any:
        """The DBAPI connection, opened if needed.

        Raises:
            StoreUnavailableError: the database cannot be opened.
        """
        if self._connection is None:
            dbapi = self._database.engine.dialect.loaded_dbapi
            # The pool hands out the driver's own connect errors, unwrapped.
            with map_store_errors(), _map_driver_errors(dbapi):
                fairy = self._database.engine.raw_connection()
                fairy.detach()  # ours alone: closing it closes the DBAPI connection
                self._connection = fairy
                self._driver = getattr(fairy, "dbapi_connection", None) or fairy
                self._database._dedicated.add(self)
        return self._connection

    def transaction(self) -> _Transaction:
        """A cursor in a write transaction, committed on success (a context manager).

        Raises:
            StoreUnavailableError: the database cannot be reached or written.
            StoreError: any other database failure.
        """
        return _Transaction(self)

    def _begin(self) -> RawCursor:
        # `_Transaction.__enter__`: the connection (opened if needed), its
        # cursor, and on SQLite the write lock (BEGIN IMMEDIATE).
        self.raw()
        cursor = self._cursor
        if cursor is None:
            cursor = self._cursor = RawCursor(self._driver.cursor(), self._database.is_sqlite)
        if self._database.is_sqlite:
            cursor.begin_immediate()
        return cursor

    def close(self) -> None:
        """Roll back anything open and close the connection."""
        if self._connection is not None:
            # The driver's own connection, closed directly: the pool would
            # "reset" it first, and log a traceback when the server is gone.
            driver = getattr(self._connection, "dbapi_connection", None) or self._connection
            _rollback_quietly(driver)
            with contextlib.suppress(Exception):
                driver.close()
            self._connection = self._driver = self._cursor = None
        self._database._dedicated.discard(self)


class _Transaction:
    """`DedicatedConnection.transaction`: a class, not a generator, for its few microseconds.

    Any failure closes the connection (rolling back); a driver error becomes
    `StoreUnavailableError` or `StoreError`, anything else propagates as it is.
    """

    __slots__ = ("_owner",)

    def __init__(self, owner: DedicatedConnection) -> None:
        self._owner = owner

    def __enter__(self) -> RawCursor:
        dbapi = self._owner._database.engine.dialect.loaded_dbapi
        try:
            return self._owner._begin()
        except dbapi.Error as error:
            self._owner.close()
            raise _mapped(dbapi, error) from error
        except BaseException:
            self._owner.close()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        owner = self._owner
        dbapi = owner._database.engine.dialect.loaded_dbapi
        if error is None:
            try:
                owner._driver.commit()
                return
            except dbapi.Error as failure:
                owner.close()
                raise _mapped(dbapi, failure) from failure
            except BaseException:
                owner.close()
                raise
        owner.close()
        if isinstance(error, dbapi.Error):
            raise _mapped(dbapi, error) from error


class RawCursor:
    """A DBAPI cursor taking `:name` parameters on any driver."""

    _NAMED = re.compile(r"(?<!:):([A-Za-z_][A-Za-z0-9_]*)")

    def __init__(self, cursor: Any, is_sqlite: bool) -> None:
        self._cursor = cursor
        self._is_sqlite = is_sqlite
        self._converted: dict[str, str] = {}

    @property
    def for_update(self) -> str:
        """` FOR UPDATE` where row locks need asking for; empty on SQLite."""
        return "" if self._is_sqlite else " FOR UPDATE"

    def begin_immediate(self) -> None:
        """SQLite's BEGIN IMMEDIATE: start a transaction holding the write lock."""
        self._cursor.execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; returns the DBAPI cursor."""
        self._cursor.execute(self._sql(sql), params or {})
        return self._cursor

    def executemany(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement for each parameter set."""
        self._cursor.executemany(self._sql(sql), rows)

    def _sql(self, sql: str) -> str:
        if self._is_sqlite:  # sqlite3 takes :name natively
            return sql
        converted = self._converted.get(sql)
        if converted is None:
            converted = self._NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
            self._converted[sql] = converted
        return converted


def _take_bumped(conn: Connection) -> set[str] | None:
    # `info` outlives the checkout (it belongs to the pooled DBAPI
    # connection): never let one transaction's names leak into the next.
    try:
        bumped: set[str] | None = conn.info.pop(BUMPED, None)
    except exc.SQLAlchemyError:  # invalidated: its info went with it
        return None
    return bumped


def _rollback_quietly(connection: Any) -> None:
    with contextlib.suppress(Exception):
        connection.rollback()


def _is_unavailable(dbapi: Any, error: Exception) -> bool:
    kinds = tuple(
        getattr(dbapi, name)
        for name in ("OperationalError", "InterfaceError")
        if hasattr(dbapi, name)
    )
    return isinstance(error, kinds)


def _mapped(dbapi: Any, error: Exception) -> StoreError:
    kind = StoreUnavailableError if _is_unavailable(dbapi, error) else StoreError
    return kind(f"database unavailable: {str(error).splitlines()[0]}")


@contextlib.contextmanager
def _map_driver_errors(dbapi: Any) -> Iterator[None]:
    try:
        yield
    except dbapi.Error as error:
        raise _mapped(dbapi, error) from error


@contextlib.contextmanager
def map_store_errors() -> Iterator[None]:
    """Map driver errors to the store's own exceptions at the boundary."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError) as error:
        raise StoreUnavailableError(f"database unavailable: {_short(error)}") from error
    except exc.SQLAlchemyError as error:
        raise StoreError(f"database error: {_short(error)}") from error


def _short(error: exc.SQLAlchemyError) -> str:
    original = getattr(error, "orig", None)
    return str(original if original is not None else error).splitlines()[0]


def _postgresql_options(
    busy_timeout_ms: int, given: str | tuple[str, ...] | None
) -> dict[str, Any]:
    # lock_timeout bounds the wait for the write lock and row locks, as
    # busy_timeout does on SQLite (0: wait for ever, on both). Durability is
    # the server's: `synchronous` is SQLite's alone, and a commit waits for
    # the server's WAL flush unless its administrator said otherwise
    # (synchronous_commit = off could lose answered calls' audit records in
    # a crash of the server).
    return {
        "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
        "application_name": "ztgate",
        # After the URL's own `?options=` (e.g. a search_path), which it would replace.
        "options": " ".join(
            [
                *([given] if isinstance(given, str) else given or ()),
                f"-c lock_timeout={int(busy_timeout_ms)}",
            ]
        ),
    }


def _configure_sqlite(engine: Engine, synchronous: Synchronous, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # A safety net: the gateway checkpoints in the background (checkpoint_wal).
        cursor.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("ztgate_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _create_private_file(path: Path) -> None:
    # The database holds the audit log: readable by its owner only. SQLite
    # creates its -wal and -shm files with the main file's permissions.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file."""
    return f"sqlite:///{os.fspath(path)}"
