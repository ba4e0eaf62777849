"""Throughput against the number of gateway worker processes (`[gateway] workers`).

For each N (default 1, 2, 4, 8) the benchmark starts `ztgate serve` with
`[gateway] workers = N`, unpinned (all cores), in front of the echo tool,
and drives it with wrk at concurrency 32 with fresh signed calls (the full
default pipeline, as `overhead.py`). It first checks that N processes really
serve: a gateway that does not start N workers is recorded as such and not
measured (no figure is made up for it), and no projection is made unless at
least two worker counts were measured.

Several workers need hot state shared between them (replay cache, rate
limits), or a proof could be replayed on another worker; `--extra-toml`
adds the settings for that (e.g. the Redis hot state) once it exists.

    python benchmarks/scaling.py [--workers 1,2,4,8] [--seconds 6] [--extra-toml FILE]

Writes benchmarks/results/scaling.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import (
    ROOT,
    cpu_seconds,
    descendants,
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
    cpus = os.sched_getaffinity(0)
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
        below = descendants(gateway.pid)
        # uvicorn's supervisor serves nothing itself once it has workers.
        serving = len(below) if len(below) >= 2 else 1
        figures: dict[str, Any] = {"workers": workers, "processes_serving": serving}
        if serving < workers:
            figures["measured"] = False
            figures["why"] = (
                f"`[gateway] workers = {workers}` started {serving} serving process(es): "
                "the gateway does not run several workers yet"
            )
            console.print(f"workers={workers}: [yellow]not measured[/]: {escape(figures['why'])}")
            return figures
        data = workdir / "scaling.bin"
        script = workdir / "scaling.lua"
        data.write_bytes(agent.requests(TOOLS["read"], port, int(MAX_RATE * workers * seconds)))
        script.write_text(LUA.format(path=data))
        pids = [gateway.pid, *below]
        before = tree_cpu(pids)
        result = wrk(
            f"http://127.0.0.1:{port}/v1/calls",
            "",
            connections=CONNECTIONS,
            seconds=seconds,
            cpus=cpus,
            script=script,
        )
        spent = tree_cpu(pids) - before
        if result.non_2xx:
            raise SystemExit(f"{result.non_2xx} calls refused (see {workdir})")
        memory = [memory_mib(pid) for pid in pids]
        figures |= {
            "measured": True,
            "calls_per_s": result.requests_per_second,
            "p50_ms": result.p50 * 1000,
            "p99_ms": result.p99 * 1000,
            "cpu_ms_per_call": 1000 * spent / result.requests,
            "pss_mib_total": sum(m["pss"] for m in memory),
            "rss_mib_total": sum(m["rss"] for m in memory),
        }
        console.print(
            f"workers={workers}: {figures['calls_per_s']:.0f} calls/s, "
            f"p50 {figures['p50_ms']:.1f} ms"
        )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--extra-toml", type=Path, help="settings appended to the config")
    options = parser.parse_args()
    console = Console()
    counts = [int(n) for n in options.workers.split(",")]
    extra = options.extra_toml.read_text() if options.extra_toml else ""
    results: dict[str, Any] = {
        "machine": machine(),
        "machine_info": machine_info(),
        "connections": CONNECTIONS,
        "seconds": options.seconds,
        "points": [],
    }
    with tempfile.TemporaryDirectory(prefix="ztgate-scaling-") as scratch:
        workdir = Path(scratch)
        make_settings(workdir, settings_toml(free_port(), "http://127.0.0.1:9/echo"))
        agent = Agent(workdir)
        for done, workers in enumerate(counts, 1):
            results["points"].append(
                run_one(console, workdir, agent, workers, options.seconds, extra)
            )
            report_progress(done, len(counts), f"workers={workers}")
    measured = [p for p in results["points"] if p["measured"]]
    if len(measured) >= 2:
        # Only from measurements: calls per CPU-second at the largest measured
        # count, times the cores a machine would give N workers.
        top = max(measured, key=lambda p: p["workers"])
        per_cpu_second = 1000 / top["cpu_ms_per_call"]
        results["projection"] = {
            "basis": f"{top['workers']} workers measured: {per_cpu_second:.0f} calls per "
            "CPU-second; N workers on N free cores, if nothing else is shared",
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
    (out / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
