"""The audit record of an egress connection (kind `egress`).

A refused connection has one record (outcome `deny`). An allowed one has
two: `open`, committed before any byte goes out (so a connection the audit
log cannot record does not happen: fail closed), and `close`, with the
bytes each way and how long it lasted. Attribution goes in the indexed
`agent` and `task_id` columns and the `detail`; credentials never do.
"""

from __future__ import annotations

from collections import OrderedDict
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
    grant: str | None = None  # the grant it is attributed to, once known (not recorded)


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
    unrecorded_before: int | None = None,
) -> AuditEntry:
    """The audit entry for `event` (deny, open, close) of a connection.

    `unrecorded_before`: refusals of the same enclave (or listener) answered
    but not recorded one by one since its previous recorded refusal.
    """
    who = facts.attribution
    detail: dict[str, object] = {
        "event": event,
        "connection": facts.connection_id,
        "listener": facts.listener,
        "reason": reason,
    }
    optional: dict[str, object | None] = {
        "enclave": who.enclave or None if who else None,  # none for an agent's own
        "method": facts.method,
        "host": facts.destination.host if facts.destination else None,
        "port": facts.destination.port if facts.destination else None,
        "address": str(facts.address) if facts.address is not None else None,
        "bytes_up": up,
        "bytes_down": down,
        "duration_ms": round(seconds * 1000, 3) if seconds is not None else None,
        "unrecorded_before": unrecorded_before,
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


class RefusalRecords:
    """How many refusals each enclave, agent (or listener) may have recorded one by one.

    A token bucket per key: `per_second` records a second, bursts of twice
    that. `take` answers None past it (answer the refusal, do not record
    it) and otherwise how many went unrecorded since the key's previous
    recorded refusal, so the record that follows a flood says how big it
    was. Keys are grant ids and listeners; at most `max_keys` are kept (the
    least recently used goes: it starts again with a full bucket).
    """

    def __init__(self, per_second: float, *, max_keys: int = 4096) -> None:
        self._rate = per_second
        self._burst = max(1.0, 2 * per_second)
        self._max_keys = max_keys
        self._keys: OrderedDict[str, list[float]] = OrderedDict()  # [tokens, at, unrecorded]

    def take(self, key: str, now: float) -> int | None:
        """Record this refusal? None: no; else the refusals unrecorded before it."""
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = [self._burst, now, 0]
            if len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        tokens = min(self._burst, state[0] + (now - state[1]) * self._rate)
        state[1] = now
        if tokens < 1:
            state[0] = tokens
            state[2] += 1
            return None
        state[0] = tokens - 1
        unrecorded = int(state[2])
        state[2] = 0
        return unrecorded

    def forget(self, key: str) -> None:
        """Drop a key's bucket (its enclave is no longer served)."""
        self._keys.pop(key, None)
