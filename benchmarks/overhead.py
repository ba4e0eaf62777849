"""Per-call overhead of the gateway versus calling the tool directly.

Same machine, same run: an upstream echo tool, then wrk against the tool
directly and against `POST /v1/calls` through the gateway, at concurrency 1
and 32. The gateway is pinned to core 0; the tool and wrk share core 1, so the
gateway's own throughput on one core is what the concurrent run measures, and
its CPU time per call (from /proc) is the capacity figure that does not
depend on the load generator.

    python benchmarks/overhead.py [--seconds 10]

Two tools: a `read` one (one audit record per call, after the result) and a
`write` one (two records: the decision before the tool runs, the result
after). Each figure is the median of interleaved repeats.

Writes benchmarks/results/overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
from pathlib import Path

import orjson
from _harness import ROOT, cpu_seconds, free_port, machine, process, python, rss_mib, wait_http, wrk
from rich.console import Console
from rich.table import Table

from ztgate.cli.toml import array_of_tables
from ztgate.clock import SystemClock
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.testing import make_settings

ARGUMENTS = {
    "to": "alice@example.com",
    "subject": "Quarterly report",
    "body": "Hi Alice, the quarterly figures are attached; revenue grew 4% and costs fell 2%. "
    "Could you review them before Friday's meeting? Thanks, Bob",
    "priority": 2,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "format": "email", "maxLength": 254},
        "subject": {"type": "string", "maxLength": 200},
        "body": {"type": "string", "maxLength": 20000},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["to", "subject", "body"],
    "additionalProperties": False,
}
GATEWAY_CPU = {0}
LOAD_CPU = {1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    options = parser.parse_args()
    console = Console()
    results: dict[str, object] = {
        "machine": machine(),
        "seconds": options.seconds,
        "repeat": options.repeat,
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="ztgate-bench-") as scratch:
        workdir = Path(scratch)
        upstream_port, gateway_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}/echo"
        tools = [
            {"name": "echo", "url": upstream_url, "risk": "read", "input_schema": SCHEMA},
            {"name": "echo_write", "url": upstream_url, "risk": "write", "input_schema": SCHEMA},
        ]
        toml = f"[gateway]\nport = {gateway_port}\n\n" + array_of_tables("tools", tools)
        settings = make_settings(workdir, toml)
        # Every call authenticates (the default): a registered agent and its JWT-SVID.
        agent = f"spiffe://{settings.identity.trust_domain}/agent/bench"
        database = settings.open_database()
        EntryRegistry(database, SystemClock(), settings.identity.trust_domain).register(
            agent, ["unix:path:/opt/bench/agent"]
        )
        database.dispose()
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), SystemClock())
        auth = {"Authorization": f"Bearer {ca.issue_jwt_svid(agent, ['ztgate'], ttl=3600)}"}
        calls = {
            tier: orjson.dumps(
                {"tool": name, "arguments": ARGUMENTS, "justification": "benchmark"}
            ).decode()
            for tier, name in (("read", "echo"), ("write", "echo_write"))
        }
        direct_body = orjson.dumps(ARGUMENTS).decode()
        env = dict(os.environ)
        with (
            process(
                [python(), str(ROOT / "benchmarks/upstream.py"), str(upstream_port)], cpus=LOAD_CPU
            ) as upstream,
            process(
                [python(), "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"],
                cpus=GATEWAY_CPU,
                env=env,
                cwd=workdir,
            ) as gateway,
        ):
            wait_http(upstream_url, upstream)
            wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
            gateway_url = f"http://127.0.0.1:{gateway_port}/v1/calls"
            console.print(f"[bold]warming up[/] ({machine()})")
            wrk(upstream_url, direct_body, connections=4, seconds=2, cpus=LOAD_CPU)
            wrk(gateway_url, calls["read"], connections=4, seconds=2, cpus=LOAD_CPU, headers=auth)
            for connections in (1, 32):
                console.print(f"concurrency {connections}: direct, then through the gateway")
                direct = wrk(
                    upstream_url,
                    direct_body,
                    connections=connections,
                    seconds=options.seconds,
                    cpus=LOAD_CPU,
                )
                run: dict[str, object] = {"direct": direct.__dict__}
                for tier, call in calls.items():
                    before = cpu_seconds(gateway.pid)
                    via = wrk(
                        gateway_url,
                        call,
                        connections=connections,
                        seconds=options.seconds,
                        cpus=LOAD_CPU,
                        headers=auth,
                    )
                    cpu = cpu_seconds(gateway.pid) - before
                    if via.non_2xx or direct.non_2xx:
                        raise SystemExit(f"errors during the run: {via.non_2xx} / {direct.non_2xx}")
                    run[tier] = via.__dict__ | {
                        "cpu_ms_per_call": 1000 * cpu / via.requests,
                        "calls_per_cpu_second": via.requests / cpu if cpu else None,
                    }
                results["runs"][str(connections)] = run  # type: ignore[index]
            results["gateway_rss_mib"] = rss_mib(gateway.pid)
        db = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        results["audit_records"] = db.execute("SELECT count(*) FROM audit_records").fetchone()[0]
        db.close()
    report(console, results)


PATHS = ("direct", "read", "write")


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the repeats."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(console: Console, results: dict[str, object]) -> None:
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(results, indent=2))
    columns = (
        "concurrency",
        "path",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "added p50 ms",
        "gateway CPU ms/call",
        "calls per CPU-second",
    )
    table = Table(*columns, title="POST through ztgate vs direct")
    lines = [
        f"Machine: {results['machine']}. wrk (1 thread), {results['seconds']} s per run; "
        f"each figure is the median of {results['repeat']} interleaved runs.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    runs = results["runs"]
    assert isinstance(runs, dict)
    labels = {"direct": "direct", "read": "gateway, read tool", "write": "gateway, write tool"}
    for connections, run in runs.items():
        direct = run["direct"]
        for path in ("direct", "read", "write"):
            r = run[path]
            gateway = path != "direct"
            row = (
                connections,
                labels[path],
                f"{r['requests_per_second']:.0f}",
                f"{r['p50'] * 1000:.3f}",
                f"{r['p99'] * 1000:.3f}",
                f"{(r['p50'] - direct['p50']) * 1000:.3f}" if gateway else "",
                f"{r['cpu_ms_per_call']:.3f}" if gateway else "",
                f"{r['calls_per_cpu_second']:.0f}" if gateway else "",
            )
            table.add_row(*row)
            lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    lines.append("")
    lines.append(
        f"- gateway RSS after the run: {results['gateway_rss_mib']:.0f} MiB; "
        f"audit records written: {results['audit_records']}"
    )
    (out / "overhead.md").write_text("\n".join(lines) + "\n")
    console.print(f"written to {out}/overhead.json and overhead.md")


if __name__ == "__main__":
    main()
