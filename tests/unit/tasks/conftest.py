"""A clock at the real time, and a migrated database per test (copied: fast).

Warrants are JWTs, and PyJWT checks their expiry against the system clock as
well as the gateway's: with a clock frozen at a fixed date, every warrant the
tests issue would look expired once the real date passes it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.store.database import Database
from ztgate.testing import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock, started at the real time (whole seconds, as JWTs keep them)."""
    return FrozenClock(float(int(time.time())))


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "ztgate.db"
    template = Database(f"sqlite:///{path}")
    template.migrate()
    template.dispose()
    return path


@pytest.fixture
def database(_migrated_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database of its own (no settings, keys or CA needed)."""
    path = tmp_path / "ztgate.db"
    shutil.copyfile(_migrated_template, path)
    db = Database(f"sqlite:///{path}")
    yield db
    db.dispose()
