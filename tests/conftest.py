"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.config import Settings
from ztgate.store.database import Database
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock, make_settings


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
