"""A migrated database per test, copied from one migrated once per session (fast)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgate.store.database import Database


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
