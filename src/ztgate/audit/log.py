"""Appending to the audit chain, durably, before any answer leaves the gateway.

Concurrent requests hand their entries to one writer task, which commits
whatever has queued in a single transaction (group commit) and only then
releases the waiting requests. Each transaction locks the chain head, so the
CLI and the gateway can append to the same chain safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy import Connection

from ztgate.audit.checkpoint import CheckpointSigner
from ztgate.audit.record import GENESIS, AuditEntry, AuditReceipt, build_body, seal
from ztgate.clock import Clock
from ztgate.errors import AuditError, GatewayError, StoreUnavailableError
from ztgate.store.database import Database, RawCursor

logger = logging.getLogger(__name__)

_Pending = tuple[AuditEntry, "asyncio.Future[AuditReceipt]"]

# The append runs on every call, so it speaks plain SQL through the driver
# (`Database.raw_write`): SQLAlchemy Core costs about 100 us per statement.
_SELECT_HEAD = (
    "SELECT seq, hash, checkpoint_seq, checkpoint_at FROM audit_heads WHERE chain = :chain"
)
_INSERT_HEAD = (
    "INSERT INTO audit_heads (chain, seq, hash, checkpoint_seq, checkpoint_at)"
    " VALUES (:chain, :seq, :hash, :checkpoint_seq, :checkpoint_at)"
)
_INSERT_RECORD = (
    "INSERT INTO audit_records"
    " (chain, seq, ts, kind, outcome, call_id, agent, task_id, tool, body, hash)"
    " VALUES (:chain, :seq, :ts, :kind, :outcome, :call_id, :agent, :task_id, :tool, :body, :hash)"
)
_INSERT_CHECKPOINT = (
    "INSERT INTO audit_checkpoints (chain, seq, hash, created_at, note)"
    " VALUES (:chain, :seq, :hash, :created_at, :note)"
)
_UPDATE_HEAD = (
    "UPDATE audit_heads SET seq = :seq, hash = :hash, checkpoint_seq = :checkpoint_seq,"
    " checkpoint_at = :checkpoint_at WHERE chain = :chain"
)


class AuditLog:
    """One audit chain in the durable store."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        *,
        chain: str = "main",
        signer: CheckpointSigner | None = None,
        checkpoint_every_records: int = 1000,
        checkpoint_every_seconds: float = 60.0,
        max_batch: int = 512,
    ) -> None:
        self._database = database
        self._clock = clock
        self.chain = chain
        self._signer = signer
        self._every_records = checkpoint_every_records
        self._every_seconds = checkpoint_every_seconds
        self._max_batch = max_batch
        # An SQLite commit without fsync takes tens of microseconds: cheaper on
        # the event loop than the two thread switches of a worker thread. A
        # commit that waits for a disk (fsync) or a network runs in a thread.
        self._inline = database.is_sqlite and database.synchronous == "normal"
        self._connection = database.dedicated()
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._writer: asyncio.Task[None] | None = None

    # -- asynchronous, group-committed appends (the gateway) -----------------

    async def start(self) -> None:
        """Start the writer task."""
        self._queue = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(self._queue))

    async def stop(self) -> None:
        """Write what is queued, sign a final checkpoint and stop the writer.

        An append that arrives once stopping has begun is refused, never left
        waiting.
        """
        queue, writer = self._queue, self._writer
        if queue is None or writer is None:
            return
        self._queue = self._writer = None
        queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await writer
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None and not item[1].done():
                item[1].set_exception(AuditError("the audit writer has stopped"))
        if self._signer is not None:
            with contextlib.suppress(GatewayError):
                await asyncio.to_thread(self.checkpoint_now)
        self._connection.close()

    async def append(self, entry: AuditEntry) -> AuditReceipt:
        """Record `entry`; returns once it is committed.

        Raises:
            AuditError: the writer is not running.
            StoreUnavailableError: the database could not be written.
        """
        if self._queue is None or self._writer is None or self._writer.done():
            raise AuditError("the audit writer is not running")
        future: asyncio.Future[AuditReceipt] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((entry, future))
        return await future

    async def _write_loop(self, queue: asyncio.Queue[_Pending | None]) -> None:
        stopping = False
        while not stopping:
            item = await queue.get()
            batch: list[_Pending] = []
            while item is not None:
                batch.append(item)
                if len(batch) >= self._max_batch or queue.empty():
                    break
                item = queue.get_nowait()
            stopping = item is None
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        entries = [entry for entry, _ in batch]
        try:
            if self._inline:
                receipts = self.append_now(entries)
            else:
                receipts = await asyncio.to_thread(self.append_now, entries)
        except Exception as exc:
            error = exc if isinstance(exc, GatewayError) else StoreUnavailableError(str(exc))
            logger.error("audit write failed: %s", error)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), receipt in zip(batch, receipts, strict=True):
            if not future.done():
                future.set_result(receipt)

    # -- synchronous appends (the CLI, and the writer's thread) ---------------

    def append_now(self, entries: Sequence[AuditEntry]) -> list[AuditReceipt]:
        """Append `entries` in one transaction, in order.

        Raises:
            StoreUnavailableError: the database could not be written.
        """
        with self._connection.transaction() as cursor:
            return self._append(cursor, entries)

    def append_within(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditReceipt]:
        """Append `entries` inside the caller's write transaction on `conn`.

        For management changes, so that the change and its audit record are
        committed together or not at all.
        """
        raw = conn.connection.driver_connection
        if raw is None:
            raise AuditError("the transaction has no open database connection")
        return self._append(RawCursor(raw.cursor(), self._database.is_sqlite), entries)

    def _append(self, conn: RawCursor, entries: Sequence[AuditEntry]) -> list[AuditReceipt]:
        seq, head, cp_seq, cp_at = self._lock_head(conn)
        now = self._clock.now()
        receipts: list[AuditReceipt] = []
        rows = []
        for entry in entries:
            seq += 1
            body = build_body(entry, chain=self.chain, seq=seq, prev=head, ts=now)
            text, head = seal(body)
            rows.append(
                {
                    "chain": self.chain,
                    "seq": seq,
                    "ts": now,
                    "kind": entry.kind,
                    "outcome": entry.outcome,
                    "call_id": entry.call_id,
                    "agent": entry.agent,
                    "task_id": entry.task_id,
                    "tool": entry.tool,
                    "body": text,
                    "hash": head,
                }
            )
            receipts.append(AuditReceipt(self.chain, seq, head))
        if rows:
            conn.executemany(_INSERT_RECORD, rows)
        if self._checkpoint_due(seq, cp_seq, cp_at, now):
            self._write_checkpoint(conn, seq, head, now)
            cp_seq, cp_at = seq, now
        self._update_head(conn, seq, head, cp_seq, cp_at)
        return receipts

    def checkpoint_now(self) -> None:
        """Sign a checkpoint of the current head, if it has moved since the last one."""
        if self._signer is None:
            return
        with self._connection.transaction() as conn:
            seq, head, cp_seq, _ = self._lock_head(conn)
            if seq == 0 or seq == cp_seq:
                return
            now = self._clock.now()
            self._write_checkpoint(conn, seq, head, now)
            self._update_head(conn, seq, head, seq, now)

    def _lock_head(self, conn: RawCursor) -> tuple[int, str, int, float]:
        row = conn.execute(_SELECT_HEAD + conn.for_update, {"chain": self.chain}).fetchone()
        if row is None:
            now = self._clock.now()
            conn.execute(
                _INSERT_HEAD,
                {
                    "chain": self.chain,
                    "seq": 0,
                    "hash": GENESIS,
                    "checkpoint_seq": 0,
                    "checkpoint_at": now,
                },
            )
            return 0, GENESIS, 0, now
        return int(row[0]), str(row[1]), int(row[2]), float(row[3])

    def _update_head(self, conn: RawCursor, seq: int, head: str, cp_seq: int, cp_at: float) -> None:
        conn.execute(
            _UPDATE_HEAD,
            {
                "chain": self.chain,
                "seq": seq,
                "hash": head,
                "checkpoint_seq": cp_seq,
                "checkpoint_at": cp_at,
            },
        )

    def _checkpoint_due(self, seq: int, cp_seq: int, cp_at: float, now: float) -> bool:
        if self._signer is None or seq == cp_seq:
            return False
        return seq - cp_seq >= self._every_records or now - cp_at >= self._every_seconds

    def _write_checkpoint(self, conn: RawCursor, seq: int, head: str, now: float) -> None:
        assert self._signer is not None  # noqa: S101 - checked by callers
        conn.execute(
            _INSERT_CHECKPOINT,
            {
                "chain": self.chain,
                "seq": seq,
                "hash": head,
                "created_at": now,
                "note": self._signer.sign(self.chain, seq, head),
            },
        )
