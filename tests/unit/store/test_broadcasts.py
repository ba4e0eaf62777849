"""Change broadcasts on real Redis and PostgreSQL: published on commit, followed, failing closed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from ztgate.errors import StoreUnavailableError
from ztgate.store.broadcasts import ChangeBroadcasts, ChangePublisher
from ztgate.store.database import BUMPED, Database
from ztgate.store.generations import GenerationWatcher, bump
from ztgate.store.redis_server import RedisServer


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: tests stop and start it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"bc:{uuid.uuid4().hex}:"


@pytest.fixture
def database(make_database: Callable[..., Database]) -> Database:
    return make_database("postgresql")


@pytest.fixture
def publishing(database: Database, redis: RedisServer, prefix: str) -> Iterator[Database]:
    """A second Database on the same database that publishes its changes, as the CLI's would."""
    writer = Database(database.url)
    writer.after_commit = ChangePublisher(redis.url, prefix=prefix, timeout=0.5, resync_seconds=1)
    yield writer
    writer.dispose()


def _broadcasts(redis: RedisServer, prefix: str, **kwargs: object) -> ChangeBroadcasts:
    options: dict[str, object] = {"timeout": 0.3, "resync_seconds": 60.0} | kwargs
    return ChangeBroadcasts(redis.url, prefix=prefix, **options)  # type: ignore[arg-type]


@pytest.fixture
async def broadcasts(redis: RedisServer, prefix: str) -> AsyncIterator[ChangeBroadcasts]:
    followed = _broadcasts(redis, prefix)
    await followed.start()
    yield followed
    await followed.stop()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _bump(database: Database, name: str) -> None:
    with database.write() as conn:
        bump(conn, name)


async def test_a_subscription_starts_with_a_read_then_reads_only_when_told(
    broadcasts: ChangeBroadcasts, publishing: Database
) -> None:
    assert broadcasts.ready
    assert broadcasts.take()  # whatever changed before it subscribed
    assert not broadcasts.take()
    _bump(publishing, "revocations")
    await _until(lambda: broadcasts.messages == 1)
    assert broadcasts.take()
    assert not broadcasts.take()


async def test_a_rolled_back_write_publishes_nothing_and_leaves_no_names_behind(
    broadcasts: ChangeBroadcasts, publishing: Database
) -> None:
    published: list[set[str]] = []
    real = publishing.after_commit
    assert real is not None

    def spy(names: object) -> None:
        published.append(set(names))  # type: ignore[call-overload]
        real(names)  # type: ignore[arg-type]

    publishing.after_commit = spy
    with pytest.raises(RuntimeError), publishing.write() as conn:
        bump(conn, "tools")
        raise RuntimeError("abandoned")
    with publishing.write() as conn:
        assert BUMPED not in conn.info  # the pooled connection forgot the abandoned names
    assert published == []
    with publishing.write() as conn:
        bump(conn, "containment")
        bump(conn, "tasks")
    assert published == [{"containment", "tasks"}]
    await _until(lambda: broadcasts.messages == 1)
    publishing.after_commit = real


async def test_the_watcher_reads_the_store_only_after_a_broadcast(
    broadcasts: ChangeBroadcasts, database: Database, publishing: Database
) -> None:
    watcher = GenerationWatcher(database, broadcasts=broadcasts)
    try:
        watcher.prime()
        _bump(publishing, "tools")
        await _until(lambda: broadcasts.messages == 1)
        assert watcher.changed() == {"tools"}
        # Without a message the table is not read: a change made by a writer
        # that does not publish is seen only at the next re-read.
        _bump(database, "entries")
        assert watcher.changed() == set()
        _bump(publishing, "revocations")
        await _until(lambda: broadcasts.messages == 2)
        assert watcher.changed() == {"entries", "revocations"}
    finally:
        watcher.close()


async def test_a_lost_message_is_found_by_the_periodic_re_read(
    redis: RedisServer, prefix: str, database: Database
) -> None:
    ticks = Ticks()
    followed = _broadcasts(redis, prefix, resync_seconds=1.0, monotonic=ticks)
    await followed.start()
    watcher = GenerationWatcher(database, broadcasts=followed)
    try:
        watcher.prime()
        _bump(database, "containment")  # committed, never published
        ticks.now += 0.5
        assert watcher.changed() == set()
        ticks.now += 0.6
        assert watcher.changed() == {"containment"}
    finally:
        watcher.close()
        await followed.stop()


async def test_a_failed_read_is_asked_for_again(
    broadcasts: ChangeBroadcasts, database: Database, publishing: Database
) -> None:
    watcher = GenerationWatcher(database, broadcasts=broadcasts)
    watcher.prime()
    _bump(publishing, "tools")
    await _until(lambda: broadcasts.messages == 1)
    real_query = watcher._query

    def broken(sql: str) -> list[object]:
        raise StoreUnavailableError("database unavailable: test")

    watcher._query = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        watcher.changed()
    watcher._query = real_query  # type: ignore[method-assign]
    assert watcher.changed() == {"tools"}
    watcher.close()


async def test_calls_are_refused_while_redis_is_gone_and_the_store_is_re_read_when_it_is_back(
    redis: RedisServer, broadcasts: ChangeBroadcasts, database: Database, publishing: Database
) -> None:
    watcher = GenerationWatcher(database, broadcasts=broadcasts)
    watcher.prime()
    redis.stop()
    # Noticed when the connection breaks (or at the latest after `stale_after`).
    await _until(lambda: not broadcasts.ready, timeout=broadcasts.stale_after + 2)
    with pytest.raises(StoreUnavailableError, match="change broadcasts unavailable"):
        watcher.changed()
    _bump(publishing, "revocations")  # its broadcast is lost: nobody hears it
    redis.start()
    await _until(lambda: broadcasts.ready, timeout=10)
    assert broadcasts.subscriptions == 2
    # Before serving again, the replica reads what it missed.
    assert watcher.changed() == {"revocations"}
    watcher.close()


async def test_a_silent_redis_counts_as_gone(redis: RedisServer, prefix: str) -> None:
    """A server that stops answering without closing the connection (a partition)."""
    followed = _broadcasts(redis, prefix)
    await followed.start()
    assert redis.pid is not None
    try:
        assert followed.take()
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            await _until(lambda: not followed.ready, timeout=followed.stale_after + 2)
            with pytest.raises(StoreUnavailableError, match="Redis silent for over"):
                followed.take()
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        await _until(lambda: followed.ready, timeout=10)
        assert followed.take()  # back: the store is read first
    finally:
        await followed.stop()


async def test_a_gateway_does_not_start_without_its_broadcasts(prefix: str) -> None:
    with RedisServer() as gone:
        url = gone.url
    followed = ChangeBroadcasts(url, prefix=prefix, timeout=0.3, resync_seconds=1)
    with pytest.raises(StoreUnavailableError, match="change broadcasts unavailable"):
        await followed.start()
    assert not followed.ready


def test_a_failed_publication_keeps_the_commit_and_says_when_replicas_will_see_it(
    database: Database, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer() as gone:
        url = gone.url
    writer = Database(database.url)
    writer.after_commit = ChangePublisher(url, prefix=prefix, timeout=0.3, resync_seconds=1.5)
    try:
        with caplog.at_level(logging.WARNING, logger="ztgate.store.broadcasts"):
            _bump(writer, "revocations")
        assert "replicas see it within 1.5 s" in caplog.text
        with database.read() as conn:
            from ztgate.store.generations import read_all

            assert read_all(conn) == {"revocations": 1}
    finally:
        writer.dispose()


async def test_a_waiter_wakes_at_the_next_message_not_at_its_timeout(
    broadcasts: ChangeBroadcasts, publishing: Database
) -> None:
    """What an approval's long-poll waits on: a decision on another replica wakes it."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await broadcasts.next_message(0.05)  # nothing published: the timeout
    assert loop.time() - started >= 0.05
    waiter = asyncio.create_task(broadcasts.next_message(30))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    started = loop.time()
    await asyncio.to_thread(_bump, publishing, "approvals")
    await asyncio.wait_for(waiter, 10)
    assert loop.time() - started < 10


async def test_a_change_published_before_a_call_holds_for_it_even_before_the_loop_reads_it(
    broadcasts: ChangeBroadcasts, database: Database, publishing: Database
) -> None:
    """The call's task may run before the follower's: the unread bytes still make it read."""
    watcher = GenerationWatcher(database, broadcasts=broadcasts)
    try:
        watcher.prime()
        await asyncio.sleep(0.05)  # any pong handled
        assert watcher.changed() == set()
        _bump(publishing, "revocations")
        time.sleep(0.05)  # the event loop does not run: the message stays in the socket
        assert broadcasts.messages == 0
        assert watcher.changed() == {"revocations"}
        await _until(lambda: broadcasts.messages == 1)
        assert watcher.changed() == set()  # the message, handled later, moved nothing new
    finally:
        watcher.close()
