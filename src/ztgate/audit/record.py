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

from ztgate.canonical import canonical_json, canonical_json_ascii_keys, sha256_hex
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
    return _body(entry, chain, seq, prev, isoformat(ts))


def seal(body: Mapping[str, Any]) -> tuple[str, str]:
    """The canonical text of `body` and its SHA-256 hex digest."""
    data = canonical_json(body)
    return data.decode(), sha256_hex(data)


def seal_entry(entry: AuditEntry, *, chain: str, seq: int, prev: str, ts: str) -> tuple[str, str]:
    """`seal(build_body(...))` with the time already formatted (`isoformat`), for the log.

    The body's field names are this module's own ASCII literals, so only
    its values need the canonical-JSON check; the text and hash are the
    same as `seal`'s (the tests compare them).
    """
    data = canonical_json_ascii_keys(_body(entry, chain, seq, prev, ts))
    return data.decode(), sha256_hex(data)


def _body(entry: AuditEntry, chain: str, seq: int, prev: str, ts: str) -> dict[str, Any]:
    # Every field name is an ASCII literal (`seal_entry` relies on it); the
    # optional ones in the order `build_body` always put them.
    body: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "chain": chain,
        "seq": seq,
        "prev": prev,
        "ts": ts,
        "kind": entry.kind,
        "outcome": entry.outcome,
    }
    if entry.call_id is not None:
        body["call_id"] = entry.call_id
    if entry.agent is not None:
        body["agent"] = entry.agent
    if entry.task_id is not None:
        body["task_id"] = entry.task_id
    if entry.tool is not None:
        body["tool"] = entry.tool
    if entry.status is not None:
        body["status"] = entry.status
    reasons = [dict(r) for r in entry.reasons]
    if reasons:
        body["reasons"] = reasons
    if entry.arguments_sha256 is not None:
        body["arguments_sha256"] = entry.arguments_sha256
    if entry.arguments_preview is not None:
        body["arguments_preview"] = entry.arguments_preview
    if entry.justification is not None:
        body["justification"] = entry.justification
    detail = dict(entry.detail)
    if detail:
        body["detail"] = detail
    return body
