"""A clock at the real time, and a migrated database per test, of each kind (SQLite, PostgreSQL).

Warrants are JWTs, and PyJWT checks their expiry against the system clock as
well as the gateway's: with a clock frozen at a fixed date, every warrant the
tests issue would look expired once the real date passes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from ztgate.store.database import Database
from ztgate.testing import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock, started at the real time (whole seconds, as JWTs keep them)."""
    return FrozenClock(float(int(time.time())))


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of its own, of each kind (no settings, keys or CA needed)."""
    return make_database(store_kind)
