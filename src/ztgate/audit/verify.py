"""Verifying an audit chain: from the database or from an exported file.

For each chain, in sequence order:

  (1) sequence numbers run 1, 2, 3 ... with no gap;
  (2) the body is canonical JSON naming this chain and sequence number;
  (3) the body's `prev` is the previous record's hash (zeros for the first);
  (4) the record's hash is the SHA-256 of its body;
  (5) the indexed columns agree with the body (database only);
  (6) every signed checkpoint verifies with the audit public key and matches
      the record at its sequence number, and none covers records that are gone.

The report names the first bad record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztgate.audit.checkpoint import DEFAULT_KEY_NAME, verify_note
from ztgate.audit.record import GENESIS
from ztgate.canonical import canonical_json, sha256_hex
from ztgate.clock import isoformat
from ztgate.errors import AuditError, InvalidInputError

_COLUMNS = ("kind", "outcome", "call_id", "agent", "task_id", "tool")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as read back: its chain, sequence, stored hash and body text."""

    chain: str
    seq: int
    hash: str
    body: str
    columns: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as read back."""

    chain: str
    seq: int
    hash: str
    note: str


@dataclass(slots=True)
class ChainReport:
    """The verification result for one chain."""

    chain: str
    records: int = 0
    checkpoints: int = 0
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return self.problem is None

    def fail(self, seq: int, problem: str) -> None:
        """Remember `problem` at `seq` if it is the earliest so far."""
        if self.first_bad_seq is None or seq < self.first_bad_seq:
            self.first_bad_seq = seq
            self.problem = problem


@dataclass(slots=True)
class VerifyReport:
    """The verification result for every chain."""

    chains: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every chain verified."""
        return all(chain.ok for chain in self.chains)


def verify_chain(
    chain: str,
    records: Iterable[StoredRecord],
    checkpoints: Iterable[StoredCheckpoint],
    public_key: Ed25519PublicKey | None,
    key_name: str = DEFAULT_KEY_NAME,
    *,
    head_seq: int | None = None,
) -> ChainReport:
    """Verify one chain's records (in sequence order) and checkpoints.

    `head_seq`, when given, is the length the store believes the chain has;
    fewer records than that means records were removed from the end.
    """
    report = ChainReport(chain)
    signed: dict[int, str] = {}
    for cp in checkpoints:
        report.checkpoints += 1
        problem = _check_checkpoint(cp, public_key, key_name)
        if problem is not None:
            report.fail(cp.seq, problem)
        else:
            signed[cp.seq] = cp.hash
    expected_seq, prev = 1, GENESIS
    broken: StoredRecord | None = None
    for record in records:
        report.records += 1
        if broken is not None:
            # (3) again: a record whose own hash is intact but that does not
            # link back may be innocent. If its successor links to it, the
            # record before it was changed and re-hashed: name that one.
            blamed = broken.seq - 1 if _links(record, broken.hash) else broken.seq
            report.fail(blamed, _RELINK if blamed < broken.seq else _UNLINKED)
            return report
        problem, seq_for_problem = _check_record(record, expected_seq, prev)
        if problem is None and record.seq in signed and signed[record.seq] != record.hash:
            problem, seq_for_problem = "differs from the signed checkpoint", record.seq
        if problem == _UNLINKED and seq_for_problem > 1:
            broken = record
            continue
        if problem is not None:
            report.fail(seq_for_problem, problem)
            return report
        expected_seq, prev = record.seq + 1, record.hash
    if broken is not None:
        report.fail(broken.seq, _UNLINKED)
        return report
    last = expected_seq - 1
    beyond = [seq for seq in signed if seq > last]
    if beyond:
        report.fail(
            last + 1,
            f"missing: a signed checkpoint covers {max(beyond)} records but the log ends at {last}",
        )
    elif head_seq is not None and head_seq > last:
        report.fail(
            last + 1, f"missing: the chain head says {head_seq} records, the log ends at {last}"
        )
    return report


_UNLINKED = "does not link to the previous record (changed, removed or reordered)"
_RELINK = "changed and re-hashed (the next record no longer links to it)"


def _links(record: StoredRecord, prev_hash: str) -> bool:
    try:
        body = orjson.loads(record.body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("prev") == prev_hash


def _check_record(record: StoredRecord, expected_seq: int, prev: str) -> tuple[str | None, int]:
    # (1) no gap in the sequence
    if record.seq != expected_seq:
        if record.seq > expected_seq:
            return f"missing (the next record present is {record.seq})", expected_seq
        return f"out of order (found sequence {record.seq} after {expected_seq - 1})", record.seq
    # (2) canonical body naming this chain and sequence
    try:
        body = orjson.loads(record.body)
        canonical = canonical_json(body).decode()
    except (orjson.JSONDecodeError, InvalidInputError):
        return "body is not valid JSON", record.seq
    if canonical != record.body:
        return "body is not in canonical form", record.seq
    if body.get("chain") != record.chain or body.get("seq") != record.seq:
        return "body names another chain or sequence number", record.seq
    # (3) link to the previous record
    if body.get("prev") != prev:
        return _UNLINKED, record.seq
    # (4) the hash commits to the body
    if sha256_hex(record.body.encode()) != record.hash:
        return "hash does not match its body (record changed)", record.seq
    # (5) indexed columns agree with the body
    if record.columns is not None:
        for column in _COLUMNS:
            if record.columns.get(column) != body.get(column):
                return f"column {column!r} does not match the body", record.seq
        ts = record.columns.get("ts")
        if not isinstance(ts, float | int) or isoformat(float(ts)) != body.get("ts"):
            return "column 'ts' does not match the body", record.seq
    return None, record.seq


def _check_checkpoint(
    cp: StoredCheckpoint, public_key: Ed25519PublicKey | None, key_name: str
) -> str | None:
    # (6) signed checkpoints
    if public_key is None:
        return None
    try:
        signed = verify_note(cp.note, public_key, key_name)
    except AuditError as exc:
        return f"checkpoint: {exc}"
    if (signed.chain, signed.seq, signed.hash) != (cp.chain, cp.seq, cp.hash):
        return "checkpoint row does not match its signed note"
    return None
