"""Login throttling per name and per address, in the hot state: in process and in Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ztgate.console.throttle import LoginThrottle
from ztgate.errors import StoreUnavailableError
from ztgate.store.hot import HotState, MemoryHotState
from ztgate.store.hot_redis import RedisHotState
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=["memory", "redis"])
async def hot(request: pytest.FixtureRequest, clock: FrozenClock) -> AsyncIterator[HotState]:
    """Each hot state on the test's clock (Redis: this process's server, a prefix of its own)."""
    if request.param == "memory":
        yield MemoryHotState(clock)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    shared = RedisHotState.from_url(server.url, prefix=f"t:{uuid.uuid4().hex}:", clock=clock)
    await shared.begin()
    yield shared
    await shared.close()


async def test_failures_per_name_throttle_that_name_until_the_window_passes(
    hot: HotState, clock: FrozenClock
) -> None:
    limits = LoginThrottle(hot, per_name=3, per_address=100, window=60)
    for _ in range(3):
        assert await limits.attempt("alice", "10.0.0.1")
    assert not await limits.attempt("alice", "10.0.0.2")  # another address: the name is held
    assert await limits.attempt("bob", "10.0.0.1")
    clock.advance(61)
    assert await limits.attempt("alice", "10.0.0.1")


async def test_failures_per_address_throttle_every_name_from_it(hot: HotState) -> None:
    limits = LoginThrottle(hot, per_name=100, per_address=2, window=60)
    assert await limits.attempt("a", "10.0.0.9")
    assert await limits.attempt("b", "10.0.0.9")
    assert not await limits.attempt("c", "10.0.0.9")
    # The refused attempt did not count against its name either.
    strict = LoginThrottle(hot, per_name=1, per_address=100, window=60)
    assert await strict.attempt("c", "10.0.0.8")


async def test_a_good_login_clears_its_name_and_gives_back_its_address_attempt(
    hot: HotState,
) -> None:
    limits = LoginThrottle(hot, per_name=2, per_address=2, window=60)
    for _ in range(5):
        assert await limits.attempt("alice", "10.0.0.1")  # counted before the check ...
        await limits.succeeded("alice", "10.0.0.1")  # ... and given back when it was good
    assert await limits.attempt("bob", "10.0.0.1")
    assert await limits.attempt("bob", "10.0.0.1")
    assert not await limits.attempt("carol", "10.0.0.1")  # bad ones still count


async def test_two_gateways_on_one_redis_share_the_count(
    redis_server: RedisServer, clock: FrozenClock
) -> None:
    """Replicas or workers: N gateways do not give an attacker N times the tries."""
    prefix = f"t:{uuid.uuid4().hex}:"
    one = RedisHotState.from_url(redis_server.url, prefix=prefix, clock=clock)
    two = RedisHotState.from_url(redis_server.url, prefix=prefix, clock=clock)
    await one.begin()
    try:
        first = LoginThrottle(one, per_name=4, per_address=100, window=60)
        second = LoginThrottle(two, per_name=4, per_address=100, window=60)
        guesses = [first.attempt("alice", f"10.0.0.{i}") for i in range(5)]
        guesses += [second.attempt("alice", f"10.0.1.{i}") for i in range(5)]
        results = await asyncio.gather(*guesses)
        assert sum(results) == 4
    finally:
        await one.close()
        await two.close()


async def test_an_unavailable_hot_state_refuses_rather_than_lets_through(
    clock: FrozenClock,
) -> None:
    with RedisServer() as gone:
        url = gone.url
    dead = RedisHotState.from_url(url, prefix="t:", clock=clock, timeout=0.2)
    try:
        limits = LoginThrottle(dead, per_name=3, per_address=3, window=60)
        with pytest.raises(StoreUnavailableError):
            await limits.attempt("alice", "10.0.0.1")
    finally:
        await dead.close()


async def test_keys_are_fixed_size_whatever_the_input(hot: HotState) -> None:
    limits = LoginThrottle(hot, per_name=1, per_address=100, window=60)
    long_name = "x" * 10_000 + "\n\x00:"
    assert await limits.attempt(long_name, "::1")
    assert not await limits.attempt(long_name, "::2")
