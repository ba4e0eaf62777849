"""The audit record of an egress connection (kind `egress`).

A refused connection has one record (outcome `deny`). An allowed one has
two: `open`, committed before any byte goes out (so a connection the audit
log cannot record does not happen: fail closed), and `close`, with the
bytes each way and how long it lasted. Attribution goes in the indexed
`agent` and `task_id` columns and the `detail`; credentials never do.
"""

from __future__ import annotations

from dataclasses import dataclass

from ztgate.audit.record import AuditEntry
from ztgate.egress.decision import Attribution
from ztgate.egress.request import Authority
from ztgate.guards.resolver import Address

KIND = "egress"


@dataclass(slots=True)
class ConnectionFacts:
    """What is known about one connection so far (filled in as it is served)."""

    connection_id: str
    attribution: Attribution | None
    listener: str  # tcp | unix
    method: str | None = None
    destination: Authority | None = None
    address: Address | None = None


def egress_entry(
    facts: ConnectionFacts,
    *,
    outcome: str,
    event: str,
    reason: str,
    status: int | None = None,
    up: int | None = None,
    down: int | None = None,
    seconds: float | None = None,
) -> AuditEntry:
    """The audit entry for `event` (deny, open, close) of a connection."""
    who = facts.attribution
    detail: dict[str, object] = {
        "event": event,
        "connection": facts.connection_id,
        "listener": facts.listener,
        "reason": reason,
    }
    optional: dict[str, object | None] = {
        "enclave": who.enclave if who else None,
        "method": facts.method,
        "host": facts.destination.host if facts.destination else None,
        "port": facts.destination.port if facts.destination else None,
        "address": str(facts.address) if facts.address is not None else None,
        "bytes_up": up,
        "bytes_down": down,
        "duration_ms": round(seconds * 1000, 3) if seconds is not None else None,
    }
    detail.update({key: value for key, value in optional.items() if value is not None})
    return AuditEntry(
        kind=KIND,
        outcome=outcome,
        agent=who.agent if who else None,
        task_id=who.task_id if who else None,
        status=status,
        reasons=({"check": "egress-proxy", "reason": reason},),
        detail=detail,
    )
