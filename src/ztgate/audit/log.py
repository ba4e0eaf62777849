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

from sqlalchemy import Connection, insert, select, update

from ztgate.audit.checkpoint import CheckpointSigner
from ztgate.audit.record import GENESIS, AuditEntry, AuditReceipt, build_body, seal
from ztgate.clock import Clock
from ztgate.errors import AuditError, GatewayError, StoreUnavailableError
from ztgate.store.database import Database
from ztgate.store.tables import audit_checkpoints, audit_heads, audit_records

logger = logging.getLogger(__name__)

_Pending = tuple[AuditEntry, "asyncio.Future[AuditReceipt]"]


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
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._writer: asyncio.Task[None] | None = None

    # -- asynchronous, group-committed appends (the gateway) -----------------

    async def start(self) -> None:
        """Start the writer task."""
        self._queue = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def stop(self) -> None:
        """Write what is queued, sign a final checkpoint and stop the writer."""
        if self._queue is None or self._writer is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._writer
        self._queue = self._writer = None
        if self._signer is not None:
            with contextlib.suppress(GatewayError):
                await asyncio.to_thread(self.checkpoint_now)

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

    async def _write_loop(self) -> None:
        assert self._queue is not None  # noqa: S101 - set by start()
        queue = self._queue
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
        try:
            receipts = await asyncio.to_thread(self.append_now, [entry for entry, _ in batch])
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
        with self._database.write() as conn:
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
                conn.execute(insert(audit_records), rows)
            if self._checkpoint_due(seq, cp_seq, cp_at, now):
                self._write_checkpoint(conn, seq, head, now)
                cp_seq, cp_at = seq, now
            conn.execute(
                update(audit_heads)
                .where(audit_heads.c.chain == self.chain)
                .values(seq=seq, hash=head, checkpoint_seq=cp_seq, checkpoint_at=cp_at)
            )
        return receipts

    def checkpoint_now(self) -> None:
        """Sign a checkpoint of the current head, if it has moved since the last one."""
        if self._signer is None:
            return
        with self._database.write() as conn:
            seq, head, cp_seq, _ = self._lock_head(conn)
            if seq == 0 or seq == cp_seq:
                return
            now = self._clock.now()
            self._write_checkpoint(conn, seq, head, now)
            conn.execute(
                update(audit_heads)
                .where(audit_heads.c.chain == self.chain)
                .values(checkpoint_seq=seq, checkpoint_at=now)
            )

    def _lock_head(self, conn: Connection) -> tuple[int, str, int, float]:
        row = conn.execute(
            select(
                audit_heads.c.seq,
                audit_heads.c.hash,
                audit_heads.c.checkpoint_seq,
                audit_heads.c.checkpoint_at,
            )
            .where(audit_heads.c.chain == self.chain)
            .with_for_update()
        ).first()
        if row is None:
            now = self._clock.now()
            conn.execute(
                insert(audit_heads).values(
                    chain=self.chain, seq=0, hash=GENESIS, checkpoint_seq=0, checkpoint_at=now
                )
            )
            return 0, GENESIS, 0, now
        return int(row.seq), str(row.hash), int(row.checkpoint_seq), float(row.checkpoint_at)

    def _checkpoint_due(self, seq: int, cp_seq: int, cp_at: float, now: float) -> bool:
        if self._signer is None or seq == cp_seq:
            return False
        return seq - cp_seq >= self._every_records or now - cp_at >= self._every_seconds

    def _write_checkpoint(self, conn: Connection, seq: int, head: str, now: float) -> None:
        assert self._signer is not None  # noqa: S101 - checked by callers
        conn.execute(
            insert(audit_checkpoints).values(
                chain=self.chain,
                seq=seq,
                hash=head,
                created_at=now,
                note=self._signer.sign(self.chain, seq, head),
            )
        )
