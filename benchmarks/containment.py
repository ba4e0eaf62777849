"""What containment costs per call: the kill switch, burst, rate, loop and budget checks.

In-process, with the checks built from settings exactly as `ztgate serve`
builds them (`Containment`), over the in-process hot state: rate limits per
agent, per task and per tool (three buckets a call), burst detection, loop
detection, a task with a call budget and a priced tool. Every call is a new
one (its own arguments), none is refused: the common case. Medians and p99
over many calls, best of several rounds, one core.

- each check alone;
- all of them together as they sit in the chain (`halt`, then `limits`
  running burst, rate, loop and budget), called in sequence: the checks' own
  cost, with the budget's deferred effect settled;
- the same through `Pipeline.decide`, which adds the pipeline's per-check
  timeout and bookkeeping (the event loop runs between calls, as it does
  between requests, so cancelled timers are cleaned up).

    python benchmarks/containment.py [--rounds 5] [--n 5000]

Writes benchmarks/results/containment.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from _harness import ROOT, machine
from rich.console import Console
from rich.table import Table

from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.containment.budget import TaskBudget
from ztgate.containment.service import Containment
from ztgate.models import Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext, Check, Pipeline
from ztgate.store.database import Database
from ztgate.store.hot import MemoryHotState
from ztgate.testing import make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import ToolLimits

AGENT = "spiffe://ztgate.local/agent/bench"
TASK = "01bench0000000000000000000000000"
TOOL = make_tool(
    "send_payment", limits=ToolLimits(rate_per_second=1000, burst=10**6, cost_argument="/amount")
)
# Limits that never refuse here, at a realistic refill rate.
FAST = {"rate_per_second": 1000.0, "burst": 1_000_000}


class Idle:
    """A check that allows at once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.verdict = Verdict(name, Outcome.ALLOW)

    async def __call__(self, call: ToolCall, ctx: CallContext) -> Verdict:
        return self.verdict


class Calls:
    """New calls (each with its own arguments) for one measurement, made beforehand."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.made: list[ToolCall] = []
        self.first = 0

    def prepare(self, first: int) -> None:
        """Make the calls numbered `first` to `first + size`, dropping the previous ones."""
        self.made = []
        gc.collect()
        self.first = first
        self.made = [
            make_call(TOOL.name, {"to": "ops@acme.example", "amount": 42, "n": i}, call_id=str(i))
            for i in range(first, first + self.size)
        ]

    def __getitem__(self, index: int) -> ToolCall:
        return self.made[index - self.first]


async def measure(
    step: Callable[[int], Awaitable[Any]], n: int, rounds: int
) -> tuple[float, float]:
    """Median and p99 seconds of `step(i)` over `n` calls, best round by median."""
    gc.collect()
    best: list[float] = []
    offset = 0
    for _ in range(rounds):
        samples = []
        for i in range(n):
            started = time.perf_counter()
            await step(offset + i)
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(0)  # as between requests: the loop runs its housekeeping
        offset += n
        if not best or statistics.median(samples) < statistics.median(best):
            best = samples
    best.sort()
    return statistics.median(best), best[int(len(best) * 0.99)]


async def run(workdir: Path, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    settings = Settings(
        gateway={"authentication": "required"},
        limits={
            "agent": FAST,
            "task": FAST,
            "tool": FAST,
            "burst_calls_per_second": 1e6,
            "loop_max_repeats": 10,
            "loop_window_seconds": 300,
            "usage_flush_seconds": 60,
        },
    )
    database = Database(f"sqlite:///{workdir / 'ztgate.db'}")
    database.migrate()
    clock = SystemClock()
    containment = Containment(settings, database, clock, MemoryHotState(clock))
    await containment.start()
    containment.budgets.snapshot = MappingProxyType(
        {TASK: TaskBudget(10**9, 1e15, clock.now() + 86400)}
    )
    entry = Catalog([TOOL]).get(TOOL.name)
    calls = Calls(n * rounds)
    facts = {"principal.spiffe_id": AGENT, "task.id": TASK, "warrant.delegated_by": []}

    def context() -> CallContext:
        return CallContext(clock, tool=entry, facts=dict(facts))

    chain: list[Check] = containment.checks()  # halt, limits (burst, rate, loop, budget)
    figures: dict[str, tuple[float, float]] = {}
    base = 0
    for check in [containment.halt, *containment.limits.checks]:

        async def alone(i: int, check: Check = check) -> None:
            ctx = context()
            verdict = await check(calls[i], ctx)
            assert verdict.outcome is Outcome.ALLOW, verdict.reason
            await ctx.settle(Outcome.ALLOW)

        calls.prepare(base)
        figures[f"{check.name} alone"] = await measure(
            lambda i, first=base: alone(first + i), n, rounds
        )
        base += n * rounds

    async def together(i: int) -> None:
        ctx = context()
        call = calls[i]
        for check in chain:
            verdict = await check(call, ctx)
            assert verdict.outcome is Outcome.ALLOW, verdict.reason
            ctx.facts.update(verdict.facts)
        await ctx.settle(Outcome.ALLOW)

    calls.prepare(base)
    figures["all of them (halt, limits), in sequence"] = await measure(
        lambda i: together(base + i), n, rounds
    )
    base += n * rounds
    pipeline = Pipeline(chain, check_timeout=settings.gateway.check_timeout_seconds)

    async def decided(i: int) -> None:
        ctx = context()
        decision = await pipeline.decide(calls[i], ctx)
        assert decision.outcome is Outcome.ALLOW
        await ctx.settle(decision.outcome)

    calls.prepare(base)
    figures["all of them, through Pipeline.decide"] = await measure(
        lambda i: decided(base + i), n, rounds
    )
    base += n * rounds
    # The pipeline's own cost for two entries, whatever they are: what any check pays.
    idle = Pipeline([Idle("a"), Idle("b")], check_timeout=settings.gateway.check_timeout_seconds)

    async def idle_decided(i: int) -> None:
        await idle.decide(calls[i], context())

    calls.prepare(base)
    figures["Pipeline.decide over two checks that do nothing (baseline)"] = await measure(
        lambda i: idle_decided(base + i), n, rounds
    )
    base += n * rounds
    # What the halt check costs once something is held (a lookup more).
    await asyncio.to_thread(
        containment.registry.kill, "agent", "spiffe://ztgate.local/agent/other", actor="bench"
    )
    containment.reload_holds()
    calls.prepare(base)
    figures["halt alone, another agent killed"] = await measure(
        lambda i: containment.halt(calls[base + i], context()), n, rounds
    )
    await containment.stop()
    database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=5000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ztgate-containmentbench-") as scratch:
        figures = asyncio.run(run(Path(scratch), options.n, options.rounds))
    table = Table("operation", "median µs", "p99 µs", title=f"containment ({machine()})")
    lines = [f"Machine: {machine()}.", "", "| operation | median µs | p99 µs |", "|---|---|---|"]
    for name, (median, p99) in figures.items():
        table.add_row(name, f"{median * 1e6:.1f}", f"{p99 * 1e6:.1f}")
        lines.append(f"| {name} | {median * 1e6:.1f} | {p99 * 1e6:.1f} |")
    Console().print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "containment.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "us": {k: {"median": m * 1e6, "p99": p * 1e6} for k, (m, p) in figures.items()},
            },
            indent=2,
        )
    )
    (out / "containment.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
