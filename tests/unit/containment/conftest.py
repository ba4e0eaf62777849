"""A migrated database per test, of each kind (SQLite, PostgreSQL), an audit log, and helpers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import insert

from ztgate.audit import AuditLog
from ztgate.store.database import Database
from ztgate.store.tables import tasks as tasks_table
from ztgate.testing import FrozenClock

AGENT = "spiffe://ztgate.local/agent/runner"
OTHER = "spiffe://ztgate.local/agent/other"


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of its own, of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind)


@pytest.fixture
def audit(database: Database, clock: FrozenClock) -> AuditLog:
    return AuditLog(database, clock)


def add_task(
    database: Database,
    task_id: str,
    *,
    agent: str = AGENT,
    calls: int | None = None,
    spend: float | None = None,
    expires_at: float = 1_800_003_600.0,
    state: str = "active",
) -> None:
    """A task row, as the task registry would write it."""
    with database.write() as conn:
        conn.execute(
            insert(tasks_table).values(
                id=task_id,
                principal="admin",
                agent=agent,
                intent="a test",
                scope='{"tools":{}}',
                budget_calls=calls,
                budget_spend=spend,
                state=state,
                created_at=1_800_000_000.0,
                expires_at=expires_at,
            )
        )


def audit_bodies(database: Database) -> list[dict[str, Any]]:
    """Every audit record body, in chain order."""
    with database.read() as conn:
        rows = conn.exec_driver_sql("SELECT body FROM audit_records ORDER BY seq").all()
    return [orjson.loads(row[0]) for row in rows]
