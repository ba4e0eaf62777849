"""Change generations, and the watcher that notices commits from other processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ztgate.errors import StoreUnavailableError
from ztgate.store.database import Database, sqlite_url
from ztgate.store.generations import GenerationWatcher, bump, read_all


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind)


@pytest.fixture
def other(database: Database) -> Iterator[Database]:
    """A second Database on the same database, as the CLI would open it."""
    db = Database(database.url)
    yield db
    db.dispose()


@pytest.fixture
def watcher(database: Database) -> Iterator[GenerationWatcher]:
    w = GenerationWatcher(database)
    yield w
    w.close()


def test_bump_creates_then_increments(database: Database) -> None:
    with database.write() as conn:
        assert read_all(conn) == {}
        bump(conn, "tools")
    with database.write() as conn:
        assert read_all(conn) == {"tools": 1}
        bump(conn, "tools")
        bump(conn, "tools")
        bump(conn, "agents")
    with database.read() as conn:
        assert read_all(conn) == {"tools": 3, "agents": 1}


def test_bump_is_part_of_the_callers_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as conn:
        bump(conn, "tools")
        raise RuntimeError("abort")
    with database.read() as conn:
        assert read_all(conn) == {}


def test_watcher_reports_everything_on_first_look(
    database: Database, watcher: GenerationWatcher
) -> None:
    with database.write() as conn:
        bump(conn, "tools")
        bump(conn, "agents")
    assert watcher.changed() == {"tools", "agents"}


def test_no_change_is_an_empty_set(database: Database, watcher: GenerationWatcher) -> None:
    with database.write() as conn:
        bump(conn, "tools")
    watcher.prime()
    assert watcher.changed() == set()
    assert watcher.changed() == set()


def test_watcher_sees_a_commit_by_another_database_instance(
    database: Database, other: Database, watcher: GenerationWatcher
) -> None:
    watcher.prime()
    with other.write() as conn:
        bump(conn, "tools")
    assert watcher.changed() == {"tools"}
    assert watcher.changed() == set()
    with other.write() as conn:
        bump(conn, "agents")
        bump(conn, "tools")
    assert watcher.changed() == {"agents", "tools"}


def test_watcher_sees_a_commit_through_its_own_database(
    database: Database, watcher: GenerationWatcher
) -> None:
    watcher.prime()
    with database.write() as conn:
        bump(conn, "tools")
    assert watcher.changed() == {"tools"}


def test_a_commit_that_changes_no_generation_reports_nothing(
    database: Database, other: Database, watcher: GenerationWatcher
) -> None:
    with other.write() as conn:
        bump(conn, "tools")
    watcher.prime()
    with other.write() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_checkpoints (chain, seq, hash, created_at, note)"
                " VALUES ('main', 1, 'h', 0, '')"
            )
        )
    assert watcher.changed() == set()


def test_a_rolled_back_bump_is_not_a_change(
    database: Database, other: Database, watcher: GenerationWatcher
) -> None:
    watcher.prime()
    with pytest.raises(RuntimeError), other.write() as conn:
        bump(conn, "tools")
        raise RuntimeError("abort")
    assert watcher.changed() == set()


def test_watcher_reopens_after_close(
    database: Database, other: Database, watcher: GenerationWatcher
) -> None:
    watcher.prime()
    watcher.close()
    watcher.close()  # idempotent
    with other.write() as conn:
        bump(conn, "tools")
    assert watcher.changed() == {"tools"}
    assert watcher.changed() == set()


def test_watchers_are_independent(database: Database, other: Database) -> None:
    first, second = GenerationWatcher(database), GenerationWatcher(other)
    try:
        first.prime()
        second.prime()
        with database.write() as conn:
            bump(conn, "tools")
        assert first.changed() == {"tools"}
        assert second.changed() == {"tools"}
    finally:
        first.close()
        second.close()


def test_watcher_of_an_unreadable_database_is_unavailable(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path))  # a directory, not a database
    watcher = GenerationWatcher(db)
    try:
        with pytest.raises(StoreUnavailableError):
            watcher.changed()
    finally:
        watcher.close()
        db.dispose()


class _BrokenCursor:
    def execute(self, sql: str) -> Any:
        raise sqlite3.OperationalError("disk I/O error")


class _BrokenConnection:
    def __init__(self) -> None:
        self.closed = False

    def cursor(self) -> _BrokenCursor:
        return _BrokenCursor()

    def detach(self) -> None:
        """The watcher keeps its connection out of the pool, as a real one allows."""

    def close(self) -> None:
        self.closed = True


def test_a_driver_error_on_the_watchers_connection_is_unavailable_and_recovers(
    database: Database, other: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _BrokenConnection()
    monkeypatch.setattr(database.engine, "raw_connection", lambda: broken)
    watcher = GenerationWatcher(database)
    try:
        with pytest.raises(StoreUnavailableError, match="disk I/O error"):
            watcher.changed()
        assert broken.closed
        monkeypatch.undo()
        with other.write() as conn:
            bump(conn, "tools")
        assert watcher.changed() == {"tools"}
    finally:
        watcher.close()


def test_the_watcher_reads_on_the_shared_connection_as_it_is_now(
    database: Database, other: Database
) -> None:
    """The watcher's kept cursor follows its connection: closed by its other user, reopened."""
    shared = database.dedicated()
    watcher = GenerationWatcher(database, shared)
    try:
        watcher.prime()
        for name in ("tools", "agents", "tools"):
            with other.write() as conn:
                bump(conn, name)
            assert watcher.changed() == {name}
            assert watcher.changed() == set()
        # The audit writer closes the connection after a failure of its own;
        # the next look reopens it and reads there, not on a dead cursor.
        shared.close()
        with other.write() as conn:
            bump(conn, "agents")
        assert watcher.changed() == {"agents"}
        assert watcher.changed() == set()
        watcher.close()
        with other.write() as conn:
            bump(conn, "tools")
        assert watcher.changed() == {"tools"}
    finally:
        watcher.close()


def test_a_change_made_while_the_shared_connection_was_closed_is_seen(
    database: Database, other: Database
) -> None:
    """data_version counts per connection: a reopened one starts again (at 1 on SQLite),
    so the value seen on the closed connection says nothing about the new one."""
    shared = database.dedicated()
    watcher = GenerationWatcher(database, shared)
    try:
        watcher.prime()  # nothing changed yet on this connection: data_version 1
        shared.close()  # the audit writer's failure
        with other.write() as conn:
            bump(conn, "agents")  # e.g. the CLI revoking an agent
        assert watcher.changed() == {"agents"}
    finally:
        watcher.close()
