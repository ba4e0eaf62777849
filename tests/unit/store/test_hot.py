"""Hot ephemeral state: nonces, counters, marks, token buckets, sliding windows, totals."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.store.hot import MAX_LABELS, Bucket, HotState, MemoryHotState
from ztgate.testing import FrozenClock

from .conftest import HotStates

# Every test that takes `hot` or `hot_states` runs against both implementations,
# the in-process one and Redis with the test's frozen clock (see conftest.py);
# those that look at the in-process implementation's memory take `memory`.


# -- remember_once ---------------------------------------------------------------------------


async def test_remember_once_is_true_only_the_first_time(hot: HotState) -> None:
    assert await hot.remember_once("nonce-1", 60) is True
    assert await hot.remember_once("nonce-1", 60) is False
    assert await hot.remember_once("nonce-2", 60) is True


async def test_remember_once_forgets_after_the_ttl(hot: HotState, clock: FrozenClock) -> None:
    assert await hot.remember_once("nonce", 10)
    clock.advance(9.999)
    assert not await hot.remember_once("nonce", 10)
    clock.advance(0.001)  # exactly ttl seconds later: expired
    assert await hot.remember_once("nonce", 10)


async def test_a_second_remember_does_not_extend_the_ttl(hot: HotState, clock: FrozenClock) -> None:
    assert await hot.remember_once("nonce", 10)
    clock.advance(5)
    assert not await hot.remember_once("nonce", 100)
    clock.advance(5)
    assert await hot.remember_once("nonce", 10)


# -- incr ------------------------------------------------------------------------------------


async def test_incr_counts_within_a_window(hot: HotState, clock: FrozenClock) -> None:
    assert await hot.incr("calls:a", 1, 60) == 1
    clock.advance(30)
    assert await hot.incr("calls:a", 1, 60) == 2
    assert await hot.incr("calls:a", 5, 60) == 7
    assert await hot.incr("calls:b", 1, 60) == 1


async def test_incr_window_is_fixed_from_creation(hot: HotState, clock: FrozenClock) -> None:
    await hot.incr("k", 1, 10)
    clock.advance(9)
    assert await hot.incr("k", 1, 10) == 2  # does not push the window out
    clock.advance(1)
    assert await hot.incr("k", 1, 10) == 1  # a new window


async def test_incr_after_expiry_starts_from_zero(hot: HotState, clock: FrozenClock) -> None:
    assert await hot.incr("k", 3, 1) == 3
    clock.advance(100)
    assert await hot.incr("k", 2, 1) == 2


async def test_incr_by_a_negative_amount(hot: HotState) -> None:
    assert await hot.incr("budget", 10, 60) == 10
    assert await hot.incr("budget", -4, 60) == 6


# -- marks -----------------------------------------------------------------------------------


async def test_mark_and_unmark(hot: HotState) -> None:
    assert not await hot.is_marked("revoked:agent-1")
    await hot.mark("revoked:agent-1", 60)
    assert await hot.is_marked("revoked:agent-1")
    assert not await hot.is_marked("revoked:agent-2")
    await hot.unmark("revoked:agent-1")
    assert not await hot.is_marked("revoked:agent-1")


async def test_unmark_of_an_unknown_key_is_harmless(hot: HotState) -> None:
    await hot.unmark("never-set")
    assert not await hot.is_marked("never-set")


async def test_mark_expires(hot: HotState, clock: FrozenClock) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4.9)
    assert await hot.is_marked("suspended")
    clock.advance(0.1)
    assert not await hot.is_marked("suspended")


async def test_marking_again_extends_the_mark(hot: HotState, clock: FrozenClock) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4)
    await hot.mark("suspended", 5)
    clock.advance(4)
    assert await hot.is_marked("suspended")
    clock.advance(1)
    assert not await hot.is_marked("suspended")


async def test_a_stale_sweep_entry_does_not_clear_a_renewed_mark(
    hot: HotState, clock: FrozenClock
) -> None:
    await hot.mark("suspended", 5)
    clock.advance(4)
    await hot.mark("suspended", 100)
    clock.advance(2)  # the first mark's expiry has passed
    await hot.mark("other", 1)  # a write sweeps
    assert await hot.is_marked("suspended")


async def test_unmark_clears_a_counter(hot: HotState) -> None:
    assert await hot.incr("k", 5, 60) == 5
    await hot.unmark("k")
    assert await hot.incr("k", 1, 60) == 1


async def test_a_clock_jump_expires_everything(hot: HotState, clock: FrozenClock) -> None:
    await hot.mark("a", 10)
    await hot.remember_once("b", 10)
    await hot.incr("c", 1, 10)
    clock.set(clock.now() + 3600)
    assert not await hot.is_marked("a")
    assert await hot.remember_once("b", 10)
    assert await hot.incr("c", 1, 10) == 1


# -- memory ----------------------------------------------------------------------------------


async def test_len_counts_live_entries(memory: MemoryHotState, clock: FrozenClock) -> None:
    await memory.mark("short", 1)
    await memory.mark("long", 100)
    await memory.incr("counter", 1, 100)
    assert len(memory) == 3
    clock.advance(1)  # "short" has expired but nothing has swept it yet
    assert len(memory) == 2
    assert len(memory) == 2


async def test_len_is_zero_when_everything_expired(
    memory: MemoryHotState, clock: FrozenClock
) -> None:
    for i in range(20):
        await memory.mark(f"k{i}", 1)
    clock.advance(5)
    assert len(memory) == 0


async def test_writes_sweep_expired_entries(memory: MemoryHotState, clock: FrozenClock) -> None:
    """Entries nobody reads again are still reclaimed, a few per write."""
    for i in range(1000):
        await memory.remember_once(f"old-{i}", 1)
    clock.advance(2)
    for i in range(200):
        await memory.remember_once(f"new-{i}", 3600)
    assert len(memory._expiry) == 200
    assert len(memory._heap) == 200


async def test_steady_traffic_keeps_memory_proportional_to_live_entries(
    memory: MemoryHotState, clock: FrozenClock
) -> None:
    for i in range(20_000):
        await memory.remember_once(f"nonce-{i}", 10)
        clock.advance(0.01)  # 1000 live at any time
    assert len(memory._expiry) <= 1010
    assert len(memory._heap) <= 1010


async def test_renewing_one_mark_does_not_grow_memory(
    memory: MemoryHotState, clock: FrozenClock
) -> None:
    """One live entry, renewed often (a suspension refreshed on every call), stays one entry."""
    for _ in range(10_000):
        await memory.mark("suspended:agent-1", 3600)
        clock.advance(0.01)
    assert await memory.is_marked("suspended:agent-1")
    assert len(memory._expiry) == 1
    assert len(memory._heap) <= 100


# -- take: token buckets ------------------------------------------------------------------------


def bucket(key: str = "b", rate: float = 2.0, burst: float = 4.0) -> Bucket:
    return Bucket(key, rate, burst)


async def test_a_bucket_starts_full_and_refuses_once_empty(hot: HotState) -> None:
    for _ in range(4):
        assert await hot.take([bucket()]) == (0.0, None)
    wait, key = await hot.take([bucket()])
    assert key == "b"
    assert wait == pytest.approx(0.5)  # one token at 2 a second


async def test_a_bucket_refills_at_its_rate_up_to_its_burst(
    hot: HotState, clock: FrozenClock
) -> None:
    for _ in range(4):
        await hot.take([bucket()])
    clock.advance(0.5)
    assert await hot.take([bucket()]) == (0.0, None)
    assert (await hot.take([bucket()]))[1] == "b"
    clock.advance(3600)  # a long pause fills it to its burst, no more
    for _ in range(4):
        assert await hot.take([bucket()]) == (0.0, None)
    assert (await hot.take([bucket()]))[1] == "b"


async def test_a_wall_clock_jump_forward_mints_no_tokens(hot: HotState, clock: FrozenClock) -> None:
    for _ in range(4):
        await hot.take([bucket()])
    clock.set(clock.now() + 86400)  # NTP or an operator moves the wall clock a day ahead
    wait, key = await hot.take([bucket()])
    assert key == "b" and wait == pytest.approx(0.5)
    clock.advance(0.5)
    assert await hot.take([bucket()]) == (0.0, None)
    assert (await hot.take([bucket()]))[1] == "b"


async def test_a_wall_clock_jump_backwards_neither_drains_nor_freezes_a_bucket(
    hot: HotState, clock: FrozenClock
) -> None:
    for _ in range(4):
        await hot.take([bucket()])
    clock.set(clock.now() - 86400)
    clock.advance(1.0)  # one real second: two tokens, as if nothing happened
    assert await hot.take([bucket()]) == (0.0, None)
    assert await hot.take([bucket()]) == (0.0, None)
    wait, _ = await hot.take([bucket()])
    assert wait == pytest.approx(0.5)


async def test_wall_clock_jumps_around_a_refill_change_nothing(
    hot: HotState, clock: FrozenClock
) -> None:
    """Back and forth while a bucket refills: only monotonic time counts."""
    for _ in range(4):
        await hot.take([bucket()])
    for jump in (3600.0, -7200.0, 10.0, -0.25, 1e6):
        clock.set(clock.now() + jump)
        clock.advance(0.1)
    # 0.5 s of real time: one token.
    assert await hot.take([bucket()]) == (0.0, None)
    assert (await hot.take([bucket()]))[1] == "b"


class BackwardsMonotonic(FrozenClock):
    """A broken monotonic clock that steps back."""

    def step_back(self, seconds: float) -> None:
        self._monotonic -= seconds


async def test_a_monotonic_clock_that_steps_back_does_not_drain_a_bucket(
    hot_states: HotStates,
) -> None:
    clock = BackwardsMonotonic()
    hot = await hot_states.make(clock)
    await hot.take([bucket()])  # three left
    clock.step_back(100)
    for _ in range(3):
        assert await hot.take([bucket()]) == (0.0, None)
    assert (await hot.take([bucket()]))[1] == "b"


async def test_take_is_all_or_none(hot: HotState) -> None:
    small = bucket("small", rate=1, burst=1)
    big = bucket("big", rate=1, burst=10)
    assert await hot.take([small, big]) == (0.0, None)
    wait, key = await hot.take([small, big])
    assert key == "small" and wait == pytest.approx(1.0)
    # The refused call took nothing from the big bucket: nine are left.
    for _ in range(9):
        assert await hot.take([big]) == (0.0, None)
    assert (await hot.take([big]))[1] == "big"


async def test_take_names_the_bucket_that_refills_last(hot: HotState) -> None:
    fast = bucket("fast", rate=10, burst=1)
    slow = bucket("slow", rate=0.1, burst=1)
    await hot.take([fast, slow])
    wait, key = await hot.take([fast, slow])
    assert key == "slow" and wait == pytest.approx(10.0)


async def test_a_cost_above_the_burst_can_never_be_taken(hot: HotState) -> None:
    wait, key = await hot.take([bucket(burst=2)], cost=3)
    assert key == "b" and wait == float("inf")


async def test_full_buckets_are_dropped_from_memory(
    memory: MemoryHotState, clock: FrozenClock
) -> None:
    """A bucket that has refilled is the same as none: idle ones are swept."""
    for i in range(500):
        await memory.take([bucket(f"agent-{i}")])
    clock.advance(10)  # every one full again
    for i in range(100):
        await memory.take([bucket(f"other-{i}")])
    # Each write sweeps a few idle entries: 100 writes reclaim the 500 idle ones.
    assert set(memory._buckets) == {f"other-{i}" for i in range(100)}


async def test_a_changed_burst_caps_the_tokens_left(hot: HotState) -> None:
    await hot.take([bucket(burst=10)])
    assert await hot.take([bucket(burst=1)]) == (0.0, None)
    assert (await hot.take([bucket(burst=1)]))[1] == "b"


# -- hit: sliding windows -----------------------------------------------------------------------


async def test_hit_counts_the_events_of_the_last_window(hot: HotState, clock: FrozenClock) -> None:
    assert await hot.hit("w", 1.0, 100) == 1
    clock.advance(0.5)
    assert await hot.hit("w", 1.0, 100) == 2
    clock.advance(0.5)  # the first event is now exactly one window old: out
    assert await hot.hit("w", 1.0, 100) == 2
    clock.advance(5)
    assert await hot.hit("w", 1.0, 100) == 1


async def test_hit_keeps_at_most_cap_events(hot: HotState) -> None:
    counts = [await hot.hit("w", 60, 3) for _ in range(10)]
    assert counts == [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]


async def test_a_window_holds_at_most_cap_events(memory: MemoryHotState) -> None:
    for _ in range(10):
        await memory.hit("w", 60, 3)
    assert len(memory._windows["w"]) == 3


async def test_hit_ignores_wall_clock_jumps(hot: HotState, clock: FrozenClock) -> None:
    await hot.hit("w", 10, 100)
    clock.set(clock.now() + 3600)  # forward: the window does not empty
    assert await hot.hit("w", 10, 100) == 2
    clock.set(clock.now() - 7200)  # back: it does not stretch either
    clock.advance(10)
    assert await hot.hit("w", 10, 100) == 1


async def test_idle_windows_are_dropped_from_memory(
    memory: MemoryHotState, clock: FrozenClock
) -> None:
    for i in range(500):
        await memory.hit(f"w-{i}", 1, 10)
    clock.advance(2)
    for i in range(100):
        await memory.hit(f"new-{i}", 1, 10)
    assert set(memory._windows) == {f"new-{i}" for i in range(100)}
    assert len(memory._idle) == 100


# -- charge / seed: totals within limits ------------------------------------------------------


async def test_charge_adds_within_the_limits(hot: HotState) -> None:
    assert await hot.charge("t", (1, 5.0), (3, 12.0), 60) == (True, (1.0, 5.0))
    assert await hot.charge("t", (1, 5.0), (3, 12.0), 60) == (True, (2.0, 10.0))
    # The spend would pass 12: refused, nothing added.
    assert await hot.charge("t", (1, 5.0), (3, 12.0), 60) == (False, (2.0, 10.0))
    assert await hot.charge("t", (1, 2.0), (3, 12.0), 60) == (True, (3.0, 12.0))
    assert await hot.charge("t", (1, 0.0), (3, 12.0), 60) == (False, (3.0, 12.0))


async def test_charge_without_limits_and_giving_back(hot: HotState) -> None:
    await hot.charge("t", (1, 5.0), (None, None), 60)
    assert await hot.charge("t", (-1, -5.0), (1, 0.0), 60) == (True, (0.0, 0.0))


async def test_an_infinite_limit_is_no_limit(hot: HotState) -> None:
    assert await hot.charge("t", (1, 1e300), (float("inf"), float("inf")), 60) == (
        True,
        (1.0, 1e300),
    )


async def test_a_zero_amount_passes_a_limit_already_reached(hot: HotState) -> None:
    await hot.charge("t", (1, 10.0), (None, 10.0), 60)
    assert await hot.charge("t", (1, 0.0), (None, 10.0), 60) == (True, (2.0, 10.0))


async def test_totals_expire_after_their_ttl(hot: HotState, clock: FrozenClock) -> None:
    await hot.charge("t", (1, 1.0), (None, None), 10)
    clock.advance(5)
    assert await hot.charge("t", (1, 1.0), (None, None), 10) == (True, (2.0, 2.0))
    clock.advance(5)
    assert await hot.charge("t", (1, 1.0), (None, None), 10) == (True, (1.0, 1.0))


async def test_seed_sets_totals_only_when_there_are_none(hot: HotState) -> None:
    assert await hot.seed("t", (7, 70.0), 60) is True
    assert await hot.seed("t", (1, 1.0), 60) is False
    assert await hot.charge("t", (1, 1.0), (8, None), 60) == (True, (8.0, 71.0))
    assert (await hot.charge("t", (1, 1.0), (8, None), 60))[0] is False


async def test_forget_deletes_any_kind_of_entry(hot: HotState) -> None:
    await hot.take([bucket("k", rate=1, burst=1)])
    await hot.hit("k", 60, 5)
    await hot.charge("k", (1,), (None,), 60)
    await hot.forget("k")
    assert await hot.take([bucket("k", rate=1, burst=1)]) == (0.0, None)
    await hot.forget("k")
    assert await hot.hit("k", 60, 5) == 1
    assert await hot.charge("k", (1,), (1,), 60) == (True, (1.0,))
    await hot.mark("flag", 60)
    await hot.forget("flag")
    assert not await hot.is_marked("flag")


# -- note / notes ------------------------------------------------------------------------------


async def test_notes_keep_every_label_of_a_field(hot: HotState) -> None:
    await hot.note("map", {"a": "tool1", "b": "tool1"}, 60, 100)
    await hot.note("map", {"a": "tool2"}, 60, 100)

    assert await hot.notes("map", ["a", "b", "c"]) == [
        frozenset({"tool1", "tool2"}),
        frozenset({"tool1"}),
        frozenset(),
    ]
    assert await hot.notes("other", ["a"]) == [frozenset()]


async def test_notes_expire_ttl_after_the_last_note(hot: HotState, clock: FrozenClock) -> None:
    await hot.note("map", {"a": "t"}, 10, 100)
    clock.advance(8)
    await hot.note("map", {"b": "t"}, 10, 100)
    clock.advance(8)
    assert await hot.notes("map", ["a", "b"]) == [frozenset({"t"}), frozenset({"t"})]
    clock.advance(2)
    assert await hot.notes("map", ["a", "b"]) == [frozenset(), frozenset()]
    await hot.note("map", {"c": "t"}, 10, 100)  # a new map, not the old one revived
    assert await hot.notes("map", ["a", "c"]) == [frozenset(), frozenset({"t"})]


async def test_notes_are_bounded_in_fields_and_labels(hot: HotState) -> None:
    from ztgate.store.hot import MAX_LABELS

    await hot.note("map", {f"f{i}": "t" for i in range(10)}, 60, 4)
    found = await hot.notes("map", [f"f{i}" for i in range(10)])
    assert sum(1 for labels in found if labels) == 4
    for i in range(MAX_LABELS + 5):
        await hot.note("map", {"f0": f"tool{i}"}, 60, 4)
    assert len((await hot.notes("map", ["f0"]))[0]) == MAX_LABELS


async def test_forget_drops_notes(hot: HotState) -> None:
    await hot.note("map", {"a": "t"}, 60, 10)
    await hot.forget("map")
    assert await hot.notes("map", ["a"]) == [frozenset()]


# -- the in-process notes as the documented model -----------------------------------------

_NOTE = st.tuples(
    st.sampled_from(["m1", "m2"]),
    st.dictionaries(st.sampled_from([f"f{i}" for i in range(6)]), st.sampled_from("abcdefghijk")),
    st.integers(min_value=0, max_value=5),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_NOTE, max_size=40))
def test_memory_notes_are_the_model(ops: list[tuple[str, dict[str, str], int]]) -> None:
    """Each field keeps its distinct labels, at most MAX_LABELS, in at most `cap` fields.

    A label noted again takes no room (a version counting repeats would
    refuse the ninth distinct label), a full map takes no new field.
    """
    hot = MemoryHotState(FrozenClock())
    model: dict[str, dict[str, set[str]]] = {}

    async def run() -> None:
        for key, entries, cap in ops:
            await hot.note(key, entries, 60, cap)
            noted = model.setdefault(key, {})
            for name, label in entries.items():
                if name not in noted:
                    if len(noted) < cap:
                        noted[name] = {label}
                elif len(noted[name]) < MAX_LABELS:
                    noted[name].add(label)
            fields = [f"f{i}" for i in range(6)]
            for name in ("m1", "m2"):
                expected = [frozenset(model.get(name, {}).get(f, ())) for f in fields]
                assert await hot.notes(name, fields) == expected

    asyncio.run(run())


async def test_a_label_noted_again_takes_no_room(hot: HotState) -> None:
    """Eight notes of one label, then others: the field has room for seven more."""
    for _ in range(MAX_LABELS):
        await hot.note("map", {"f": "same"}, 60, 10)
    for i in range(MAX_LABELS):
        await hot.note("map", {"f": f"tool{i}"}, 60, 10)
    found = (await hot.notes("map", ["f"]))[0]
    assert "same" in found
    assert len(found) == MAX_LABELS
