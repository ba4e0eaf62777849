"""A migrated database per test, of each kind (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ztgate.store.database import Database


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of its own, of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind)
