"""The durable store: SQLite pragmas, private files, and failing closed."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ztgate.errors import ConfigError, StoreError, StoreUnavailableError
from ztgate.store.database import (
    DEFAULT_BUSY_TIMEOUT_MS,
    Database,
    RawCursor,
    Synchronous,
    map_store_errors,
    sqlite_url,
)
from ztgate.store.migrate import alembic_config


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ztgate.db"


@pytest.fixture
def open_db(db_path: Path) -> Iterator[list[Database]]:
    """Databases opened by a test, disposed afterwards."""
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.dispose()


def _open(opened: list[Database], path: Path, **kwargs: object) -> Database:
    db = Database(sqlite_url(path), **kwargs)  # type: ignore[arg-type]
    opened.append(db)
    return db


def _pragma(db: Database, name: str) -> object:
    with db.read() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


@pytest.fixture
def locked(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding BEGIN EXCLUSIVE on a migrated database."""
    setup = Database(sqlite_url(db_path))
    setup.migrate()
    setup.dispose()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield holder
    finally:
        holder.rollback()
        holder.close()


def test_database_fixture_is_migrated(database: Database) -> None:
    database.ping()
    with database.read() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert version == head


def test_wal_is_on(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    assert _pragma(db, "journal_mode") == "wal"


def test_foreign_keys_are_on(open_db: list[Database], db_path: Path) -> None:
    assert _pragma(_open(open_db, db_path), "foreign_keys") == 1


@pytest.mark.parametrize(("busy_timeout_ms", "expected"), [(None, 5000), (0, 0), (1234, 1234)])
def test_busy_timeout_is_set(
    open_db: list[Database], db_path: Path, busy_timeout_ms: int | None, expected: int
) -> None:
    kwargs = {} if busy_timeout_ms is None else {"busy_timeout_ms": busy_timeout_ms}
    db = _open(open_db, db_path, **kwargs)
    assert _pragma(db, "busy_timeout") == expected
    assert DEFAULT_BUSY_TIMEOUT_MS == 5000


@pytest.mark.parametrize(("synchronous", "expected"), [("normal", 1), ("full", 2)])
def test_synchronous_is_set(
    open_db: list[Database], db_path: Path, synchronous: Synchronous, expected: int
) -> None:
    db = _open(open_db, db_path, synchronous=synchronous)
    assert _pragma(db, "synchronous") == expected


def test_sqlite_file_is_created_0600(open_db: list[Database], db_path: Path) -> None:
    previous = os.umask(0)
    try:
        db = _open(open_db, db_path)
        with db.write() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists()
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_an_existing_file_is_kept(open_db: list[Database], db_path: Path) -> None:
    first = _open(open_db, db_path)
    with first.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (42)"))
    first.dispose()
    second = _open(open_db, db_path)
    with second.read() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 42


def test_in_memory_database_creates_no_file(
    open_db: list[Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = Database("sqlite:///:memory:")
    open_db.append(db)
    db.ping()
    assert list(tmp_path.iterdir()) == []


def test_write_commits(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    other = _open(open_db, db_path)
    with other.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_write_rolls_back_when_the_block_raises(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("abort")
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_write_fails_closed_while_another_connection_holds_the_lock(
    open_db: list[Database], db_path: Path, locked: sqlite3.Connection
) -> None:
    db = _open(open_db, db_path, busy_timeout_ms=50)
    started = time.monotonic()
    locked_error = pytest.raises(StoreUnavailableError, match="unavailable: database is locked")
    with locked_error, db.write() as conn:
        conn.execute(text("INSERT INTO generations (name, value) VALUES ('x', 1)"))
    assert time.monotonic() - started < 3
    locked.rollback()
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM generations")).scalar() == 0


def test_write_takes_the_lock_up_front(
    open_db: list[Database], db_path: Path, locked: sqlite3.Connection
) -> None:
    """BEGIN IMMEDIATE: the write fails at its start, before the block runs."""
    db = _open(open_db, db_path, busy_timeout_ms=20)
    ran = False
    with pytest.raises(StoreUnavailableError), db.write():
        ran = True
    assert not ran


def test_reads_continue_while_another_connection_writes(
    open_db: list[Database], db_path: Path, locked: sqlite3.Connection
) -> None:
    """WAL: readers do not wait for the writer."""
    db = _open(open_db, db_path, busy_timeout_ms=20)
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM tools")).scalar() == 0


def test_ping_of_an_unopenable_database_is_unavailable(
    open_db: list[Database], tmp_path: Path
) -> None:
    db = _open(open_db, tmp_path)  # a directory, not a database file
    with pytest.raises(StoreUnavailableError):
        db.ping()


def test_ping_answers(open_db: list[Database], db_path: Path) -> None:
    _open(open_db, db_path).ping()


def test_not_a_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Database("not a database url")
    assert (caught.value.source, caught.value.key) == ("store", "url")


def test_other_driver_errors_are_store_errors(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    with db.write() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(StoreError) as caught, db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "UNIQUE constraint failed" in caught.value.message


def test_missing_table_is_unavailable(open_db: list[Database], db_path: Path) -> None:
    """An unmigrated database cannot serve: sqlite reports it as an OperationalError."""
    db = _open(open_db, db_path)
    with pytest.raises(StoreUnavailableError, match="no such table"), db.read() as conn:
        conn.execute(text("SELECT * FROM tools"))


def test_map_store_errors_keeps_other_exceptions() -> None:
    with pytest.raises(KeyError), map_store_errors():
        raise KeyError("x")


def test_error_messages_are_one_line(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    with pytest.raises(StoreError) as caught, db.read() as conn:
        conn.execute(text("SELEC nonsense\nFROM nowhere"))
    assert "\n" not in caught.value.message


def test_migrate_is_idempotent(open_db: list[Database], db_path: Path) -> None:
    db = _open(open_db, db_path)
    db.migrate()
    db.migrate()
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_sqlite_url() -> None:
    assert sqlite_url(Path("/var/lib/ztgate/ztgate.db")) == "sqlite:////var/lib/ztgate/ztgate.db"


# -- raw writes (the audit hot path) ---------------------------------------------------------


def _count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM generations")).scalar_one())


def test_raw_write_commits(database: Database) -> None:
    with database.raw_write() as cursor:
        cursor.execute(
            "INSERT INTO generations (name, value) VALUES (:name, :value)",
            {
                "name": "tools",
                "value": 7,
            },
        )
        cursor.executemany(
            "INSERT INTO generations (name, value) VALUES (:name, :value)",
            [{"name": "a", "value": 1}, {"name": "b", "value": 2}],
        )
        row = cursor.execute("SELECT value FROM generations WHERE name = :n", {"n": "tools"})
        assert row.fetchone()[0] == 7
    assert _count(database) == 3


def test_raw_write_rolls_back_when_the_block_raises(database: Database) -> None:
    with pytest.raises(RuntimeError), database.raw_write() as cursor:
        cursor.execute("INSERT INTO generations (name, value) VALUES ('x', 1)")
        raise RuntimeError("abort")
    assert _count(database) == 0


def test_raw_write_constraint_failure_is_a_store_error_and_rolls_back(database: Database) -> None:
    with pytest.raises(StoreError) as caught, database.raw_write() as cursor:
        cursor.execute("INSERT INTO generations (name, value) VALUES ('x', 1)")
        cursor.execute("INSERT INTO generations (name, value) VALUES ('x', 2)")
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "UNIQUE" in caught.value.message
    assert _count(database) == 0


def test_raw_write_fails_closed_while_another_connection_holds_the_lock(
    open_db: list[Database], db_path: Path, locked: sqlite3.Connection
) -> None:
    db = _open(open_db, db_path, busy_timeout_ms=20)
    ran = False
    with pytest.raises(StoreUnavailableError, match="locked"), db.raw_write():
        ran = True
    assert not ran


def test_raw_write_returns_its_connection_to_the_pool(database: Database) -> None:
    for _ in range(30):  # more than the pool holds, were connections leaked
        with database.raw_write() as cursor:
            cursor.execute("SELECT 1")
    assert database.engine.pool.checkedout() == 0


def test_a_dedicated_connection_keeps_its_cursor_until_a_failure(database: Database) -> None:
    insert = "INSERT INTO generations (name, value) VALUES (:name, 1)"
    connection = database.dedicated()
    try:
        with connection.transaction() as first:
            first.execute(insert, {"name": "a"})
        with connection.transaction() as second:
            second.execute(insert, {"name": "b"})
        with pytest.raises(StoreError), connection.transaction() as failing:
            failing.execute(insert, {"name": "c"})
            failing.execute(insert, {"name": "c"})
        with connection.transaction() as after:
            after.execute(insert, {"name": "d"})
    finally:
        connection.close()

    assert second is first  # one cursor for every transaction...
    assert failing is first
    assert after is not first  # ...until a failure closes the connection and drops it
    assert _count(database) == 3  # a, b, d: the failed transaction rolled back


class _FailingCommit:
    """A driver connection whose commit fails as a lost database would."""

    def __init__(self, driver: Any, error: Exception) -> None:
        self._driver = driver
        self._error = error

    def commit(self) -> None:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)


def test_a_failed_commit_is_store_unavailable_and_commits_nothing(database: Database) -> None:
    dbapi = database.engine.dialect.loaded_dbapi
    connection = database.dedicated()
    try:
        connection.raw()
        connection._driver = _FailingCommit(connection._driver, dbapi.OperationalError("gone"))
        with pytest.raises(StoreUnavailableError, match="gone"), connection.transaction() as cursor:
            cursor.execute("INSERT INTO generations (name, value) VALUES ('x', 1)")
        assert connection._connection is None  # closed, rolled back: reopened on next use
        with connection.transaction() as cursor:
            cursor.execute("INSERT INTO generations (name, value) VALUES ('y', 1)")
    finally:
        connection.close()

    with database.read() as conn:
        names = conn.execute(text("SELECT name FROM generations")).scalars().all()
    assert names == ["y"]


def test_raw_cursor_needs_no_row_locks_on_sqlite(database: Database) -> None:
    with database.raw_write() as cursor:
        assert cursor.for_update == ""


class _Recorder:
    def __init__(self) -> None:
        self.sql: list[str] = []

    def execute(self, sql: str, params: object) -> None:
        self.sql.append(sql)

    def executemany(self, sql: str, rows: object) -> None:
        self.sql.append(sql)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT * FROM t WHERE a = :a AND b = :b_2",
            "SELECT * FROM t WHERE a = %(a)s AND b = %(b_2)s",
        ),
        ("SELECT x::text FROM t WHERE y = :y", "SELECT x::text FROM t WHERE y = %(y)s"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_raw_cursor_converts_named_parameters_for_other_drivers(sql: str, expected: str) -> None:
    recorder = _Recorder()
    cursor = RawCursor(recorder, is_sqlite=False)
    assert cursor.for_update == " FOR UPDATE"
    cursor.execute(sql, {})
    cursor.executemany(sql, [])
    assert recorder.sql == [expected, expected]


def test_raw_cursor_escapes_literal_percent_signs_for_pyformat_drivers() -> None:
    """psycopg reads `%` as a placeholder once parameters are passed: portable SQL must survive."""
    recorder = _Recorder()
    RawCursor(recorder, is_sqlite=False).execute(
        "SELECT name FROM tools WHERE name LIKE 'mail%' AND risk = :risk", {"risk": "read"}
    )
    assert recorder.sql == ["SELECT name FROM tools WHERE name LIKE 'mail%%' AND risk = %(risk)s"]


def test_raw_cursor_passes_sql_through_on_sqlite() -> None:
    recorder = _Recorder()
    RawCursor(recorder, is_sqlite=True).execute("SELECT :a, '50%'", {"a": 1})
    assert recorder.sql == ["SELECT :a, '50%'"]
