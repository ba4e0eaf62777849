"""What only the Redis hot state has: the server's clock, sharing, key expiry, failing closed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ztgate.errors import StoreUnavailableError
from ztgate.store.hot import Bucket
from ztgate.store.hot_redis import HotStateUnavailableError, RedisHotState, redacted
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock


@pytest.fixture
async def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def shared(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisHotState]:
    """A hot state on the server's own clock, as the gateway builds it."""
    hot = RedisHotState.from_url(redis_server.url, prefix=prefix, timeout=2.0)
    await hot.begin()
    yield hot
    await hot.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


# -- the server's clock (TIME), with real short durations --------------------------------------


async def test_ttls_run_on_the_servers_clock(shared: RedisHotState) -> None:
    assert await shared.remember_once("nonce", 0.2)
    assert not await shared.remember_once("nonce", 0.2)
    await shared.mark("flag", 0.2)
    assert await shared.incr("n", 2, 0.2) == 2
    assert await shared.is_marked("flag")
    await asyncio.sleep(0.25)
    assert await shared.remember_once("nonce", 0.2)
    assert not await shared.is_marked("flag")
    assert await shared.incr("n", 1, 0.2) == 1


async def test_buckets_and_windows_run_on_the_servers_clock(shared: RedisHotState) -> None:
    fast = Bucket("b", rate=20.0, burst=2.0)
    assert await shared.take([fast]) == (0.0, None)
    assert await shared.take([fast]) == (0.0, None)
    wait, key = await shared.take([fast])
    assert key == "b" and 0 < wait <= 0.05
    await asyncio.sleep(0.06)  # one token back
    assert await shared.take([fast]) == (0.0, None)
    assert await shared.hit("w", 0.2, 10) == 1
    assert await shared.hit("w", 0.2, 10) == 2
    await asyncio.sleep(0.25)
    assert await shared.hit("w", 0.2, 10) == 1


# -- one state for every replica ----------------------------------------------------------------


async def test_two_clients_of_one_server_share_everything(
    redis_server: RedisServer, shared: RedisHotState, prefix: str
) -> None:
    other = RedisHotState.from_url(redis_server.url, prefix=prefix, timeout=2.0)
    await other.begin()
    try:
        assert await shared.remember_once("proof:1", 60)
        assert not await other.remember_once("proof:1", 60)
        await other.mark("suspended:agent", 60)
        assert await shared.is_marked("suspended:agent")
        bucket = Bucket("rate:agent", rate=0.001, burst=3)
        taken = [await hot.take([bucket]) for hot in (shared, other, shared, other)]
        assert [key for _, key in taken] == [None, None, None, "rate:agent"]
        assert (await other.charge("t", (1.0,), (1.0,), 60))[0]
        assert not (await shared.charge("t", (1.0,), (1.0,), 60))[0]
    finally:
        await other.close()


async def test_a_prefix_keeps_gateways_apart(redis_server: RedisServer, prefix: str) -> None:
    one = RedisHotState.from_url(redis_server.url, prefix=prefix + "one:")
    two = RedisHotState.from_url(redis_server.url, prefix=prefix + "two:")
    try:
        await one.begin()
        await two.begin()
        assert await one.remember_once("nonce", 60)
        assert await two.remember_once("nonce", 60)
    finally:
        await one.close()
        await two.close()


async def test_concurrent_takes_never_overdraw(redis_server: RedisServer, prefix: str) -> None:
    """Many clients at once: each token is taken once (the script is atomic)."""
    states = [RedisHotState.from_url(redis_server.url, prefix=prefix) for _ in range(4)]
    try:
        for state in states:
            await state.begin()
        bucket = Bucket("shared", rate=0.0001, burst=50)
        results = await asyncio.gather(*(states[i % 4].take([bucket]) for i in range(200)))
        assert sum(1 for _, key in results if key is None) == 50
        nonces = await asyncio.gather(*(s.remember_once("jti", 60) for s in states * 10))
        assert nonces.count(True) == 1
        charged = await asyncio.gather(
            *(states[i % 4].charge("budget", (1.0,), (30.0,), 60) for i in range(100))
        )
        assert sum(1 for added, _ in charged if added) == 30
    finally:
        for state in states:
            await state.close()


# -- every key expires ----------------------------------------------------------------------------


async def test_every_key_has_an_expiry(
    shared: RedisHotState, raw: aioredis.Redis, prefix: str
) -> None:
    await shared.remember_once("a", 60)
    await shared.incr("b", 1, 60)
    await shared.mark("c", 60)
    await shared.take([Bucket("d", 1, 5), Bucket("e", 2, 5)])
    await shared.hit("f", 30, 10)
    await shared.charge("g", (1.0, 2.0), (None, 5.0), 60)
    await shared.seed("h", (1.0, 2.0), 60)
    await shared.note("i", {"x": "tool", "y": "tool"}, 60, 10)
    keys = [key async for key in raw.scan_iter(match=prefix + "*")]
    assert len(keys) == 10  # and the epoch
    for key in keys:
        ttl = await raw.pttl(key)
        longest = 30 * 86400_000 if key == prefix + "epoch" else 61_000 + 1000
        assert 0 < ttl <= longest, key


async def test_a_full_bucket_and_an_empty_window_leave_no_key(
    shared: RedisHotState, raw: aioredis.Redis, prefix: str
) -> None:
    await shared.take([Bucket("quick", rate=100, burst=1)])
    await shared.hit("short", 0.01, 10)
    await asyncio.sleep(1.2)  # refilled / empty, plus the slack Redis keeps keys for
    assert [key async for key in raw.scan_iter(match=prefix + "*")] == [prefix + "epoch"]


# -- failing closed --------------------------------------------------------------------------


async def _recovered(hot: RedisHotState) -> None:
    for _ in range(100):
        try:
            await hot.take([Bucket("probe", 1, 1)])
            return
        except HotStateUnavailableError:
            await asyncio.sleep(0.02)
    raise AssertionError("not recovered")


async def test_an_unreachable_server_raises_for_every_operation() -> None:
    server = RedisServer()
    try:
        server.start()
        hot = RedisHotState.from_url(server.url, timeout=0.3)
        await hot.begin()
        try:
            assert await hot.remember_once("nonce", 60)
            server.stop()
            operations = [
                hot.remember_once("nonce-2", 60),
                hot.incr("n", 1, 60),
                hot.mark("m", 60),
                hot.unmark("m"),
                hot.is_marked("m"),
                hot.take([Bucket("b", 1, 1)]),
                hot.hit("w", 1, 1),
                hot.charge("t", (1.0,), (None,), 60),
                hot.seed("t", (1.0,), 60),
                hot.forget("t"),
                hot.note("n", {"a": "b"}, 60, 1),
                hot.notes("n", ["a"]),
                hot.ping(),
            ]
            for operation in operations:
                with pytest.raises(HotStateUnavailableError, match="unavailable"):
                    await operation
            server.start()  # an empty server again, on the same port: scripts load again
            with pytest.raises(HotStateUnavailableError, match="lost its data"):
                await hot.take([Bucket("b", 1, 1)])
            await _recovered(hot)
            assert await hot.take([Bucket("b", 1, 1)]) == (0.0, None)
        finally:
            await hot.close()
    finally:
        server.close()


async def test_a_server_that_does_not_answer_times_out_quickly() -> None:
    """A listening socket that never replies: the short timeout, not a hang."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        hot = RedisHotState.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(HotStateUnavailableError):
                await hot.remember_once("nonce", 60)
            assert loop.time() - start < 1.5
        finally:
            await hot.close()


def test_a_password_is_not_logged() -> None:
    assert redacted("redis://user:secret@cache:6380/1") == "redis://user:***@cache:6380/1"
    assert redacted("redis://cache:6379/0") == "redis://cache:6379/0"


# -- a server that lost its data ----------------------------------------------------------------


async def test_nothing_is_trusted_before_begin(redis_server: RedisServer, prefix: str) -> None:
    hot = RedisHotState.from_url(redis_server.url, prefix=prefix)
    try:
        with pytest.raises(HotStateUnavailableError, match="lost its data"):
            await hot.is_marked("revoked")
    finally:
        await hot.close()


async def test_a_server_that_lost_its_data_is_recovered_before_it_serves_again(
    redis_server: RedisServer, raw: aioredis.Redis, prefix: str
) -> None:
    clock = FrozenClock()
    hot = RedisHotState.from_url(redis_server.url, prefix=prefix, clock=clock)
    recoveries: list[bool] = []

    async def recover() -> None:  # what the gateway does: seed the budgets' use again
        recoveries.append(await hot.seed("usage:t1", (3.0, 1.5), 3600))

    await hot.begin(recover)
    assert await hot.remember_once("proof:used-before", 60)
    await hot.mark("injection-seen:task:t1", 60)
    # The server loses everything under this prefix (a restart without persistence).
    await raw.delete(*[key async for key in raw.scan_iter(match=prefix + "*")])
    for operation in (
        hot.is_marked("injection-seen:task:t1"),
        hot.remember_once("proof:used-before", 60),
        hot.take([Bucket("b", 1, 1)]),
        hot.charge("usage:t1", (1.0, 0.0), (4.0, None), 3600),
    ):
        with pytest.raises(HotStateUnavailableError, match="lost its data"):
            await operation
    await _recovered(hot)
    assert recoveries == [True]
    # The budget's use is back; the totals go on from it.
    assert await hot.charge("usage:t1", (1.0, 0.0), (4.0, None), 3600) == (True, (4.0, 1.5))
    # A proof that may have been used before the loss is refused for its TTL, not accepted.
    with pytest.raises(HotStateUnavailableError, match="before the loss"):
        await hot.remember_once("proof:used-before", 60)
    clock.advance(60)
    assert await hot.remember_once("proof:used-after", 60)
    assert not await hot.remember_once("proof:used-after", 60)
    await hot.close()


async def test_a_recovery_that_fails_is_tried_again(
    redis_server: RedisServer, raw: aioredis.Redis, prefix: str
) -> None:
    hot = RedisHotState.from_url(redis_server.url, prefix=prefix)
    attempts: list[int] = []

    async def recover() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise StoreUnavailableError("the database is locked")

    await hot.begin(recover)
    await raw.delete(prefix + "epoch")
    with pytest.raises(HotStateUnavailableError):
        await hot.take([Bucket("b", 1, 1)])
    await asyncio.sleep(0.1)  # the first recovery failed: still refused
    with pytest.raises(HotStateUnavailableError, match="lost its data"):
        await hot.take([Bucket("b", 1, 1)])
    await _recovered(hot)
    assert len(attempts) == 2
    await hot.close()
