"""The hot-state implementations, for one suite run against each.

`hot` is parametrised: "memory" is `MemoryHotState`, "redis" a `RedisHotState`
on this test process's own redis-server (`redis_server`), with a key prefix of
its own per test and the test's frozen clock passed into the scripts, so
that tests move time with `clock.advance` for both. The server's own `TIME`
(what the gateway uses) is tested in test_hot_redis.py with real, short TTLs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from ztgate.clock import Clock
from ztgate.store.hot import HotState, MemoryHotState
from ztgate.store.hot_redis import RedisHotState
from ztgate.store.redis_server import RedisServer
from ztgate.testing import FrozenClock


class HotStates:
    """Makes hot states of one kind; closes the Redis ones at the end of the test."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self._request = request
        self._opened: list[RedisHotState] = []
        self.prefix = f"test:{uuid.uuid4().hex}:"

    async def make(self, clock: Clock | None) -> HotState:
        """A hot state on `clock` (Redis: None uses the server's TIME); all share one prefix."""
        if self.kind == "memory":
            assert clock is not None
            return MemoryHotState(clock)
        server: RedisServer = self._request.getfixturevalue("redis_server")
        hot = RedisHotState.from_url(server.url, prefix=self.prefix, clock=clock, timeout=2.0)
        self._opened.append(hot)
        await hot.begin()
        return hot

    async def close(self) -> None:
        """Close what `make` opened."""
        for hot in self._opened:
            await hot.close()


@pytest.fixture(params=["memory", "redis"])
async def hot_states(request: pytest.FixtureRequest) -> AsyncIterator[HotStates]:
    """A maker of hot states of each kind."""
    states = HotStates(request.param, request)
    yield states
    await states.close()


@pytest.fixture
async def hot(hot_states: HotStates, clock: FrozenClock) -> HotState:
    """A hot state of each kind on the test's frozen clock."""
    return await hot_states.make(clock)


@pytest.fixture
def memory(clock: FrozenClock) -> MemoryHotState:
    """The in-process hot state, for tests of its memory use."""
    return MemoryHotState(clock)
