"""What the durable store costs on SQLite and on PostgreSQL: the audit append and a call's share.

- One append: one audit record in its own transaction (`AuditLog.append_now`,
  as the CLI and a lone call write), median and p99.
- Group commit: 64 callers appending at once through the gateway's
  group-committing `AuditLog.append`; records per second.
- A call's share of the store: what the gateway asks of the database on
  every allowed call: the generations check (`GenerationWatcher.changed`),
  the decision record before the tool runs and the result record after it
  (two group-committed appends), one call at a time. The generations check
  is also measured alone.

Stores: SQLite in WAL mode with `synchronous = "normal"` (the default) and
`"full"`, and PostgreSQL on loopback, a cluster of our own with the server's
durable defaults (fsync on, synchronous_commit on), so that a commit waits
for its WAL flush as in production; PostgreSQL twice: alone (the
generations are read at every call) and with change broadcasts on a Redis
of our own (`ztgate.store.broadcasts`: read only when a change is
published, as replicas with `hot_state_url` do). The stores are measured in alternating
rounds (best round's median), so that a busy neighbour weighs on all alike.

    python benchmarks/store.py [--rounds 5] [--n 500]

Writes benchmarks/results/store.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import ROOT, machine
from rich.console import Console
from rich.table import Table

from ztgate.audit.log import AuditLog
from ztgate.audit.record import AuditEntry
from ztgate.clock import SystemClock
from ztgate.store.broadcasts import ChangeBroadcasts
from ztgate.store.database import Database, sqlite_url
from ztgate.store.generations import GenerationWatcher
from ztgate.store.postgres_server import PostgresServer
from ztgate.store.redis_server import RedisServer

Samples = list[float]
CONCURRENT = 64


def entry(i: int, kind: str = "decision") -> AuditEntry:
    """A call's record, as big as a typical one."""
    return AuditEntry(
        kind=kind,
        outcome="allow",
        call_id=f"call-{i}",
        agent="spiffe://ztgate.local/agent/bench",
        task_id="t" * 26,
        tool="send_email",
        status=200,
        reasons=({"check": "policy", "outcome": "allow", "reason": "permit"},),
        arguments_sha256=f"{i:064x}",
        arguments_preview='{"to":"ops@acme.example","subject":"weekly report"}',
        justification="the user asked for the weekly report",
    )


class Store:
    """One database and the gateway's writers on it."""

    def __init__(
        self, name: str, database: Database, broadcasts: ChangeBroadcasts | None = None
    ) -> None:
        self.name = name
        self.database = database
        database.migrate()
        self.log = AuditLog(database, SystemClock())
        self.broadcasts = broadcasts
        self.watcher = GenerationWatcher(database, broadcasts=broadcasts)
        self.serial = 0

    async def start(self) -> None:
        if self.broadcasts is not None:
            await self.broadcasts.start()
        self.watcher.prime()
        await self.log.start()

    async def generations_check(self, _: int) -> None:
        self.watcher.changed()

    async def one_append(self, _: int) -> None:
        self.serial += 1
        self.log.append_now([entry(self.serial)])

    async def call_share(self, _: int) -> None:
        self.serial += 1
        self.watcher.changed()
        await self.log.append(entry(self.serial), gather=False)
        await self.log.append(entry(self.serial, "result"), gather=False)

    async def group_commit(self, n: int) -> float:
        """Records per second for `n` records from CONCURRENT callers at once."""
        queue = iter(range(n))

        async def caller() -> None:
            for _ in queue:
                self.serial += 1
                await self.log.append(entry(self.serial))

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(CONCURRENT)))
        return n / (time.perf_counter() - started)

    async def stop(self) -> None:
        await self.log.stop()
        if self.broadcasts is not None:
            await self.broadcasts.stop()

    def close(self) -> None:
        self.watcher.close()
        self.database.dispose()


async def sample(step: Callable[[int], Awaitable[Any]], n: int) -> Samples:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - started)
    return samples


def best(rounds: list[Samples]) -> tuple[float, float]:
    """Median and p99 of the round with the lowest median."""
    chosen = sorted(min(rounds, key=statistics.median))
    return statistics.median(chosen), chosen[int(len(chosen) * 0.99)]


async def measure(stores: list[Store], n: int, rounds: int) -> dict[str, dict[str, Any]]:
    for store in stores:
        await store.start()
        await sample(store.one_append, 50)  # warm: connections, prepared statements
    check: dict[str, list[Samples]] = {s.name: [] for s in stores}
    one: dict[str, list[Samples]] = {s.name: [] for s in stores}
    share: dict[str, list[Samples]] = {s.name: [] for s in stores}
    group: dict[str, list[float]] = {s.name: [] for s in stores}
    for _ in range(rounds):
        for store in stores:
            check[store.name].append(await sample(store.generations_check, n))
            one[store.name].append(await sample(store.one_append, n))
            share[store.name].append(await sample(store.call_share, n))
            group[store.name].append(await store.group_commit(n * 4))
    for store in stores:
        await store.stop()
    return {
        s.name: {
            "generations_check_us": [x * 1e6 for x in best(check[s.name])],
            "append_us": [x * 1e6 for x in best(one[s.name])],
            "call_share_us": [x * 1e6 for x in best(share[s.name])],
            "group_commit_records_per_s": max(group[s.name]),
        }
        for s in stores
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=500)
    options = parser.parse_args()
    with (
        PostgresServer(durable=True) as server,
        RedisServer() as redis,
        tempfile.TemporaryDirectory(prefix="ztgate-storebench-") as tmp,
    ):
        broadcasts = ChangeBroadcasts(redis.url, prefix="bench:", timeout=0.5, resync_seconds=1.0)
        stores = [
            Store("SQLite, synchronous = normal", Database(sqlite_url(Path(tmp) / "normal.db"))),
            Store(
                "SQLite, synchronous = full",
                Database(sqlite_url(Path(tmp) / "full.db"), synchronous="full"),
            ),
            Store("PostgreSQL 15, loopback", Database(server.create_database("bench"))),
            Store(
                "PostgreSQL 15, loopback, change broadcasts (Redis)",
                Database(server.create_database("bench_broadcasts")),
                broadcasts,
            ),
        ]
        try:
            found = asyncio.run(measure(stores, options.n, options.rounds))
        finally:
            for store in stores:
                store.close()
    where = machine()
    table = Table(
        "store",
        "generations check µs (p99)",
        "one append µs (p99)",
        "a call's share µs (p99)",
        "group commit records/s",
    )
    lines = [
        f"Machine: {where}.",
        "",
        "| store | generations check, median µs (p99) | one append, median µs (p99)"
        f" | a call's share, median µs (p99) | {CONCURRENT} callers at once, records/s |",
        "|---|---|---|---|---|",
    ]
    for name, figures in found.items():
        (g50, g99) = figures["generations_check_us"]
        (a50, a99), (c50, c99) = figures["append_us"], figures["call_share_us"]
        rate = figures["group_commit_records_per_s"]
        cells = [
            f"{g50:.1f} ({g99:.1f})",
            f"{a50:.0f} ({a99:.0f})",
            f"{c50:.0f} ({c99:.0f})",
            f"{rate:,.0f}",
        ]
        table.add_row(name, *cells)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    Console().print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "store.json").write_text(json.dumps({"machine": where, "stores": found}, indent=2))
    (out / "store.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
