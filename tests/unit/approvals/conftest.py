"""A migrated database per test (copied from a template), an audit log, and a call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from ztgate.audit import AuditLog
from ztgate.canonical import canonical_json
from ztgate.models import ToolCall
from ztgate.store.database import Database
from ztgate.store.tables import audit_records
from ztgate.testing import FrozenClock

AGENT = "spiffe://ztgate.local/agent/runner"
OTHER = "spiffe://ztgate.local/agent/other"
TASK = "t" * 26


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of its own, of each kind (no settings, keys or CA needed)."""
    return make_database(store_kind)


@pytest.fixture
def audit(database: Database, clock: FrozenClock) -> AuditLog:
    return AuditLog(database, clock)


def make_call(
    arguments: dict[str, Any] | None = None,
    *,
    tool: str = "payments.send",
    agent: str | None = AGENT,
    task_id: str | None = TASK,
    call_id: str = "c1",
) -> ToolCall:
    """A call as the gateway has it after authentication."""
    arguments = (
        {"to": "acme", "amount": 100, "api_key": "sk-live-123"} if arguments is None else arguments
    )
    return ToolCall(
        call_id=call_id,
        tool=tool,
        arguments=arguments,
        canonical_arguments=canonical_json(arguments),
        justification="the invoice is due",
        agent=agent,
        task_id=task_id,
    )


def audit_bodies(database: Database) -> list[dict[str, Any]]:
    """Every audit record's body, in order."""
    with database.read() as conn:
        rows = conn.execute(select(audit_records.c.body).order_by(audit_records.c.seq)).all()
    return [orjson.loads(row[0]) for row in rows]
