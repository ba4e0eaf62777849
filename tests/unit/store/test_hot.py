"""Hot ephemeral state: nonces, windowed counters and marks, all expiring."""

from __future__ import annotations

import pytest

from ztgate.store.hot import MemoryHotState
from ztgate.testing import FrozenClock


@pytest.fixture
def hot(clock: FrozenClock) -> MemoryHotState:
    return MemoryHotState(clock)


# -- remember_once ---------------------------------------------------------------------------


async def test_remember_once_is_true_only_the_first_time(hot: MemoryHotState) -> None:
    assert await hot.remember_once("nonce-1", 60) is True
    assert await hot.remember_once("nonce-1", 60) is False
    assert await hot.remember_once("nonce-2", 60) is True


async def test_remember_once_forgets_after_the_ttl(hot: MemoryHotState, clock: FrozenClock) -> None:
    assert await hot.remember_once("nonce", 10)
    clock.advance(9.999)
    assert not await hot.remember_once("nonce", 10)
    clock.advance(0.001)  # exactly ttl seconds later: expired
    assert await hot.remember_once("nonce", 10)


async def test_a_second_remember_does_not_extend_the_ttl(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    assert await hot.remember_once("nonce", 10)
    clock.advance(5)
    assert not await hot.remember_once("nonce", 100)
    clock.advance(5)
    assert await hot.remember_once("nonce", 10)


# -- incr ------------------------------------------------------------------------------------


async def test_incr_counts_within_a_window(hot: MemoryHotState, clock: FrozenClock) -> None:
    assert await hot.incr("calls:a", 1, 60) == 1
    clock.advance(30)
    assert await hot.incr("calls:a", 1, 60) == 2
    assert await hot.incr("calls:a", 5, 60) == 7
    assert await hot.incr("calls:b", 1, 60) == 1


async def test_incr_window_is_fixed_from_creation(hot: MemoryHotState, clock: FrozenClock) -> None:
    await hot.incr("k", 1, 10)
    clock.advance(9)
    assert await hot.incr("k", 1, 10) == 2  # does not push the window out
    clock.advance(1)
    assert await hot.incr("k", 1, 10) == 1  # a new window


async def test_incr_after_expiry_starts_from_zero(hot: MemoryHotState, clock: FrozenClock) -> None:
    assert await hot.incr("k", 3, 1) == 3
    clock.advance(100)
    assert await hot.incr("k", 2, 1) == 2


async def test_incr_by_a_negative_amount(hot: MemoryHotState) -> None:
    assert await hot.incr("budget", 10, 60) == 10
    assert await hot.incr("budget", -4, 60) == 6


# -- marks -----------------------------------------------------------------------------------


async def test_mark_and_unmark(hot: MemoryHotState) -> None:
    assert not await hot.is_marked("revoked:agent-1")
    await hot.mark("revoked:agent-1", 60)
    assert await hot.is_marked("revoked:agent-1")
    assert not await hot.is_marked("revoked:agent-2")
    await hot.unmark("revoked:agent-1")
    assert not await hot.is_marked("revoked:agent-1")


async def test_unmark_of_an_unknown_key_is_harmless(hot: MemoryHotState) -> None:
    await hot.unmark("never-set")
    assert not await hot.is_marked("never-set")


async def test_mark_expires(hot: MemoryHotState, clock: FrozenClock) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4.9)
    assert await hot.is_marked("suspended")
    clock.advance(0.1)
    assert not await hot.is_marked("suspended")


async def test_marking_again_extends_the_mark(hot: MemoryHotState, clock: FrozenClock) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4)
    await hot.mark("suspended", 5)
    clock.advance(4)
    assert await hot.is_marked("suspended")
    clock.advance(1)
    assert not await hot.is_marked("suspended")


async def test_a_stale_sweep_entry_does_not_clear_a_renewed_mark(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4)
    await hot.mark("suspended", 100)
    clock.advance(2)  # the first mark's expiry has passed
    await hot.mark("other", 1)  # a write sweeps
    assert await hot.is_marked("suspended")


async def test_unmark_clears_a_counter(hot: MemoryHotState) -> None:
    assert await hot.incr("k", 5, 60) == 5
    await hot.unmark("k")
    assert await hot.incr("k", 1, 60) == 1


async def test_a_clock_jump_expires_everything(hot: MemoryHotState, clock: FrozenClock) -> None:
    await hot.mark("a", 10)
    await hot.remember_once("b", 10)
    await hot.incr("c", 1, 10)
    clock.set(clock.now() + 3600)
    assert not await hot.is_marked("a")
    assert await hot.remember_once("b", 10)
    assert await hot.incr("c", 1, 10) == 1


# -- memory ----------------------------------------------------------------------------------


async def test_len_counts_live_entries(hot: MemoryHotState, clock: FrozenClock) -> None:
    await hot.mark("short", 1)
    await hot.mark("long", 100)
    await hot.incr("counter", 1, 100)
    assert len(hot) == 3
    clock.advance(1)  # "short" has expired but nothing has swept it yet
    assert len(hot) == 2
    assert len(hot) == 2


async def test_len_is_zero_when_everything_expired(hot: MemoryHotState, clock: FrozenClock) -> None:
    for i in range(20):
        await hot.mark(f"k{i}", 1)
    clock.advance(5)
    assert len(hot) == 0


async def test_writes_sweep_expired_entries(hot: MemoryHotState, clock: FrozenClock) -> None:
    """Entries nobody reads again are still reclaimed, a few per write."""
    for i in range(1000):
        await hot.remember_once(f"old-{i}", 1)
    clock.advance(2)
    for i in range(200):
        await hot.remember_once(f"new-{i}", 3600)
    assert len(hot._expiry) == 200
    assert len(hot._heap) == 200


async def test_steady_traffic_keeps_memory_proportional_to_live_entries(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    for i in range(20_000):
        await hot.remember_once(f"nonce-{i}", 10)
        clock.advance(0.01)  # 1000 live at any time
    assert len(hot._expiry) <= 1010
    assert len(hot._heap) <= 1010


async def test_renewing_one_mark_does_not_grow_memory(
    hot: MemoryHotState, clock: FrozenClock
) -> None:
    """One live entry, renewed often (a suspension refreshed on every call), stays one entry."""
    for _ in range(10_000):
        await hot.mark("suspended:agent-1", 3600)
        clock.advance(0.01)
    assert await hot.is_marked("suspended:agent-1")
    assert len(hot._expiry) == 1
    assert len(hot._heap) <= 100
