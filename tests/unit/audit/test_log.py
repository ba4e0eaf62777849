"""Appending to the audit chain: sequencing, group commit, checkpoints, failures."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztgate.audit.checkpoint import CheckpointSigner, verify_note
from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.audit.record import GENESIS, AuditEntry, AuditReceipt
from ztgate.errors import AuditError, StoreUnavailableError
from ztgate.store.database import Database
from ztgate.testing import FrozenClock

Entry = Callable[..., AuditEntry]


def _seqs(database: Database, chain: str = "main") -> list[int]:
    return [r.seq for r in AuditReader(database).records(chain)]


def _checkpoint_seqs(database: Database, chain: str = "main") -> list[int]:
    return [c.seq for c in AuditReader(database).checkpoints(chain)]


def _assert_valid(database: Database, public_key: Ed25519PublicKey | None) -> None:
    report = AuditReader(database).verify(public_key)
    assert report.ok, [(c.chain, c.first_bad_seq, c.problem) for c in report.chains]


# -- synchronous appends ------------------------------------------------------


def test_append_now_sequences_and_links(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database, clock: FrozenClock
) -> None:
    log = make_log(signer=None)

    first = log.append_now([make_entry(1), make_entry(2), make_entry(3)])
    clock.advance(5)
    second = log.append_now([make_entry(4)])

    assert [r.seq for r in first + second] == [1, 2, 3, 4]
    assert all(r.chain == "main" for r in first + second)
    records = list(AuditReader(database).records("main"))
    bodies = [orjson.loads(r.body) for r in records]
    assert [b["prev"] for b in bodies] == [GENESIS] + [r.hash for r in first]
    assert [r.hash for r in records] == [r.hash for r in first + second]
    assert [b["call_id"] for b in bodies] == ["call-1", "call-2", "call-3", "call-4"]
    assert records[3].columns is not None
    assert records[3].columns["tool"] == make_entry(4).tool
    _assert_valid(database, None)


def test_append_now_with_nothing_writes_no_record(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log(signer=None)

    assert log.append_now([]) == []
    assert _seqs(database) == []
    assert log.append_now([make_entry(1)])[0].seq == 1


def test_chains_are_independent(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    main, other = make_log(signer=None), make_log(signer=None, chain="other")

    main.append_now([make_entry(1), make_entry(2)])
    receipt = other.append_now([make_entry(3)])[0]

    assert receipt == AuditReceipt("other", 1, receipt.hash)
    assert orjson.loads(next(AuditReader(database).records("other")).body)["prev"] == GENESIS
    assert AuditReader(database).chains() == ["main", "other"]
    _assert_valid(database, None)


# -- checkpoints -----------------------------------------------------------------


def test_checkpoint_every_n_records(
    make_log: Callable[..., AuditLog],
    make_entry: Entry,
    database: Database,
    public_key: Ed25519PublicKey,
) -> None:
    log = make_log(checkpoint_every_records=5)

    receipts = [log.append_now([make_entry(i)])[0] for i in range(1, 13)]

    checkpoints = AuditReader(database).checkpoints("main")
    assert [c.seq for c in checkpoints] == [5, 10]
    for cp in checkpoints:
        signed = verify_note(cp.note, public_key)
        assert (signed.chain, signed.seq, signed.hash) == ("main", cp.seq, cp.hash)
        assert cp.hash == receipts[cp.seq - 1].hash


def test_a_batch_crossing_the_interval_is_checkpointed_at_its_end(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log(checkpoint_every_records=3)

    log.append_now([make_entry(i) for i in range(1, 8)])

    assert _checkpoint_seqs(database) == [7]


def test_checkpoint_after_the_time_interval(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database, clock: FrozenClock
) -> None:
    log = make_log(checkpoint_every_records=1000, checkpoint_every_seconds=60)
    log.append_now([make_entry(1)])
    clock.advance(30)
    log.append_now([make_entry(2)])
    assert _checkpoint_seqs(database) == []

    clock.advance(31)
    log.append_now([make_entry(3)])

    assert _checkpoint_seqs(database) == [3]


def test_checkpoint_now_signs_the_head_once(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log()
    log.checkpoint_now()
    assert _checkpoint_seqs(database) == []

    log.append_now([make_entry(1), make_entry(2)])
    log.checkpoint_now()
    log.checkpoint_now()

    assert _checkpoint_seqs(database) == [2]


def test_no_signer_means_no_checkpoints(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database, clock: FrozenClock
) -> None:
    log = make_log(signer=None, checkpoint_every_records=1, checkpoint_every_seconds=1)
    for i in range(3):
        clock.advance(10)
        log.append_now([make_entry(i)])
    log.checkpoint_now()

    assert _checkpoint_seqs(database) == []


# -- asynchronous, group-committed appends ------------------------------------


async def test_concurrent_appends_make_one_contiguous_chain_in_few_commits(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    public_key: Ed25519PublicKey,
) -> None:
    database = other_database()
    log = AuditLog(database, clock, signer=signer, checkpoint_every_records=50)
    await log.start()

    receipts = await asyncio.gather(*(log.append(make_entry(i)) for i in range(300)))
    await log.stop()

    assert sorted(r.seq for r in receipts) == list(range(1, 301))
    assert len({r.hash for r in receipts}) == 300
    assert _seqs(database) == list(range(1, 301))
    commits = log.batches  # one transaction each
    assert 1 <= commits < 300 // 4, f"{commits} commits for 300 records: no group commit"
    _assert_valid(database, public_key)


async def test_each_caller_gets_the_receipt_of_its_own_entry(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log()
    await log.start()

    receipts = await asyncio.gather(*(log.append(make_entry(i)) for i in range(40)))
    await log.stop()

    bodies = {r.seq: orjson.loads(r.body) for r in AuditReader(database).records("main")}
    for i, receipt in enumerate(receipts):
        assert bodies[receipt.seq]["call_id"] == f"call-{i}"


async def test_batches_respect_max_batch(
    other_database: Callable[..., Database], clock: FrozenClock, make_entry: Entry
) -> None:
    database = other_database()
    log = AuditLog(database, clock, max_batch=10)
    await log.start()

    await asyncio.gather(*(log.append(make_entry(i)) for i in range(50)))
    await log.stop()

    assert log.batches >= 5
    assert _seqs(database) == list(range(1, 51))


async def test_stop_writes_queued_entries_and_a_final_checkpoint(
    make_log: Callable[..., AuditLog],
    make_entry: Entry,
    database: Database,
    public_key: Ed25519PublicKey,
) -> None:
    log = make_log(checkpoint_every_records=1000)
    await log.start()
    pending = [asyncio.ensure_future(log.append(make_entry(i))) for i in range(7)]
    await asyncio.sleep(0)

    await log.stop()

    assert [p.result().seq for p in pending] == list(range(1, 8))
    assert _checkpoint_seqs(database) == [7]
    _assert_valid(database, public_key)


async def test_stop_signs_no_duplicate_checkpoint(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log(checkpoint_every_records=2)
    await log.start()
    await log.append(make_entry(1))
    await log.append(make_entry(2))

    await log.stop()
    await log.stop()

    assert _checkpoint_seqs(database) == [2]


async def test_append_without_a_running_writer_raises(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log()
    with pytest.raises(AuditError, match="not running"):
        await log.append(make_entry(1))

    await log.start()
    await log.append(make_entry(1))
    await log.stop()

    with pytest.raises(AuditError, match="not running"):
        await log.append(make_entry(2))
    assert _seqs(database) == [1]


async def test_an_append_racing_stop_never_hangs(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log()
    await log.start()
    await log.append(make_entry(1))

    # Two requests in the same loop turn: shutdown first, then one more call.
    # stop() queues its sentinel; the append runs before the writer wakes up.
    stopping = asyncio.ensure_future(log.stop())
    late = asyncio.ensure_future(log.append(make_entry(2)))
    await stopping

    # Either recorded or refused, but answered: a caller must never wait forever.
    done, _ = await asyncio.wait({late}, timeout=2)
    if not done:
        late.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await late
        pytest.fail("an append made while the writer was stopping never completed")
    if late.exception() is None:
        assert late.result().seq == 2
        assert _seqs(database) == [1, 2]
    else:
        assert isinstance(late.exception(), AuditError)
        assert _seqs(database) == [1]


# -- several writers on one file ---------------------------------------------------


def test_two_logs_on_separate_databases_interleave_into_one_chain(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    public_key: Ed25519PublicKey,
    database: Database,
) -> None:
    gateway = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=4)
    cli = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=4)

    receipts = []
    for i in range(12):
        writer = (gateway, cli)[i % 2]
        receipts += writer.append_now([make_entry(i), make_entry(i + 100)])

    assert [r.seq for r in receipts] == list(range(1, 25))
    assert _seqs(database) == list(range(1, 25))
    assert _checkpoint_seqs(database)
    _assert_valid(database, public_key)


def _count_head_reads(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the appends that read the head under its lock (`_lock_head`)."""
    reads: list[int] = []
    lock_head = log._lock_head

    def counted(conn: Any) -> tuple[int, str, int, float]:
        reads.append(1)
        return lock_head(conn)

    monkeypatch.setattr(log, "_lock_head", counted)
    return reads


def test_a_lone_writer_builds_on_the_head_it_committed_without_reading_it(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    public_key: Ed25519PublicKey,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=3)
    reads = _count_head_reads(log, monkeypatch)

    for i in range(10):
        clock.advance(0.1)  # checkpoint times that are not whole seconds, compared exactly
        log.append_now([make_entry(i)])

    # The first append reads the head, the second finds it as the first left
    # it; from then on each append's UPDATE checks the head instead.
    assert len(reads) == 2
    assert _seqs(database) == list(range(1, 11))
    assert _checkpoint_seqs(database) == [3, 6, 9]
    _assert_valid(database, public_key)


def test_a_head_moved_by_another_writer_is_read_again(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    public_key: Ed25519PublicKey,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=4)
    cli = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=4)
    reads = _count_head_reads(gateway, monkeypatch)
    # Bursts: the gateway builds on its own head unread, then finds it moved.
    pattern = "GGGCGGGGCCCGGGCGCGGG"

    receipts = []
    for i, who in enumerate(pattern):
        clock.advance(0.25)
        writer = gateway if who == "G" else cli
        receipts += writer.append_now([make_entry(i)])

    assert [r.seq for r in receipts] == list(range(1, len(pattern) + 1))
    assert _seqs(database) == list(range(1, len(pattern) + 1))
    assert _checkpoint_seqs(database) == [4, 8, 12, 16, 20]
    # Every gateway append right after the CLI's found the head moved and read it.
    assert len(reads) > pattern.count("CG")
    assert len(reads) < pattern.count("G")
    _assert_valid(database, public_key)


def test_a_checkpoint_by_another_writer_is_seen(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    public_key: Ed25519PublicKey,
    database: Database,
) -> None:
    gateway = AuditLog(other_database(), clock, signer=signer, checkpoint_every_records=3)
    cli = AuditLog(other_database(), clock, signer=signer)
    for i in range(3):  # the third builds on the head unread
        clock.advance(1)
        gateway.append_now([make_entry(i)])
    assert _checkpoint_seqs(database) == [3]
    gateway.append_now([make_entry(3)])

    cli.checkpoint_now()  # only the head's checkpoint columns move
    gateway.append_now([make_entry(4)])
    gateway.append_now([make_entry(5)])

    # Counted from the CLI's checkpoint at 4, not the gateway's at 3.
    assert _checkpoint_seqs(database) == [3, 4]
    gateway.append_now([make_entry(6)])
    assert _checkpoint_seqs(database) == [3, 4, 7]
    _assert_valid(database, public_key)


class _FailingCommit:
    """A driver connection whose commit fails as a lost database would."""

    def __init__(self, driver: Any, error: Exception) -> None:
        self._driver = driver
        self._error = error

    def commit(self) -> None:
        raise self._error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)


def test_a_failed_commit_forgets_the_head(
    make_log: Callable[..., AuditLog], make_entry: Entry, database: Database
) -> None:
    log = make_log(signer=None)
    for i in range(3):  # the third builds on the head unread
        log.append_now([make_entry(i)])
    connection = log.connection
    connection._driver = _FailingCommit(
        connection._driver, database.engine.dialect.loaded_dbapi.OperationalError("gone")
    )

    with pytest.raises(StoreUnavailableError, match="gone"):
        log.append_now([make_entry(3)])
    assert log._last is None  # the head it built on did not commit
    receipts = log.append_now([make_entry(4)]) + log.append_now([make_entry(5)])

    assert [r.seq for r in receipts] == [4, 5]
    assert _seqs(database) == [1, 2, 3, 4, 5]
    _assert_valid(database, None)


def test_two_logs_in_concurrent_threads_make_one_chain(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    make_entry: Entry,
    database: Database,
) -> None:
    logs = [AuditLog(other_database(), clock) for _ in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def write(log: AuditLog, base: int) -> None:
        try:
            start.wait()
            for i in range(25):
                log.append_now([make_entry(base + i)])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(log, n * 1000)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert _seqs(database) == list(range(1, 51))
    call_ids = {orjson.loads(r.body)["call_id"] for r in AuditReader(database).records("main")}
    assert len(call_ids) == 50
    _assert_valid(database, None)


# -- failures -------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Any:
    """Another connection holding the write lock (BEGIN EXCLUSIVE)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_a_locked_database_fails_the_append_and_the_next_one_succeeds(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    signer: CheckpointSigner,
    make_entry: Entry,
    db_path: Path,
    database: Database,
    public_key: Ed25519PublicKey,
) -> None:
    log = AuditLog(
        other_database(busy_timeout_ms=50), clock, signer=signer, checkpoint_every_records=2
    )
    await log.start()
    await log.append(make_entry(1))

    with _exclusive_lock(db_path):
        results = await asyncio.gather(
            *(log.append(make_entry(i)) for i in range(2, 5)), return_exceptions=True
        )
    assert all(isinstance(r, StoreUnavailableError) for r in results), results

    receipt = await log.append(make_entry(5))
    await log.stop()

    assert receipt.seq == 2
    assert _seqs(database) == [1, 2]
    body = orjson.loads(list(AuditReader(database).records("main"))[1].body)
    assert body["call_id"] == "call-5"
    _assert_valid(database, public_key)


def test_a_locked_database_fails_a_synchronous_append(
    other_database: Callable[..., Database],
    clock: FrozenClock,
    make_entry: Entry,
    db_path: Path,
    database: Database,
) -> None:
    log = AuditLog(other_database(busy_timeout_ms=50), clock)
    log.append_now([make_entry(1)])

    with _exclusive_lock(db_path), pytest.raises(StoreUnavailableError):
        log.append_now([make_entry(2)])

    assert log.append_now([make_entry(3)])[0].seq == 2
    _assert_valid(database, None)
