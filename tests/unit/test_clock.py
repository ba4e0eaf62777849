"""Injected time: the real clock, and RFC 3339 timestamps."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.clock import SystemClock, isoformat


def test_system_clock_reads_the_wall_clock() -> None:
    before = time.time()
    now = SystemClock().now()
    after = time.time()
    assert before <= now <= after


def test_system_clock_monotonic_reads_time_monotonic() -> None:
    clock = SystemClock()
    before = time.monotonic()
    first = clock.monotonic()
    second = clock.monotonic()
    after = time.monotonic()
    assert before <= first <= second <= after


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1_800_000_000.0, "2027-01-15T08:00:00.000000Z"),
        (1_800_000_000.25, "2027-01-15T08:00:00.250000Z"),
        (1_767_225_599.999999, "2025-12-31T23:59:59.999999Z"),
        (951_782_400.0, "2000-02-29T00:00:00.000000Z"),
        (1.5, "1970-01-01T00:00:01.500000Z"),
    ],
)
def test_isoformat_is_utc_with_microseconds(timestamp: float, expected: str) -> None:
    assert isoformat(timestamp) == expected


def test_isoformat_does_not_depend_on_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert isoformat(0.0) == "1970-01-01T00:00:00.000000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@given(st.floats(min_value=-30_000_000_000, max_value=250_000_000_000, allow_nan=False))
def test_isoformat_writes_what_strftime_wrote(timestamp: float) -> None:
    from datetime import UTC, datetime

    expected = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert isoformat(timestamp) == expected
