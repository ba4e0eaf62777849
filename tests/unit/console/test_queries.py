"""The console's audit reads: the feed with filters, calls per minute, top denials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ztgate.audit import AuditEntry, AuditLog
from ztgate.console import queries
from ztgate.console.queries import Filters
from ztgate.store.database import Database
from ztgate.testing import FrozenClock

A = "spiffe://ztgate.local/agent/a"
B = "spiffe://ztgate.local/agent/b"


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[tuple[Database, AuditLog, FrozenClock]]:
    database = Database(f"sqlite:///{tmp_path / 'z.db'}")
    database.migrate()
    clock = FrozenClock()
    audit = AuditLog(database, clock)
    await audit.start()
    try:
        yield database, audit, clock
    finally:
        await audit.stop()
        database.dispose()


def _deny(reason: str) -> list[dict[str, str]]:
    return [{"check": "policy", "outcome": "deny", "reason": reason}]


async def test_the_feed_filters_and_follows(log: tuple[Database, AuditLog, FrozenClock]) -> None:
    database, audit, _ = log
    await audit.append(AuditEntry("decision", "allow", call_id="1", agent=A, tool="echo"))
    await audit.append(AuditEntry("result", "allow", call_id="1", agent=A, tool="echo"))
    await audit.append(
        AuditEntry("decision", "deny", call_id="2", agent=B, tool="pay", reasons=_deny("no"))
    )
    await audit.append(AuditEntry("result", "error", call_id="3", agent=A, tool="pay"))
    await audit.append(AuditEntry("admin", "allow", detail={"action": "x"}))
    newest = queries.feed(database, "main")
    assert [r.call_id for r in newest] == ["3", "2", "1", "1"]
    assert newest[0].outcome == "deny"  # an upstream error is a deny for the caller
    assert newest[1].reason == "policy: no"
    denied = queries.feed(database, "main", Filters(outcome="deny"))
    assert {r.call_id for r in denied} == {"2", "3"}
    assert [r.call_id for r in queries.feed(database, "main", Filters(agent=B))] == ["2"]
    assert [r.call_id for r in queries.feed(database, "main", Filters(tool="pay"))] == ["3", "2"]
    after = queries.feed(database, "main", after=2)
    assert [r.seq for r in after] == [3, 4]  # oldest first
    assert queries.latest_seq(database, "main") == 5
    assert queries.latest_seq(database, "other") == 0
    assert after[0].describe()["outcome"] == "deny"


async def test_calls_per_minute_count_calls_by_their_last_outcome(
    log: tuple[Database, AuditLog, FrozenClock],
) -> None:
    database, audit, clock = log
    await audit.append(AuditEntry("decision", "allow", call_id="1"))
    await audit.append(AuditEntry("result", "error", call_id="1"))
    await audit.append(AuditEntry("decision", "ask", call_id="2"))
    clock.advance(120)
    await audit.append(AuditEntry("rejected", "deny", call_id="3"))
    buckets = queries.calls_per_minute(database, "main", clock.now())
    assert len(buckets) == 60
    assert buckets[-1] == {"allow": 0, "ask": 0, "deny": 1}
    assert buckets[-3] == {"allow": 0, "ask": 1, "deny": 1}


async def test_top_denials_group_reasons_without_ids(
    log: tuple[Database, AuditLog, FrozenClock],
) -> None:
    database, audit, clock = log
    for approval in ("01a2158a5843c47cdf86b9ce3a55e6ee", "01a2158a5843c47cdf86b9ce3a55e6ef"):
        await audit.append(
            AuditEntry("decision", "deny", call_id=approval, reasons=_deny(f"approval {approval}"))
        )
    await audit.append(AuditEntry("decision", "deny", call_id="x"))
    top = queries.top_denials(database, "main", clock.now() - 60)
    assert top[0] == ("policy: approval …", 2)
    assert top[1] == ("decision: deny", 1)


async def test_calls_per_task(log: tuple[Database, AuditLog, FrozenClock]) -> None:
    database, audit, _ = log
    for call in ("1", "1", "2"):
        await audit.append(AuditEntry("decision", "allow", call_id=call, task_id="t"))
    assert queries.calls_per_task(database, "main", ["t", "u"]) == {"t": 2}
    assert queries.calls_per_task(database, "main", []) == {}
