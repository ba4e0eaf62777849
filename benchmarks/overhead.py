"""Per-call overhead of the gateway versus calling the tool directly, over HTTP.

Same machine, same run: an upstream echo tool, then wrk against the tool
directly and against `POST /v1/calls` through the gateway, at concurrency 1
and 32. Every call through the gateway is what an agent sends with the SDK:
a JWT-SVID, the task's warrant and a fresh single-use proof over that very
call (signed beforehand, just before each run, since a proof is good for
30 s), so it goes through the full default pipeline: authenticate, warrant,
proof, scope, containment, justification, argument schema, the guards
(injection seen, pinning, provenance, DLP, egress), Cedar policy, then the
tool, the result checks (result schema, injection scan, provenance record)
and the audit log. The arguments differ on every call, as an agent's do
(the loop detector refuses the same call over and over); the one setting
changed from the defaults is the burst suspension threshold, raised above
the benchmark's own rate (which is not a runaway agent).

The gateway is pinned to core 0; the tool and wrk share core 1, so the
gateway's own throughput on one core is what the concurrent run measures,
and its CPU time per call (from /proc) is the capacity figure that does not
depend on the load generator. Each figure is the median of interleaved
repeats.

Also, in the same run:

- memory of the gateway process (RSS, PSS, USS) idle and after the load;
- where the time goes: a second gateway (`benchmarks/_timed_serve.py`, the
  same `ztgate serve` with timers around each entry of the pipeline), at
  concurrency 1, gives each check's time per call on the real pipeline.

    python benchmarks/overhead.py [--seconds 5] [--repeat 3]

Two tools: a `read` one (one audit record per call, after the result) and a
`write` one (two records: the decision before the tool runs, the result
after; and a justification is required).

Writes benchmarks/results/overhead.{json,md} and checks.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from _harness import (
    ROOT,
    cpu_seconds,
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
from rich.console import Console
from rich.table import Table

from ztgate.canonical import canonical_json
from ztgate.cli.toml import array_of_tables
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint

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
TOOLS = {"read": "echo", "write": "echo_write"}
# No gateway answers more than this many calls a second on one core here
# (about 1 ms of CPU each): enough signed calls for a run, never a replay.
MAX_RATE = 2500
AGENT = "spiffe://ztgate.local/agent/bench"
LUA = """
local f = io.open("{path}", "rb")
local data = f:read("*a")
f:close()
local reqs = {{}}
local pos = 1
while pos <= #data do
  local nl = data:find("\\n", pos, true)
  local n = tonumber(data:sub(pos, nl - 1))
  reqs[#reqs + 1] = data:sub(nl + 1, nl + n)
  pos = nl + n + 1
end
local i = 0
request = function()
  i = i + 1
  if i > #reqs then i = #reqs end
  return reqs[i]
end
"""


class Agent:
    """The benchmark's agent: registered, with an SVID key, a JWT-SVID and a task's warrant."""

    def __init__(self, workdir: Path) -> None:
        settings = load_settings(workdir / "ztgate.toml")
        database = settings.open_database()
        clock = SystemClock()
        EntryRegistry(database, clock, settings.identity.trust_domain).register(
            AGENT, ["unix:path:/opt/bench/agent"]
        )
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
        self.key = ca.issue_x509_svid(AGENT, ttl=3600).private_key
        self.token = ca.issue_jwt_svid(AGENT, ["ztgate"], ttl=3600)
        tasks = TaskRegistry.from_settings(settings, database, clock)
        task, _, warrant = tasks.create(
            principal="admin",
            agent=AGENT,
            intent="Mail the quarterly report to alice@example.com",
            scope={"tools": {name: {} for name in TOOLS.values()}},
            agent_jkt=key_thumbprint(self.key),
            ttl=3600,
        )
        assert warrant is not None
        self.task_id, self.warrant = task.id, warrant
        database.dispose()
        self.counter = 0

    def requests(self, tool: str, port: int, count: int) -> bytes:
        """`count` raw HTTP requests, each a new call with its own fresh proof."""
        out = []
        now = time.time()
        for _ in range(count):
            self.counter += 1
            args = {**ARGUMENTS, "subject": f"Quarterly report, part {self.counter}"}
            canonical = canonical_json(args)
            signed = proof.sign(
                self.key,
                audience="ztgate",
                task_id=self.task_id,
                warrant=self.warrant,
                canonical=canonical,
                tool=tool,
                issued_at=now,
            )
            body = (
                b'{"tool":' + orjson.dumps(tool) + b',"arguments":' + canonical
                + b',"justification":"the user asked to mail the quarterly report"}'
            )  # fmt: skip
            head = (
                f"POST /v1/calls HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nAccept: application/json\r\n"
                f"Authorization: Bearer {self.token}\r\nZtgate-Warrant: {self.warrant}\r\n"
                f"Ztgate-Proof: {signed}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            raw = head + body
            out.append(str(len(raw)).encode() + b"\n" + raw)
        return b"".join(out)


def settings_toml(port: int, upstream_url: str) -> str:
    tools = [
        {"name": TOOLS["read"], "url": upstream_url, "risk": "read", "input_schema": SCHEMA},
        {"name": TOOLS["write"], "url": upstream_url, "risk": "write", "input_schema": SCHEMA},
    ]
    return (
        f"[gateway]\nport = {port}\n\n"
        "[limits]\nburst_calls_per_second = 100000\n\n" + array_of_tables("tools", tools)
    )


def gateway_run(
    agent: Agent, workdir: Path, tier: str, port: int, connections: int, seconds: float
) -> Any:
    """wrk through the gateway with fresh signed calls; the result and the signed file."""
    script = workdir / f"calls-{tier}.lua"
    data = workdir / f"calls-{tier}.bin"
    data.write_bytes(agent.requests(TOOLS[tier], port, int(MAX_RATE * seconds) + 200))
    script.write_text(LUA.format(path=data))
    return wrk(
        f"http://127.0.0.1:{port}/v1/calls",
        "",
        connections=connections,
        seconds=int(seconds),
        cpus=LOAD_CPU,
        script=script,
    )


def measure_overhead(
    console: Console, options: argparse.Namespace, workdir: Path, agent: Agent
) -> dict[str, Any]:
    upstream_port, gateway_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/echo"
    toml = settings_toml(gateway_port, upstream_url)
    (workdir / "ztgate.toml").write_text(toml)
    direct_body = orjson.dumps(ARGUMENTS).decode()
    results: dict[str, Any] = {"runs": {}, "memory_mib": {}}
    steps = options.repeat * 2 * 3 + 2
    done = 0
    log = (workdir / "gateway.log").open("wb")
    with (
        process(
            [python(), str(ROOT / "benchmarks/upstream.py"), str(upstream_port)], cpus=LOAD_CPU
        ) as upstream,
        process(
            [python(), "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"],
            cpus=GATEWAY_CPU,
            cwd=workdir,
            stderr=log,
        ) as gateway,
    ):
        wait_http(upstream_url, upstream)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
        time.sleep(1)
        results["memory_mib"]["idle"] = memory_mib(gateway.pid)
        console.print(f"[bold]warming up[/] ({machine()})")
        wrk(upstream_url, direct_body, connections=4, seconds=2, cpus=LOAD_CPU)
        warm = gateway_run(agent, workdir, "read", gateway_port, 4, 2)
        if warm.non_2xx:
            raise SystemExit(f"the gateway refused calls: see {workdir}/gateway.log")
        done += 2
        report_progress(done, steps, "HTTP warm-up")
        samples: dict[str, dict[str, list[dict[str, float]]]] = {}
        for _ in range(options.repeat):
            for connections in (1, 32):
                run = samples.setdefault(str(connections), {"direct": [], "read": [], "write": []})
                direct = wrk(
                    upstream_url,
                    direct_body,
                    connections=connections,
                    seconds=options.seconds,
                    cpus=LOAD_CPU,
                )
                run["direct"].append(direct.__dict__)
                done += 1
                report_progress(done, steps, f"HTTP c={connections} direct")
                for tier in TOOLS:
                    before = cpu_seconds(gateway.pid)
                    via = gateway_run(
                        agent, workdir, tier, gateway_port, connections, options.seconds
                    )
                    cpu = cpu_seconds(gateway.pid) - before
                    if via.non_2xx or direct.non_2xx:
                        raise SystemExit(
                            f"errors during the run: {via.non_2xx} / {direct.non_2xx} "
                            f"(see {workdir}/gateway.log)"
                        )
                    run[tier].append(
                        via.__dict__
                        | {
                            "cpu_ms_per_call": 1000 * cpu / via.requests,
                            "calls_per_cpu_second": via.requests / cpu if cpu else 0.0,
                        }
                    )
                    done += 1
                    report_progress(done, steps, f"HTTP c={connections} {tier}")
        results["memory_mib"]["after_load"] = memory_mib(gateway.pid)
    results["runs"] = {
        c: {path: _median(runs) for path, runs in paths.items()} for c, paths in samples.items()
    }
    db = sqlite3.connect(workdir / ".ztgate" / "ztgate.db")
    results["audit_records"] = db.execute("SELECT count(*) FROM audit_records").fetchone()[0]
    outcomes = dict(
        db.execute("SELECT kind || ' ' || outcome, count(*) FROM audit_records GROUP BY 1")
    )
    db.close()
    results["audit_outcomes"] = outcomes
    # wrk counts a 202 (a call waiting for approval) as a success: every call must be allowed.
    if set(outcomes) - {"decision allow", "result allow"}:
        raise SystemExit(f"not every call was allowed: {outcomes}")
    return results


def measure_checks(
    console: Console, options: argparse.Namespace, workdir: Path, agent: Agent
) -> dict[str, Any]:
    """Each entry of the real pipeline, timed inside one gateway, at concurrency 1."""
    upstream_port, gateway_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/echo"
    (workdir / "ztgate.toml").write_text(settings_toml(gateway_port, upstream_url))
    timings = workdir / "timings.json"
    env = dict(os.environ, ZTGATE_BENCH_TIMINGS=str(timings))
    per_tier: dict[str, Any] = {}
    log = (workdir / "timed-gateway.log").open("wb")
    with (
        process(
            [python(), str(ROOT / "benchmarks/upstream.py"), str(upstream_port)], cpus=LOAD_CPU
        ) as upstream,
        process(
            [python(), str(ROOT / "benchmarks/_timed_serve.py"),
             "--config", str(workdir / "ztgate.toml"), "serve"],
            cpus=GATEWAY_CPU,
            cwd=workdir,
            env=env,
            stderr=log,
        ) as gateway,
    ):  # fmt: skip
        wait_http(upstream_url, upstream)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
        gateway_run(agent, workdir, "read", gateway_port, 4, 2)
        for tier in TOOLS:
            gateway.send_signal(signal.SIGUSR1)  # drop what came before
            _wait_for(timings)
            timings.unlink()
            before = cpu_seconds(gateway.pid)
            via = gateway_run(agent, workdir, tier, gateway_port, 1, options.check_seconds)
            cpu = cpu_seconds(gateway.pid) - before
            gateway.send_signal(signal.SIGUSR1)
            _wait_for(timings)
            taken: dict[str, list[float]] = json.loads(timings.read_text())
            timings.unlink()
            if via.non_2xx:
                raise SystemExit(f"the timed gateway refused calls: see {workdir}")
            calls = len(taken.get("stage:Gateway.handle", [])) or 1
            per_tier[tier] = {
                "calls": calls,
                "cpu_us_per_call": 1e6 * cpu / via.requests,
                "p50_us_end_to_end": via.p50 * 1e6,
                "entries": {
                    name: {
                        "per_call_us": 1e6 * sum(values) / calls,
                        "median_us": 1e6 * statistics.median(values),
                        "count": len(values),
                    }
                    for name, values in taken.items()
                },
            }
            console.print(f"timed pipeline, {tier} tool: {calls} calls")
            report_progress(len(per_tier), len(TOOLS), f"per-check timings, {tier} tool")
    return per_tier


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the timed gateway wrote no timings (SIGUSR1)")
        time.sleep(0.05)
    time.sleep(0.05)  # written in one call; give it a moment to close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per figure")
    parser.add_argument(
        "--check-seconds", type=int, default=6, help="seconds per tool for the per-check timings"
    )
    parser.add_argument("--no-checks", action="store_true", help="skip the per-check timings")
    options = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {
        "machine": machine(),
        "machine_info": machine_info(),
        "seconds": options.seconds,
        "repeat": options.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="ztgate-bench-") as scratch:
        workdir = Path(scratch)
        make_settings(workdir, settings_toml(free_port(), "http://127.0.0.1:9/echo"))
        agent = Agent(workdir)
        results |= measure_overhead(console, options, workdir, agent)
        report(console, results)
        if not options.no_checks:
            checks = {
                "machine": machine(),
                "machine_info": machine_info(),
                "tiers": measure_checks(console, options, workdir, agent),
            }
            report_checks(console, checks)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the repeats."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(console: Console, results: dict[str, Any]) -> None:
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
    labels = {"direct": "direct", "read": "gateway, read tool", "write": "gateway, write tool"}
    for connections, run in results["runs"].items():
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
    memory = results["memory_mib"]
    lines.append("")
    lines.append(
        "- gateway memory, idle: RSS {rss:.0f} MiB, PSS {pss:.0f}, USS {uss:.0f}".format(
            **memory["idle"]
        )
        + "; after the runs: RSS {rss:.0f} MiB, PSS {pss:.0f}, USS {uss:.0f}".format(
            **memory["after_load"]
        )
        + f"; audit records written: {results['audit_records']}"
    )
    (out / "overhead.md").write_text("\n".join(lines) + "\n")
    console.print(lines[-1])


def check_rows(tier: dict[str, Any]) -> Iterator[tuple[str, float, float]]:
    """(entry, µs per call, median µs) for the checks, most expensive first."""
    entries = tier["entries"]
    checks = [(k.removeprefix("check:"), v) for k, v in entries.items() if k.startswith("check:")]
    checks.sort(key=lambda kv: -kv[1]["per_call_us"])
    for name, value in checks:
        yield name, value["per_call_us"], value["median_us"]


def report_checks(console: Console, checks: dict[str, Any]) -> None:
    out = ROOT / "benchmarks/results"
    (out / "checks.json").write_text(json.dumps(checks, indent=2))
    lines = [f"Machine: {checks['machine']}. Concurrency 1, per call, inside one gateway.", ""]
    for tier, figures in checks["tiers"].items():
        table = Table("entry", "µs per call", "median µs", title=f"{tier} tool")
        lines += [f"{tier} tool ({figures['calls']} calls):", ""]
        lines += ["| entry | µs per call | median µs |", "|---|---|---|"]
        for name, per_call, median in check_rows(figures):
            table.add_row(name, f"{per_call:.1f}", f"{median:.1f}")
            lines.append(f"| check `{name}` | {per_call:.1f} | {median:.1f} |")
        for key, value in figures["entries"].items():
            if key.startswith("stage:"):
                name = key.removeprefix("stage:")
                table.add_row(name, f"{value['per_call_us']:.1f}", f"{value['median_us']:.1f}")
                lines.append(f"| {name} | {value['per_call_us']:.1f} | {value['median_us']:.1f} |")
        lines.append(f"| gateway CPU per call | {figures['cpu_us_per_call']:.1f} | |")
        lines.append(f"| p50 end to end (wrk) | | {figures['p50_us_end_to_end']:.1f} |")
        lines.append("")
        console.print(table)
    (out / "checks.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
