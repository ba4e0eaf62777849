"""Tasks' budget use, written behind as increments and read back at start."""

from __future__ import annotations

import pytest

from ztgate.containment.usage import Usage, UsageLog
from ztgate.errors import StoreError
from ztgate.store.database import Database
from ztgate.testing import FrozenClock

from .conftest import add_task


@pytest.fixture
def usage(database: Database, clock: FrozenClock) -> UsageLog:
    return UsageLog(database, clock)


def test_increments_add_up_across_writes_and_processes(
    database: Database, clock: FrozenClock, usage: UsageLog
) -> None:
    add_task(database, "t1")
    usage.add("t1", 1, 2.5)
    usage.add("t1", 1, 0.5)
    assert len(usage) == 1
    usage.write(usage.take())
    assert len(usage) == 0
    other = UsageLog(database, clock)  # another worker or node
    other.add("t1", 3, 1.0)
    other.write(other.take())
    assert usage.read("t1") == (5, 4.0)
    assert usage.load() == [Usage("t1", 5, 4.0, 1_800_003_600.0)]


def test_load_skips_expired_tasks(database: Database, clock: FrozenClock, usage: UsageLog) -> None:
    add_task(database, "gone", expires_at=clock.now() - 1)
    usage.add("gone", 1, 0.0)
    usage.write(usage.take())
    assert usage.load() == []
    assert usage.read("gone") == (1, 0.0)
    assert usage.read("never") is None


def test_writing_nothing_touches_nothing(usage: UsageLog) -> None:
    usage.write({})
    assert usage.load() == []


def test_a_failed_write_can_be_restored(usage: UsageLog, database: Database) -> None:
    usage.add("t1", 2, 1.0)
    batch = usage.take()
    database.engine.dispose()
    broken = UsageLog(type(database)("sqlite:////nonexistent/dir/x.db"), FrozenClock())
    with pytest.raises(StoreError):
        broken.write(batch)
    usage.add("t1", 1, 1.0)
    usage.restore(batch)
    assert usage.take() == {"t1": [3.0, 2.0]}
