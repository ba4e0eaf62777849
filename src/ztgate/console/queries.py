"""What the console reads from the audit table: the decision feed, calls per minute, denials.

Calls are read from their audit records (kinds `decision`, `result` and
`rejected`, one chain): a call's outcome is that of its last record, its
time that of its first. Outcomes are shown as allow, ask or deny (a tool
error or a withheld result is a deny for the caller).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, func, not_, select

from ztgate.store.database import Database
from ztgate.store.tables import audit_records as records

FEED_KINDS = ("decision", "result", "rejected")
OUTCOMES = ("allow", "ask", "deny")
_MAX_SCAN = 100_000  # audit rows read for one chart at most
_IDS = re.compile(r"\b[0-9a-f]{12,}\b|\b[0-9A-Za-z_-]{32,}\b")


@dataclass(frozen=True, slots=True)
class FeedRow:
    """One call's audit record, as the feed shows it."""

    seq: int
    ts: float
    kind: str
    outcome: str
    agent: str
    tool: str
    call_id: str
    reason: str

    def describe(self) -> dict[str, Any]:
        """A JSON-ready form (the server-sent event's data)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "outcome": self.outcome,
            "agent": self.agent,
            "tool": self.tool,
            "call_id": self.call_id,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Filters:
    """The feed's filters (None: any)."""

    outcome: str | None = None
    agent: str | None = None
    tool: str | None = None
    task_id: str | None = None


def shown_outcome(outcome: str) -> str:
    """allow, ask, or deny for anything else (a denial, an upstream error)."""
    return outcome if outcome in ("allow", "ask") else "deny"


def feed(
    database: Database,
    chain: str,
    filters: Filters = Filters(),
    *,
    after: int | None = None,
    limit: int = 50,
) -> list[FeedRow]:
    """Calls' records matching `filters`: the newest `limit` (newest first), or, with
    `after`, those after that sequence number (oldest first)."""
    query = select(records).where(records.c.chain == chain, records.c.kind.in_(FEED_KINDS))
    if filters.outcome in ("allow", "ask"):
        query = query.where(records.c.outcome == filters.outcome)
    elif filters.outcome == "deny":
        query = query.where(not_(records.c.outcome.in_(("allow", "ask"))))
    if filters.agent:
        query = query.where(records.c.agent == filters.agent)
    if filters.tool:
        query = query.where(records.c.tool == filters.tool)
    if filters.task_id:
        query = query.where(records.c.task_id == filters.task_id)
    if after is None:
        query = query.order_by(records.c.seq.desc())
    else:
        query = query.where(records.c.seq > after).order_by(records.c.seq)
    with database.read() as conn:
        rows = conn.execute(query.limit(limit)).mappings().all()
    return [_row(row) for row in rows]


def latest_seq(database: Database, chain: str) -> int:
    """The newest sequence number of `chain` (0 when empty)."""
    with database.read() as conn:
        found = conn.execute(
            select(func.max(records.c.seq)).where(records.c.chain == chain)
        ).scalar()
    return int(found or 0)


def calls_per_minute(
    database: Database, chain: str, now: float, minutes: int = 60
) -> list[dict[str, int]]:
    """For each of the last `minutes` minutes (oldest first): calls by outcome."""
    start = (int(now) // 60 - minutes + 1) * 60
    buckets = [dict.fromkeys(OUTCOMES, 0) for _ in range(minutes)]
    for first_ts, outcome in _calls(database, chain, start):
        index = int(first_ts - start) // 60
        if 0 <= index < minutes:
            buckets[index][outcome] += 1
    return buckets


def top_denials(
    database: Database, chain: str, since: float, limit: int = 8
) -> list[tuple[str, int]]:
    """The most frequent reasons calls were denied since `since` (ids elided)."""
    query = (
        select(records.c.body)
        .where(
            records.c.chain == chain,
            records.c.kind.in_(FEED_KINDS),
            records.c.ts >= since,
            not_(records.c.outcome.in_(("allow", "ask"))),
        )
        .order_by(records.c.seq.desc())
        .limit(_MAX_SCAN)
    )
    counted: Counter[str] = Counter()
    with database.read() as conn:
        for (body,) in conn.execute(query):
            counted[_denial(orjson.loads(body))] += 1
    return counted.most_common(limit)


def calls_per_task(database: Database, chain: str, task_ids: Sequence[str]) -> dict[str, int]:
    """How many calls each task made (that reached a decision or were refused)."""
    if not task_ids:
        return {}
    query = (
        select(records.c.task_id, func.count(func.distinct(records.c.call_id)))
        .where(
            and_(
                records.c.chain == chain,
                records.c.kind.in_(FEED_KINDS),
                records.c.task_id.in_(list(task_ids)),
            )
        )
        .group_by(records.c.task_id)
    )
    with database.read() as conn:
        return {str(task): int(count) for task, count in conn.execute(query)}


def _calls(database: Database, chain: str, since: float) -> list[tuple[float, str]]:
    """(first time, last outcome) of every call with a record since `since`."""
    query = (
        select(records.c.call_id, records.c.ts, records.c.outcome)
        .where(records.c.chain == chain, records.c.kind.in_(FEED_KINDS), records.c.ts >= since)
        .order_by(records.c.seq)
        .limit(_MAX_SCAN)
    )
    calls: dict[str, tuple[float, str]] = {}
    with database.read() as conn:
        for number, (call_id, ts, outcome) in enumerate(conn.execute(query)):
            key = call_id or f"#{number}"
            first = calls[key][0] if key in calls else float(ts)
            calls[key] = (first, shown_outcome(outcome))
    return list(calls.values())


def _denial(body: dict[str, Any]) -> str:
    reasons = [r for r in body.get("reasons") or () if r.get("outcome") == "deny"]
    if not reasons:
        return f"{body.get('kind', 'call')}: {body.get('outcome', 'deny')}"
    first = reasons[0]
    text = _IDS.sub("…", str(first.get("reason", "")))
    return f"{first.get('check', '?')}: {text}"[:120]


def _row(row: Any) -> FeedRow:
    body = orjson.loads(row["body"])
    reasons = body.get("reasons") or ()
    deciding = [r for r in reasons if r.get("outcome") == row["outcome"]] or list(reasons)
    reason = ""
    if deciding:
        reason = f"{deciding[0].get('check', '')}: {deciding[0].get('reason', '')}"
    return FeedRow(
        seq=int(row["seq"]),
        ts=float(row["ts"]),
        kind=row["kind"],
        outcome=shown_outcome(row["outcome"]),
        agent=row["agent"] or "",
        tool=row["tool"] or "",
        call_id=row["call_id"] or "",
        reason=reason[:300],
    )
