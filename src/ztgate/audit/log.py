"""Appending to the audit chain, durably, before any answer leaves the gateway.

Concurrent requests are group-committed: whatever is ready to be recorded in
the same turn of the event loop goes into one transaction, and every request
waits until that transaction has committed. Each transaction locks the chain head, so the
CLI and the gateway (and, on PostgreSQL, every gateway replica) can append to
the same chain safely: one chain, in the order the head's lock was granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy import Connection

from ztgate.audit.checkpoint import CheckpointSigner
from ztgate.audit.record import GENESIS, AuditEntry, AuditReceipt, seal_entry
from ztgate.clock import Clock, isoformat
from ztgate.errors import AuditError, GatewayError, StoreUnavailableError
from ztgate.store.database import Database, RawCursor

logger = logging.getLogger(__name__)

# An entry and the future its appender waits on (None for the batch's leader).
_Pending = tuple[AuditEntry, "asyncio.Future[AuditReceipt] | None"]

# The append runs on every call, so it speaks plain SQL through the driver
# (`DedicatedConnection.transaction`): SQLAlchemy Core costs about 100 us per statement.
_SELECT_HEAD = (
    "SELECT seq, hash, checkpoint_seq, checkpoint_at FROM audit_heads WHERE chain = :chain"
)
# Two first appenders (two processes on PostgreSQL) may both find no head:
# one inserts it, the other's insert does nothing, and both then lock it.
_INSERT_HEAD = (
    "INSERT INTO audit_heads (chain, seq, hash, checkpoint_seq, checkpoint_at)"
    " VALUES (:chain, :seq, :hash, :checkpoint_seq, :checkpoint_at)"
    " ON CONFLICT (chain) DO NOTHING"
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
# The same, only if the head is still exactly as this log last committed it
# (`_Head`): the check and the lock of `_lock_head` in the one statement.
_ADVANCE_HEAD = (
    _UPDATE_HEAD + " AND seq = :was_seq AND hash = :was_hash"
    " AND checkpoint_seq = :was_checkpoint_seq AND checkpoint_at = :was_checkpoint_at"
)

# A chain head's columns: seq, hash, checkpoint_seq, checkpoint_at.
_Head = tuple[int, str, int, float]


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
        self.inline = database.is_sqlite and database.synchronous == "normal"
        self.connection = database.dedicated()
        self._running = False
        self.batches = self.batched_records = 0  # group-commit effectiveness, for metrics
        self._gathering: list[_Pending] | None = None
        self._write_lock: asyncio.Lock | None = None
        # The head as this log's last transaction committed it (None: unknown),
        # and whether the next append may build on it unread (`_append`).
        self._last: _Head | None = None
        self._unread = False

    # -- asynchronous, group-committed appends (the gateway) -----------------

    async def start(self) -> None:
        """Accept appends."""
        self._write_lock = asyncio.Lock()
        self._running = True

    async def stop(self) -> None:
        """Refuse new appends, let accepted ones commit, sign a final checkpoint."""
        if not self._running or self._write_lock is None:
            return
        self._running = False
        # Batches already gathering were accepted: wait until they are written.
        while self._gathering is not None or self._write_lock.locked():
            await asyncio.sleep(0.001)
        async with self._write_lock:
            if self._signer is not None:
                with contextlib.suppress(GatewayError):
                    if self.inline:
                        self.checkpoint_now()
                    else:
                        await asyncio.to_thread(self.checkpoint_now)
            self.connection.close()

    async def append(self, entry: AuditEntry, *, gather: bool = True) -> AuditReceipt:
        """Record `entry`; returns once it is committed.

        Group commit without a writer task: the first append to find no batch
        open leads one, yields to the event loop once so that every other
        request ready to append joins it, then writes the whole batch in one
        transaction. Alone (one call in flight), an append costs one commit
        and no task switch; `gather=False` (the caller knows it is alone)
        skips even the one yield.

        Raises:
            AuditError: the log is not accepting appends (not started, or stopping).
            StoreUnavailableError: the database could not be written.
        """
        if not self._running or self._write_lock is None:
            raise AuditError("the audit log is not running (not started, or stopping)")
        if self._gathering is not None and len(self._gathering) < self._max_batch:
            future: asyncio.Future[AuditReceipt] = asyncio.get_running_loop().create_future()
            self._gathering.append((entry, future))
            return await future
        batch: list[_Pending] = [(entry, None)]
        self._gathering = batch
        try:
            if gather or self._write_lock.locked():
                await asyncio.sleep(0)
            async with self._write_lock:
                if self._gathering is batch:
                    self._gathering = None
                receipts = await self._commit([item[0] for item in batch])
                self.batches += 1
                self.batched_records += len(batch)
        except BaseException as exc:
            if self._gathering is batch:
                self._gathering = None
            error = (
                exc if isinstance(exc, Exception) else AuditError("the audit write was cancelled")
            )
            for _, waiting in batch[1:]:
                if waiting is not None and not waiting.done():
                    waiting.set_exception(error)
            raise
        for (_, waiting), receipt in zip(batch[1:], receipts[1:], strict=True):
            if waiting is not None and not waiting.done():
                waiting.set_result(receipt)
        return receipts[0]

    async def _commit(self, entries: list[AuditEntry]) -> list[AuditReceipt]:
        try:
            if self.inline:
                return self.append_now(entries)
            return await asyncio.to_thread(self.append_now, entries)
        except GatewayError as exc:
            logger.error("audit write failed: %s", exc)
            raise
        except Exception as exc:
            logger.error("audit write failed: %r", exc)
            raise StoreUnavailableError(f"audit write failed: {exc}") from exc

    # -- synchronous appends (the CLI, and the writer's thread) ---------------

    def append_now(self, entries: Sequence[AuditEntry]) -> list[AuditReceipt]:
        """Append `entries` in one transaction, in order.

        Raises:
            StoreUnavailableError: the database could not be written.
        """
        last, self._last = self._last, None  # unknown again unless this commits
        with self.connection.transaction() as cursor:
            receipts, head = self._append(cursor, entries, last)
        self._last = head
        return receipts

    def append_within(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditReceipt]:
        """Append `entries` inside the caller's write transaction on `conn`.

        For management changes, so that the change and its audit record are
        committed together or not at all.
        """
        raw = conn.connection.driver_connection
        if raw is None:
            raise AuditError("the transaction has no open database connection")
        self._last = None  # the head moves (if the caller commits)
        return self._append(RawCursor(raw.cursor(), self._database.is_sqlite), entries, None)[0]

    def _append(
        self, conn: RawCursor, entries: Sequence[AuditEntry], last: _Head | None
    ) -> tuple[list[AuditReceipt], _Head]:
        # The usual case, one writer: the head is still `last`, as this log
        # committed it. The records are built on it unread, and one UPDATE
        # both moves the head and checks that it was `last` (every column):
        # on SQLite inside BEGIN IMMEDIATE, which already excludes every
        # other writer; on PostgreSQL the UPDATE takes the row lock as
        # SELECT ... FOR UPDATE would, and re-checks its condition on the
        # newest version of the row once a concurrent writer commits. Matched:
        # the head is what `_lock_head` would have read, now locked, so the
        # records are those the locked path writes. Not matched: nothing was
        # written or locked; read the head under its lock and build again.
        if last is not None and self._unread and entries:
            done = self._write(conn, entries, last, unread=True)
            if done is not None:
                return done
        locked = self._lock_head(conn)
        # Building unread pays off while nobody else appends in between.
        self._unread = locked == last
        done = self._write(conn, entries, locked, unread=False)
        if done is None:  # pragma: no cover - only an unread head can have moved
            raise AuditError(f"audit chain {self.chain!r} moved while locked")
        return done

    def _write(
        self, conn: RawCursor, entries: Sequence[AuditEntry], start: _Head, *, unread: bool
    ) -> tuple[list[AuditReceipt], _Head] | None:
        """Append `entries` after the head `start`.

        None if `unread` (the head was not read under its lock) and the head
        turned out not to be `start`: then nothing was written.
        """
        seq, head, cp_seq, cp_at = start
        now = self._clock.now()
        ts = isoformat(now)  # one time for the whole transaction, formatted once
        chain = self.chain
        receipts: list[AuditReceipt] = []
        rows = []
        for entry in entries:
            seq += 1
            text, head = seal_entry(entry, chain=chain, seq=seq, prev=head, ts=ts)
            rows.append(
                {
                    "chain": chain,
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
            receipts.append(AuditReceipt(chain, seq, head))
        checkpoint = self._checkpoint_due(seq, cp_seq, cp_at, now)
        end = (seq, head, seq, now) if checkpoint else (seq, head, cp_seq, cp_at)
        if unread and not self._advance_head(conn, start, end):
            return None
        if len(rows) == 1:  # the usual case: one statement, without executemany's iteration
            conn.execute(_INSERT_RECORD, rows[0])
        elif rows:
            conn.executemany(_INSERT_RECORD, rows)
        if checkpoint:
            self._write_checkpoint(conn, seq, head, now)
        if not unread:
            self._update_head(conn, *end)
        return receipts, end

    def checkpoint_now(self) -> None:
        """Sign a checkpoint of the current head, if it has moved since the last one."""
        if self._signer is None:
            return
        self._last = None  # the head's checkpoint columns move
        with self.connection.transaction() as conn:
            seq, head, cp_seq, _ = self._lock_head(conn)
            if seq == 0 or seq == cp_seq:
                return
            now = self._clock.now()
            self._write_checkpoint(conn, seq, head, now)
            self._update_head(conn, seq, head, seq, now)

    def _lock_head(self, conn: RawCursor) -> tuple[int, str, int, float]:
        # The row lock on the head serialises appenders on PostgreSQL (every
        # process, every connection): each reads the head only once it holds
        # the lock, so sequence numbers and links never fork.
        select_head = _SELECT_HEAD + conn.for_update
        row = conn.execute(select_head, {"chain": self.chain}).fetchone()
        if row is None:
            conn.execute(
                _INSERT_HEAD,
                {
                    "chain": self.chain,
                    "seq": 0,
                    "hash": GENESIS,
                    "checkpoint_seq": 0,
                    "checkpoint_at": self._clock.now(),
                },
            )
            row = conn.execute(select_head, {"chain": self.chain}).fetchone()
            if row is None:  # pragma: no cover - inserted or found just above
                raise AuditError(f"audit chain {self.chain!r} has no head")
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

    def _advance_head(self, conn: RawCursor, was: _Head, now: _Head) -> bool:
        # `_ADVANCE_HEAD`: True if the head was `was` (and is now `now`, locked).
        cursor = conn.execute(
            _ADVANCE_HEAD,
            {
                "chain": self.chain,
                "seq": now[0],
                "hash": now[1],
                "checkpoint_seq": now[2],
                "checkpoint_at": now[3],
                "was_seq": was[0],
                "was_hash": was[1],
                "was_checkpoint_seq": was[2],
                "was_checkpoint_at": was[3],
            },
        )
        return bool(cursor.rowcount == 1)

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
