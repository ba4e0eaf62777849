"""Reading the audit log back: records, checkpoints, tails and exports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from ztgate.audit.checkpoint import DEFAULT_KEY_NAME, public_pem
from ztgate.audit.verify import (
    ChainReport,
    StoredCheckpoint,
    StoredRecord,
    VerifyReport,
    verify_chain,
)
from ztgate.canonical import canonical_json
from ztgate.errors import InvalidInputError
from ztgate.store.database import Database
from ztgate.store.tables import audit_checkpoints, audit_heads, audit_records

EXPORT_FORMAT = "ztgate-audit/1"
_PAGE = 2000


class AuditReader:
    """Read-only access to the audit tables."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def chains(self) -> list[str]:
        """Every chain that has records or a head."""
        with self._database.read() as conn:
            heads = {row[0] for row in conn.execute(select(audit_heads.c.chain))}
            recorded = {row[0] for row in conn.execute(select(audit_records.c.chain).distinct())}
        return sorted(heads | recorded)

    def records(self, chain: str, *, after: int = 0) -> Iterator[StoredRecord]:
        """Records of `chain` in sequence order, read page by page."""
        while True:
            with self._database.read() as conn:
                rows = (
                    conn.execute(
                        select(audit_records)
                        .where(audit_records.c.chain == chain, audit_records.c.seq > after)
                        .order_by(audit_records.c.seq)
                        .limit(_PAGE)
                    )
                    .mappings()
                    .all()
                )
            for row in rows:
                yield StoredRecord(
                    chain=row["chain"],
                    seq=int(row["seq"]),
                    hash=row["hash"],
                    body=row["body"],
                    columns={
                        c: row[c]
                        for c in ("ts", "kind", "outcome", "call_id", "agent", "task_id", "tool")
                    },
                )
            if len(rows) < _PAGE:
                return
            after = int(rows[-1]["seq"])

    def checkpoints(self, chain: str) -> list[StoredCheckpoint]:
        """Signed checkpoints of `chain`, by sequence number."""
        with self._database.read() as conn:
            rows = conn.execute(
                select(audit_checkpoints)
                .where(audit_checkpoints.c.chain == chain)
                .order_by(audit_checkpoints.c.seq)
            ).mappings()
            return [StoredCheckpoint(r["chain"], int(r["seq"]), r["hash"], r["note"]) for r in rows]

    def tail(self, limit: int, chain: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` record bodies (oldest first), across chains unless one is named."""
        bodies: list[dict[str, Any]] = []
        for name in [chain] if chain is not None else self.chains():
            query = (
                select(audit_records.c.body)
                .where(audit_records.c.chain == name)
                .order_by(audit_records.c.seq.desc())
                .limit(limit)
            )
            with self._database.read() as conn:
                bodies += [orjson.loads(row[0]) for row in conn.execute(query)]
        bodies.sort(key=lambda body: (body["ts"], body["chain"], body["seq"]))
        return bodies[-limit:]

    def head_seq(self, chain: str) -> int | None:
        """The length the chain head records for `chain`."""
        with self._database.read() as conn:
            row = conn.execute(
                select(audit_heads.c.seq).where(audit_heads.c.chain == chain)
            ).first()
        return None if row is None else int(row[0])

    def verify(self, public_key: Ed25519PublicKey | None) -> VerifyReport:
        """Verify every chain in the database."""
        return VerifyReport(
            [
                verify_chain(
                    chain,
                    self.records(chain),
                    self.checkpoints(chain),
                    public_key,
                    head_seq=self.head_seq(chain),
                )
                for chain in self.chains()
            ]
        )

    def export_jsonl(self, out: TextIO, public_key: Ed25519PublicKey | None) -> int:
        """Write every chain as JSON Lines; returns the number of records written."""
        header: dict[str, Any] = {"type": "header", "format": EXPORT_FORMAT}
        if public_key is not None:
            header["key_name"] = DEFAULT_KEY_NAME
            header["public_key_pem"] = public_pem(public_key).decode()
        out.write(orjson.dumps(header).decode() + "\n")
        count = 0
        for chain in self.chains():
            for cp in self.checkpoints(chain):
                line = {
                    "type": "checkpoint",
                    "chain": chain,
                    "seq": cp.seq,
                    "hash": cp.hash,
                    "note": cp.note,
                }
                out.write(orjson.dumps(line).decode() + "\n")
            for record in self.records(chain):
                line = {
                    "type": "record",
                    "chain": chain,
                    "seq": record.seq,
                    "hash": record.hash,
                    "record": orjson.loads(record.body),
                }
                out.write(orjson.dumps(line).decode() + "\n")
                count += 1
        return count


def verify_export(path: Path, public_key: Ed25519PublicKey | None) -> VerifyReport:
    """Verify an exported JSON Lines file (records re-canonicalised with RFC 8785).

    Raises:
        InvalidInputError: the file is not a ztgate audit export.
    """
    records: dict[str, list[StoredRecord]] = {}
    checkpoints: dict[str, list[StoredCheckpoint]] = {}
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from exc
    header_seen = False
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = orjson.loads(raw)
                kind = line["type"]
                if not header_seen:
                    if kind != "header" or line.get("format") != EXPORT_FORMAT:
                        raise InvalidInputError(
                            f"{path}:{number}: not a ztgate audit export "
                            f"(no {EXPORT_FORMAT} header)"
                        )
                    header_seen = True
                elif kind == "checkpoint":
                    checkpoints.setdefault(line["chain"], []).append(
                        StoredCheckpoint(
                            line["chain"], int(line["seq"]), line["hash"], line["note"]
                        )
                    )
                elif kind == "record":
                    body = canonical_json(line["record"]).decode()
                    records.setdefault(line["chain"], []).append(
                        StoredRecord(line["chain"], int(line["seq"]), line["hash"], body)
                    )
                else:
                    raise InvalidInputError(f"{path}:{number}: unknown line type {kind!r}")
            except InvalidInputError as exc:
                if exc.message.startswith(f"{path}:"):
                    raise
                raise InvalidInputError(f"{path}:{number}: {exc.message}") from exc
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise InvalidInputError(
                    f"{path}:{number}: not an audit export line ({exc})"
                ) from exc
    if not header_seen:
        raise InvalidInputError(f"{path}: empty, not a ztgate audit export")
    report = VerifyReport()
    for chain in sorted(records.keys() | checkpoints.keys()):
        report.chains.append(
            verify_chain(chain, records.get(chain, []), checkpoints.get(chain, []), public_key)
        )
    return report


__all__ = ["AuditReader", "ChainReport", "verify_export"]
