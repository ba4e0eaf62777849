"""A helper for bad-input tests: scanning time grows linearly with the input."""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds(run: Callable[[], object], repeat: int = 2) -> float:
    """The best of `repeat` timings of `run()`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def assert_linear(scan: Callable[[str], object], unit: str, *, size: int = 64 * 1024) -> None:
    """`scan` over `unit` repeated to `size` and to 16 x `size` characters: time grows ~16x.

    A quadratic scanner grows 256x; the bound (64x, and an absolute ceiling)
    leaves room for a busy machine (the suite runs on every core).
    """
    small = (unit * (size // len(unit) + 1))[:size]
    large = small * 16
    base = seconds(lambda: scan(small), repeat=3)
    grown = seconds(lambda: scan(large), repeat=3)
    assert grown < 5.0, f"{grown:.2f}s for {len(large)} characters of {unit[:20]!r}"
    assert grown < max(64 * base, 0.05), f"{base:.4f}s -> {grown:.4f}s for {unit[:20]!r}"
