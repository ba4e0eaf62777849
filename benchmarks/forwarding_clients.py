"""Which HTTP client should forward calls upstream? httpx vs aiohttp, measured.

Each client, with one pooled session, POSTs the same JSON to the same upstream
echo tool at concurrency 1 and 50 for a fixed time; the client is pinned to
core 0 and the upstream to core 1.

    python benchmarks/forwarding_clients.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson
from _harness import ROOT, free_port, machine, process, python, wait_http
from rich.console import Console
from rich.table import Table

BODY = orjson.dumps({"to": "alice@example.com", "subject": "Quarterly report", "priority": 2})


async def drive(
    send: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "calls_per_second": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


async def with_httpx(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def send() -> None:
            response = await client.post(
                url, content=BODY, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            response.json()

        return await drive(send, concurrency, seconds)


async def with_aiohttp(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send() -> None:
            async with session.post(
                url, data=BODY, headers={"content-type": "application/json"}
            ) as r:
                r.raise_for_status()
                orjson.loads(await r.read())

        return await drive(send, concurrency, seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    options = parser.parse_args()
    os.sched_setaffinity(0, {0})
    console = Console()
    port = free_port()
    url = f"http://127.0.0.1:{port}/echo"
    table = Table("client", "concurrency", "calls/s", "p50 ms", "p99 ms", title=machine())
    lines = ["| client | concurrency | calls/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    with process([python(), str(ROOT / "benchmarks/upstream.py"), str(port)], cpus={1}) as upstream:
        wait_http(url, upstream)
        for name, run in (
            ("httpx " + httpx.__version__, with_httpx),
            ("aiohttp " + aiohttp.__version__, with_aiohttp),
        ):
            for concurrency in (1, 50):
                result = asyncio.run(run(url, concurrency, options.seconds))
                row = (
                    name,
                    str(concurrency),
                    f"{result['calls_per_second']:.0f}",
                    f"{result['p50_ms']:.2f}",
                    f"{result['p99_ms']:.2f}",
                )
                table.add_row(*row)
                lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "forwarding_clients.md").write_text(
        f"Machine: {machine()}\n\n" + "\n".join(lines) + "\n"
    )


if __name__ == "__main__":
    main()
