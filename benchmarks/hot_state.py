"""What Redis-backed hot state costs against the in-process one: per operation and per call.

- Per operation: each `HotState` operation as the checks use it, in-process
  (`MemoryHotState`) and on a `redis-server` of our own on loopback
  (`RedisHotState`, the server's clock, as `ztgate serve` builds it).
- Per call: a task-scoped call through the gateway's whole chain, built from
  settings as `ztgate serve` builds it (authenticate, warrant, proof, the
  containment limits, guards, policy; then the result checks), one fresh
  proof per call signed beforehand. The hot-state operations one call makes
  are counted (every one is one round trip to Redis).

Medians and p99 over many calls, best of several rounds; the two kinds of
hot state are measured in alternating rounds, so that a busy neighbour
weighs on both alike.

    python benchmarks/hot_state.py [--rounds 5] [--n 2000]

Writes benchmarks/results/hot_state.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import ROOT, machine
from rich.console import Console
from rich.table import Table

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.gateway import Gateway
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.models import Credentials, Outcome, ToolResult
from ztgate.pipeline import CallContext
from ztgate.store.hot import Bucket, HotState, MemoryHotState
from ztgate.store.hot_redis import RedisHotState
from ztgate.store.redis_server import RedisServer
from ztgate.testing import make_call, make_settings
from ztgate.warrants import proof as proofs
from ztgate.warrants.jwk import key_thumbprint, public_jwk

AGENT = "spiffe://ztgate.local/agent/bench"
TOOL = "send_email"
SCOPE = {"tools": {TOOL: {}}}
OPERATIONS = (
    "remember_once",
    "incr",
    "mark",
    "unmark",
    "is_marked",
    "take",
    "hit",
    "charge",
    "seed",
    "forget",
    "note",
    "notes",
)
# Limits that never refuse here: every call is allowed, as most are.
FAST = "{ rate_per_second = 1000000.0, burst = 1000000 }"
CONFIG = f"""
[gateway]
authentication = "required"

[limits]
agent = {FAST}
task = {FAST}
tool = {FAST}
burst_calls_per_second = 1000000.0

[[tools]]
name = "{TOOL}"
url = "http://127.0.0.1:9/send"
risk = "read"
input_schema = {{ type = "object" }}
"""

Samples = list[float]


async def sample(step: Callable[[int], Awaitable[Any]], first: int, n: int) -> Samples:
    """Seconds each of `step(first)` ... `step(first + n - 1)` took."""
    samples = []
    for i in range(first, first + n):
        started = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - started)
    return samples


def best(rounds: list[Samples]) -> tuple[float, float]:
    """Median and p99 of the round with the lowest median."""
    chosen = sorted(min(rounds, key=statistics.median))
    return statistics.median(chosen), chosen[int(len(chosen) * 0.99)]


# -- per operation -------------------------------------------------------------------------------


def operations(hot: HotState) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """One step per operation, on keys like the checks' (a new nonce each time, and so on)."""
    buckets = [Bucket(f"rate:{kind}", 1e6, 1e6) for kind in ("agent", "task", "tool")]
    fields = [f"digest-{i}" for i in range(8)]
    entries = dict.fromkeys(fields, "lookup")
    return {
        "remember_once (a proof's jti)": lambda i: hot.remember_once(f"proof:{i}", 120),
        "incr": lambda i: hot.incr("counter", 1, 60),
        "mark": lambda i: hot.mark(f"mark:{i % 100}", 60),
        "is_marked": lambda i: hot.is_marked(f"mark:{i % 100}"),
        "take (three buckets, all or none)": lambda i: hot.take(buckets),
        "hit (a sliding window of up to 51)": lambda i: hot.hit("burst:agent", 1.0, 51),
        "charge (two totals within limits)": lambda i: hot.charge(
            "usage:task", (1.0, 0.5), (1e12, 1e12), 3600
        ),
        "note (8 fields)": lambda i: hot.note("provenance:task", entries, 3600, 50_000),
        "notes (8 fields)": lambda i: hot.notes("provenance:task", fields),
    }


async def per_operation(url: str, n: int, rounds: int) -> dict[str, dict[str, tuple[float, float]]]:
    clock = SystemClock()
    memory = MemoryHotState(clock)
    redis = RedisHotState.from_url(url, prefix=f"bench:{uuid.uuid4().hex}:", timeout=2.0)
    try:
        await redis.begin()
        steps = {"memory": operations(memory), "redis": operations(redis)}
        collected: dict[str, dict[str, list[Samples]]] = {
            kind: collections.defaultdict(list) for kind in steps
        }
        for round_ in range(rounds):
            for kind, named in steps.items():
                for name, step in named.items():
                    collected[kind][name].append(await sample(step, round_ * n, n))
        return {
            kind: {name: best(samples) for name, samples in found.items()}
            for kind, found in collected.items()
        }
    finally:
        await redis.close()


# -- per call, through the gateway -------------------------------------------------------------


class Counting:
    """Counts the hot-state operations of a gateway (by wrapping its hot state's methods)."""

    def __init__(self, hot: HotState) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        for name in OPERATIONS:
            method = getattr(hot, name)
            setattr(hot, name, self._wrap(name, method))

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Any:
        counts = self.counts

        async def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return await method(*args, **kwargs)

        return counted


class Bench:
    """A gateway built from settings (in-process or Redis hot state) and calls for it."""

    def __init__(self, workdir: Path, hot_state_url: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        store = f'\n[store]\nhot_state_url = "{hot_state_url}"\n' if hot_state_url else ""
        store += f'hot_state_prefix = "bench:{uuid.uuid4().hex}:"\n' if hot_state_url else ""
        self.settings = make_settings(workdir, store + CONFIG)
        self.clock = SystemClock()
        self.database = self.settings.open_database()
        EntryRegistry(self.database, self.clock, "ztgate.local").register(AGENT, ["unix:uid:0"])
        self.gateway = Gateway.from_settings(self.settings)
        self.signed: list[tuple[dict[str, Any], str]] = []

    async def start(self, calls: int) -> None:
        gateway = self.gateway
        await gateway.start()
        assert gateway.warrants is not None
        ca = CertificateAuthority.load(
            self.settings.path(self.settings.identity.ca_dir), self.clock
        )
        svid = ca.issue_x509_svid(AGENT)
        assert svid.private_key is not None
        key = svid.private_key
        task, _, warrant = gateway.warrants.registry.create(
            principal="admin",
            agent=AGENT,
            intent="send the weekly report",
            scope=SCOPE,
            agent_jkt=key_thumbprint(key),
        )
        assert warrant is not None
        gateway.refresh()
        gateway.warrants.changed()
        self.bearer = ca.issue_jwt_svid(AGENT, ["ztgate"], ttl=3600)
        self.warrant = warrant
        jwk = public_jwk(key)
        for i in range(calls):
            arguments = {"to": "ops@acme.example", "subject": f"weekly report {i}"}
            signed = proofs.sign(
                key,
                audience="ztgate",
                task_id=task.id,
                warrant=warrant,
                canonical=canonical_json(arguments),
                tool=TOOL,
                issued_at=time.time(),
                jwk=jwk,
            )
            self.signed.append((arguments, signed))

    async def call(self, i: int) -> None:
        """Decide a call, review its result, settle it: what one allowed call costs the checks."""
        arguments, signed = self.signed[i]
        credentials = Credentials(bearer=self.bearer, warrant=self.warrant, proof=signed)
        call = make_call(TOOL, arguments, call_id=f"call-{i}", credentials=credentials)
        ctx = CallContext(self.clock, tool=self.gateway.catalog.get(TOOL))
        pipeline = self.gateway.pipeline
        decision = await pipeline.decide(call, ctx)
        if decision.outcome is not Outcome.ALLOW:
            raise AssertionError([v.reason for v in decision.verdicts])
        result = ToolResult(status=200, body={"sent": True, "id": i})
        await pipeline.review(call, result, ctx)
        await ctx.settle(Outcome.ALLOW)

    async def stop(self) -> None:
        await self.gateway.stop()
        self.database.dispose()


async def per_call(
    workdir: Path, url: str, n: int, rounds: int
) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]]]:
    benches = {
        "memory": Bench(workdir / "memory", ""),
        "redis": Bench(workdir / "redis", url),
    }
    total = n * rounds + 200
    for bench in benches.values():
        await bench.start(total)
    try:
        counted: dict[str, dict[str, float]] = {}
        for kind, bench in benches.items():
            assert bench.gateway.hot is not None
            counting = Counting(bench.gateway.hot)
            for i in range(100):
                await bench.call(i)
            counted[kind] = {name: count / 100 for name, count in sorted(counting.counts.items())}
        collected: dict[str, list[Samples]] = {kind: [] for kind in benches}
        for round_ in range(rounds):
            for kind, bench in benches.items():
                collected[kind].append(await sample(bench.call, 100 + round_ * n, n))
        return {kind: best(samples) for kind, samples in collected.items()}, counted
    finally:
        for bench in benches.values():
            await bench.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000)
    options = parser.parse_args()
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="ztgate-hotbench-") as tmp:
        ops = asyncio.run(per_operation(server.url, options.n, options.rounds))
        calls, counted = asyncio.run(
            per_call(Path(tmp), server.url, max(options.n // 4, 100), options.rounds)
        )
    where = machine()
    console = Console()
    table = Table("operation", "memory µs", "redis µs", title=f"hot state ({where})")
    lines = [
        f"Machine: {where}.",
        "",
        "| operation | memory median µs (p99) | Redis median µs (p99) |",
        "|---|---|---|",
    ]
    for name in ops["memory"]:
        (m50, m99), (r50, r99) = ops["memory"][name], ops["redis"][name]
        table.add_row(
            name, f"{m50 * 1e6:.1f} ({m99 * 1e6:.1f})", f"{r50 * 1e6:.1f} ({r99 * 1e6:.1f})"
        )
        lines.append(
            f"| {name} | {m50 * 1e6:.1f} ({m99 * 1e6:.1f}) | {r50 * 1e6:.1f} ({r99 * 1e6:.1f}) |"
        )
    (m50, m99), (r50, r99) = calls["memory"], calls["redis"]
    per_call_row = "one allowed call through the whole chain (decide, review, settle)"
    table.add_row(
        per_call_row, f"{m50 * 1e6:.0f} ({m99 * 1e6:.0f})", f"{r50 * 1e6:.0f} ({r99 * 1e6:.0f})"
    )
    memory_call, redis_call = (
        f"{m50 * 1e6:.0f} ({m99 * 1e6:.0f})",
        f"{r50 * 1e6:.0f} ({r99 * 1e6:.0f})",
    )
    lines.append(f"| **{per_call_row}** | {memory_call} | {redis_call} |")
    console.print(table)
    trips = sum(counted["redis"].values())
    console.print(f"hot-state operations per call: {trips:g} {counted['redis']}")
    lines += ["", f"Hot-state operations per call (each one round trip to Redis): {trips:g}:"]
    lines += [f"- `{name}`: {count:g}" for name, count in counted["redis"].items()]
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "hot_state.json").write_text(
        json.dumps(
            {
                "machine": where,
                "operations_us": {
                    kind: {k: {"median": m * 1e6, "p99": p * 1e6} for k, (m, p) in found.items()}
                    for kind, found in ops.items()
                },
                "call_us": {k: {"median": m * 1e6, "p99": p * 1e6} for k, (m, p) in calls.items()},
                "operations_per_call": counted,
            },
            indent=2,
        )
    )
    (out / "hot_state.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
