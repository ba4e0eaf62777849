"""Login throttling per name and per address, within a sliding window."""

from __future__ import annotations

from ztgate.console import throttle
from ztgate.console.throttle import LoginThrottle
from ztgate.testing import FrozenClock


def test_failures_per_name_throttle_that_name_until_the_window_passes() -> None:
    clock = FrozenClock()
    limits = LoginThrottle(clock, per_name=3, per_address=100, window=60)
    for _ in range(3):
        assert limits.retry_after("alice", "10.0.0.1") is None
        limits.failed("alice", "10.0.0.1")
    wait = limits.retry_after("alice", "10.0.0.2")  # another address: the name is throttled
    assert wait is not None and 0 < wait <= 60
    assert limits.retry_after("bob", "10.0.0.1") is None
    clock.advance(61)
    assert limits.retry_after("alice", "10.0.0.1") is None


def test_failures_per_address_throttle_every_name_from_it() -> None:
    clock = FrozenClock()
    limits = LoginThrottle(clock, per_name=100, per_address=2, window=60)
    limits.failed("a", "10.0.0.9")
    limits.failed("b", "10.0.0.9")
    assert limits.retry_after("c", "10.0.0.9") is not None
    assert limits.retry_after("c", "10.0.0.8") is None


def test_success_clears_the_name_and_memory_is_bounded(monkeypatch: object) -> None:
    clock = FrozenClock()
    limits = LoginThrottle(clock, per_name=1, per_address=100, window=60)
    limits.failed("alice", "x")
    assert limits.retry_after("alice", "y") is not None
    limits.succeeded("alice")
    assert limits.retry_after("alice", "y") is None
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(throttle, "MAX_KEYS", 4)
        for index in range(10):
            limits.failed(f"n{index}", "addr")
        assert len(limits._failures) <= 4


def test_a_good_login_gives_back_the_attempt_its_address_counted() -> None:
    clock = FrozenClock()
    throttle = LoginThrottle(clock, per_name=5, per_address=2, window=60)
    for _ in range(5):
        throttle.failed("alice", "10.0.0.1")  # counted before the check ...
        throttle.succeeded("alice", "10.0.0.1")  # ... and given back when it was good
    assert throttle.retry_after("alice", "10.0.0.1") is None
    throttle.failed("bob", "10.0.0.1")
    throttle.failed("bob", "10.0.0.1")
    assert throttle.retry_after("carol", "10.0.0.1") is not None  # bad ones still count
