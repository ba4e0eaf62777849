"""Throughput against the number of gateway worker processes, and of replicas behind HAProxy.

Workers: for each N (default 1, 2, 4, 8) the benchmark starts `ztgate serve`
with `[gateway] workers = N`, unpinned (all cores), in front of the echo
tool, and drives it with wrk at concurrency 32 with fresh signed calls (the
full default pipeline, as `overhead.py`). Several workers need the hot state
in Redis and the store on PostgreSQL (`ztgate serve` refuses otherwise):
the benchmark starts its own of each (`store.redis_server`,
`store.postgres_server`, PostgreSQL durable: fsync on, as in production),
for every N including 1, so the points compare. It first checks that N
processes really serve: a gateway that does not start N workers is recorded
as such and not measured (no figure is made up for it).

Replicas (`--replicas 1,2,3`): for each N, `ztgate.cluster.LocalCluster`
(what `make run-cluster` runs): N single-worker `ztgate serve` processes on
one PostgreSQL and one Redis, HAProxy in front; wrk drives HAProxy.

No projection is made unless at least two counts were measured, and then
only as arithmetic: calls per CPU-second measured at the largest count,
times N cores.

    python benchmarks/scaling.py [--workers 1,2,4,8] [--replicas 1,2,3] [--seconds 6]

Writes benchmarks/results/scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    ROOT,
    cpu_seconds,
    descendants,
    echo_upstream,
    free_port,
    machine,
    machine_info,
    memory_mib,
    process,
    python,
    report_progress,
    wait_http,
    wrk,
)
from overhead import LUA, MAX_RATE, TOOLS, Agent, settings_toml
from redis import Redis
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ztgate.testing import make_settings

ALL_CPUS = None  # unpinned: the workers, the tool and wrk share every core
CONNECTIONS = 32


def tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a worker that has just exited
            total += cpu_seconds(pid)
    return total


def store_toml(database_url: str, hot_state_url: str) -> str:
    return f'\n[store]\nurl = "{database_url}"\nhot_state_url = "{hot_state_url}"\n'


def serving_workers(pid: int) -> int:
    """How many processes serve: the spawned workers below a supervisor, else the one."""
    below = [p for p in descendants(pid) if _spawned(p)]
    return len(below) if below else 1


def _spawned(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def drive(
    console: Console,
    workdir: Path,
    agent: Agent,
    port: int,
    pids: list[int],
    label: str,
    scale: int,
    seconds: int,
) -> dict[str, Any]:
    """wrk at CONNECTIONS through `port`; the CPU of `pids` over the run."""
    data = workdir / "scaling.bin"
    script = workdir / "scaling.lua"
    # Enough fresh calls for the cores there are (no more: every proof is
    # signed now, and must still be within the proof window when wrk sends it).
    cores = len(os.sched_getaffinity(0))
    count = int(MAX_RATE * min(scale, cores) * seconds)
    data.write_bytes(agent.requests(TOOLS["read"], port, count))
    script.write_text(LUA.format(path=data))
    before = tree_cpu(pids)
    result = wrk(
        f"http://127.0.0.1:{port}/v1/calls",
        "",
        connections=CONNECTIONS,
        seconds=seconds,
        cpus=os.sched_getaffinity(0),
        script=script,
    )
    spent = tree_cpu(pids) - before
    if result.non_2xx:
        out = ROOT / "benchmarks/results/logs"
        out.mkdir(parents=True, exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, out / f"scaling-{label}-{log.name}")
        raise SystemExit(f"{label}: {result.non_2xx} calls refused (logs in {out})")
    memory = [memory_mib(pid) for pid in pids]
    figures = {
        "measured": True,
        "calls_per_s": result.requests_per_second,
        "p50_ms": result.p50 * 1000,
        "p99_ms": result.p99 * 1000,
        "cpu_ms_per_call": 1000 * spent / result.requests,
        "pss_mib_total": sum(m["pss"] for m in memory),
        "rss_mib_total": sum(m["rss"] for m in memory),
    }
    console.print(
        f"{label}: {figures['calls_per_s']:.0f} calls/s, p50 {figures['p50_ms']:.1f} ms, "
        f"p99 {figures['p99_ms']:.1f} ms"
    )
    return figures


def run_one(
    console: Console, workdir: Path, agent: Agent, workers: int, seconds: int, extra: str
) -> dict[str, Any]:
    upstream_port, port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/echo"
    toml = settings_toml(port, upstream_url).replace(
        "[gateway]\n", f"[gateway]\nworkers = {workers}\n", 1
    )
    (workdir / "ztgate.toml").write_text(toml + "\n" + extra)
    log = (workdir / f"gateway-{workers}.log").open("wb")
    with (
        process(
            [python(), str(ROOT / "benchmarks/upstream.py"), str(upstream_port)], cpus=ALL_CPUS
        ) as upstream,
        process(
            [python(), "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"],
            cpus=ALL_CPUS,
            cwd=workdir,
            stderr=log,
        ) as gateway,
    ):
        wait_http(upstream_url, upstream)
        wait_http(f"http://127.0.0.1:{port}/healthz", gateway, timeout=60)
        time.sleep(2)  # workers start after the listener
        serving = serving_workers(gateway.pid)
        figures: dict[str, Any] = {"workers": workers, "processes_serving": serving}
        if serving < workers:
            figures["measured"] = False
            figures["why"] = (
                f"`[gateway] workers = {workers}` started {serving} serving process(es)"
            )
            console.print(f"workers={workers}: [yellow]not measured[/]: {escape(figures['why'])}")
            return figures
        pids = [gateway.pid, *descendants(gateway.pid)]
        return figures | drive(
            console, workdir, agent, port, pids, f"workers={workers}", workers, seconds
        )


def run_replicas(console: Console, replicas: int, seconds: int) -> dict[str, Any]:
    """N replicas behind HAProxy (`LocalCluster`), each its own PostgreSQL and Redis run."""
    from ztgate.cluster import LocalCluster

    with (
        tempfile.TemporaryDirectory(prefix="ztgate-scaling-replicas-") as scratch,
        echo_upstream(cpus=ALL_CPUS) as upstream_url,
    ):
        workdir = Path(scratch)
        cluster = LocalCluster(
            workdir,
            replicas=replicas,
            port=free_port(),
            config_text=settings_toml(0, upstream_url),
        )
        with cluster:
            agent = Agent(workdir)
            pids = [r.process.pid for r in cluster.members if r.process is not None]
            figures = {"replicas": replicas, "processes_serving": len(pids)}
            figures |= drive(
                console,
                workdir,
                agent,
                cluster.port,
                [*pids, *cluster.balancer_pids()],
                f"replicas={replicas}",
                replicas,
                seconds,
            )
            figures["served"] = cluster.served()
            return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts ('' for none)")
    parser.add_argument("--replicas", default="", help="replica counts behind HAProxy, e.g. 1,2,3")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--extra-toml", type=Path, help="settings appended to the config")
    options = parser.parse_args()
    console = Console()
    counts = [int(n) for n in options.workers.split(",") if n]
    replica_counts = [int(n) for n in options.replicas.split(",") if n]
    extra = options.extra_toml.read_text() if options.extra_toml else ""
    results: dict[str, Any] = {
        "machine": machine(),
        "machine_info": machine_info(),
        "connections": CONNECTIONS,
        "seconds": options.seconds,
        "store": "PostgreSQL (durable) and Redis hot state, each started by the benchmark",
        "points": [],
        "replicas": [],
    }
    total = len(counts) + len(replica_counts)
    done = 0
    if counts:
        from ztgate.store.postgres_server import PostgresServer
        from ztgate.store.redis_server import RedisServer

        with (
            tempfile.TemporaryDirectory(prefix="ztgate-scaling-") as scratch,
            RedisServer() as redis,
            PostgresServer(durable=True) as postgres,
        ):
            stores = store_toml(postgres.create_database("ztgate"), redis.url) + extra
            workdir = Path(scratch)
            make_settings(workdir, settings_toml(free_port(), "http://127.0.0.1:9/echo") + stores)
            agent = Agent(workdir)
            for workers in counts:
                # Each point starts with empty hot state (buckets, windows, replay cache).
                redis_client = Redis.from_url(redis.url)
                redis_client.flushdb()
                redis_client.close()
                results["points"].append(
                    run_one(console, workdir, agent, workers, options.seconds, stores)
                )
                done += 1
                report_progress(done, total, f"workers={workers}")
    for replicas in replica_counts:
        results["replicas"].append(run_replicas(console, replicas, options.seconds))
        done += 1
        report_progress(done, total, f"replicas={replicas}")
    measured = [p for p in results["points"] if p["measured"]]
    if len(measured) >= 2:
        # Arithmetic from measurements only: calls per CPU-second at the
        # largest measured count, times the cores a machine would give N
        # workers (if nothing else, PostgreSQL or Redis, were the limit).
        top = max(measured, key=lambda p: p["workers"])
        per_cpu_second = 1000 / top["cpu_ms_per_call"]
        results["projection"] = {
            "basis": f"{top['workers']} workers measured: {per_cpu_second:.0f} calls per "
            "gateway CPU-second; N workers on N free cores, if nothing else is shared",
            "calls_per_s": {str(n): n * per_cpu_second for n in (1, 2, 4, 8, 16)},
        }
    else:
        results["projection"] = None
    report(console, results)


def report(console: Console, results: dict[str, Any]) -> None:
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(results, indent=2))
    columns = ("workers", "serving processes", "calls/s", "p50 ms", "p99 ms",
               "CPU ms/call", "PSS MiB (all)")  # fmt: skip
    table = Table(*columns, title=f"scaling, concurrency {results['connections']}")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for point in results["points"]:
        if point["measured"]:
            row = (
                str(point["workers"]),
                str(point["processes_serving"]),
                f"{point['calls_per_s']:.0f}",
                f"{point['p50_ms']:.1f}",
                f"{point['p99_ms']:.1f}",
                f"{point['cpu_ms_per_call']:.2f}",
                f"{point['pss_mib_total']:.0f}",
            )
        else:
            row = (str(point["workers"]), str(point["processes_serving"]),
                   "not measured", "", "", "", "")  # fmt: skip
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    if results.get("replicas"):
        columns = ("replicas", "calls/s", "p50 ms", "p99 ms", "CPU ms/call", "requests per replica")
        lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for point in results["replicas"]:
            row = (
                str(point["replicas"]),
                f"{point['calls_per_s']:.0f}",
                f"{point['p50_ms']:.1f}",
                f"{point['p99_ms']:.1f}",
                f"{point['cpu_ms_per_call']:.2f}",
                " / ".join(str(v) for v in point["served"].values()),
            )
            lines.append("| " + " | ".join(row) + " |")
        console.print("\n".join(lines[-len(results["replicas"]) - 2 :]))
    (out / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
