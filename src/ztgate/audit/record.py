"""One audit record and how it commits to the one before it.

A record's body is the RFC 8785 canonical JSON of its fields, including
`prev`, the hash of the previous record in its chain; its hash is the SHA-256
of that body. Changing, deleting or reordering any record breaks every link
after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ztgate.canonical import canonical_json, sha256_hex
from ztgate.clock import isoformat

GENESIS = "0" * 64
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller asks to record; the log adds chain, sequence, time and links."""

    kind: str
    outcome: str
    call_id: str | None = None
    agent: str | None = None
    task_id: str | None = None
    tool: str | None = None
    status: int | None = None
    reasons: Sequence[Mapping[str, str]] = ()
    arguments_sha256: str | None = None
    arguments_preview: str | None = None
    justification: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """Where an entry landed: its chain, sequence number and hash."""

    chain: str
    seq: int
    hash: str


def build_body(entry: AuditEntry, *, chain: str, seq: int, prev: str, ts: float) -> dict[str, Any]:
    """The record's fields as a JSON object (absent values left out)."""
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "chain": chain,
        "seq": seq,
        "prev": prev,
        "ts": isoformat(ts),
        "kind": entry.kind,
        "outcome": entry.outcome,
    }
    optional: dict[str, Any] = {
        "call_id": entry.call_id,
        "agent": entry.agent,
        "task_id": entry.task_id,
        "tool": entry.tool,
        "status": entry.status,
        "reasons": [dict(r) for r in entry.reasons] or None,
        "arguments_sha256": entry.arguments_sha256,
        "arguments_preview": entry.arguments_preview,
        "justification": entry.justification,
        "detail": dict(entry.detail) or None,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    return body


def seal(body: Mapping[str, Any]) -> tuple[str, str]:
    """The canonical text of `body` and its SHA-256 hex digest."""
    data = canonical_json(body)
    return data.decode(), sha256_hex(data)
