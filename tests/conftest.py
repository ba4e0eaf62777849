"""Fixtures shared by every test.

The durable store's suites run on both implementations: `store_kind` is
"sqlite" or "postgresql", and `make_database(kind)` gives a migrated database
of that kind of the test's own (SQLite: a copy of a migrated file;
PostgreSQL: a migrated database on this test process's own cluster,
`postgres_server`, one per xdist worker, emptied for each test).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ztgate.config import Settings
from ztgate.store.database import Database, sqlite_url
from ztgate.store.postgres_server import PostgresServer
from ztgate.store.redis_server import RedisServer
from ztgate.store.tables import metadata
from ztgate.testing import FrozenClock, make_settings

STORE_KINDS = ("sqlite", "postgresql")
_POSTGRES_TEMPLATE = "ztgate_migrated"


@pytest.fixture(autouse=True)
def _no_ztgate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's ZTGATE_* variables out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith("ZTGATE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock."""
    return FrozenClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Initialised settings in a scratch directory (keys, data dir, migrated DB)."""
    return make_settings(tmp_path)


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    """The migrated SQLite database of `settings`."""
    db = Database(settings.database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test process's own (one per xdist worker), stopped at the end."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test process's own (one per xdist worker), stopped after."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def _postgres_template(postgres_server: PostgresServer) -> str:
    db = Database(postgres_server.create_database(_POSTGRES_TEMPLATE))
    db.migrate()
    db.dispose()
    return _POSTGRES_TEMPLATE


class _ReusedPostgresDatabase:
    """One migrated database per test process, emptied for each test that asks for it.

    Creating a database per test (from the template) costs a copy, and
    dropping it a checkpoint; emptying the tables costs a millisecond. A
    test that dropped the database, changed its settings or its tables gets
    a fresh copy of the template for the next one.
    """

    _NAME = "ztgate_reused"
    _TABLES = [table.name for table in reversed(metadata.sorted_tables)]

    def __init__(self, server: PostgresServer, template: str) -> None:
        self._server = server
        self._template = template
        self._exists = False

    def url(self) -> str:
        """The URL of the database, emptied (or made again)."""
        import psycopg

        if self._exists:
            try:
                with psycopg.connect(self._server.conninfo(), autocommit=True) as admin:
                    admin.execute(f'ALTER DATABASE "{self._NAME}" RESET ALL'.encode())
                # A connection a test left holding locks: the copy is made again.
                conninfo = self._server.conninfo(self._NAME) + " options='-c lock_timeout=2000'"
                with psycopg.connect(conninfo) as conn:
                    tables = conn.execute(
                        b"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                    ).fetchone()
                    if tables is None or tables[0] != len(self._TABLES) + 1:  # alembic_version
                        raise psycopg.OperationalError("the schema was changed")
                    deletes = "".join(f"DELETE FROM {t};" for t in self._TABLES)  # noqa: S608
                    conn.execute(deletes.encode())
                return self._server.url(self._NAME)
            except psycopg.Error:
                self._server.drop_database(self._NAME)
        self._server.create_database(self._NAME, self._template)
        self._exists = True
        return self._server.url(self._NAME)


@pytest.fixture(scope="session")
def _postgres_reused(postgres_server: PostgresServer, _postgres_template: str) -> Any:
    return _ReusedPostgresDatabase(postgres_server, _postgres_template)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "ztgate.db"
    db = Database(sqlite_url(path))
    db.migrate()
    db.dispose()
    return path


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each implementation of the durable store in turn."""
    return str(request.param)


@pytest.fixture
def make_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Database]]:
    """Makes databases of the test's own: `make(kind, migrated=True)`; disposed (dropped) after.

    The first migrated PostgreSQL database a test asks for is the test
    process's reused one, emptied; any further one is a copy of the template.
    """
    opened: list[Database] = []
    created: list[str] = []
    reused: list[Database] = []

    def make(kind: str, *, migrated: bool = True) -> Database:
        if kind == "sqlite":
            path = tmp_path / f"store-{uuid.uuid4().hex[:8]}.db"
            if migrated:
                shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
            db = Database(sqlite_url(path))
        elif kind == "postgresql" and migrated and not reused:
            db = Database(request.getfixturevalue("_postgres_reused").url())
            reused.append(db)
        elif kind == "postgresql":
            server: PostgresServer = request.getfixturevalue("postgres_server")
            template = request.getfixturevalue("_postgres_template") if migrated else None
            name = f"test_{uuid.uuid4().hex}"
            db = Database(server.create_database(name, template))
            created.append(name)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(kind)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.dispose()
    if created:
        server = request.getfixturevalue("postgres_server")
        for name in created:
            if server.running:
                server.drop_database(name)
