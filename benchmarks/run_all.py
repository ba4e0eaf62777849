"""`make bench`: every benchmark in one run, with progress bars, and the summary.

Stages (each a script of this directory, its output in
benchmarks/results/logs/STAGE.log):

1. setup: wrk (`make bench` installs it), the peer MCP bridge's venv
   (benchmarks/results/peer-venv, pinned by benchmarks/peer-requirements.txt);
2. HTTP: `overhead.py`, direct vs through the gateway, concurrency 1 and 32,
   with the full default pipeline; gateway memory; the time of each check
   inside one real gateway;
3. MCP: `mcp_calls.py`, direct vs through ztgate vs the peer mcp-proxy;
4. checks in isolation: `warrants.py`, `containment.py`, `guards.py`,
   `policy.py`, `sdk_signing.py` (in-process, each check alone);
5. scaling: `scaling.py`, 1 to 8 gateway workers;
6. the older stages: `identity.py`, `forwarding_clients.py`, `enclave.py`;
7. summary: benchmarks/results/summary.{json,md}, the chart
   docs/performance-summary.svg and the summary section of
   docs/performance.md (between its `make bench` markers).

    python benchmarks/run_all.py [--quick] [--only http,mcp] [--no-docs]

The default call counts keep the whole run under 15 minutes on a 2-core
machine; `--quick` is a smoke test of the plumbing (figures not for use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from _charts import Bar, Panel, render
from _harness import ROOT, load_average, machine_info
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

RESULTS = ROOT / "benchmarks" / "results"
LOGS = RESULTS / "logs"
PEER_VENV = RESULTS / "peer-venv"
PEER_REQUIREMENTS = ROOT / "benchmarks" / "peer-requirements.txt"
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance-summary.svg"
START = "<!-- make bench: summary (benchmarks/run_all.py writes this section) -->"
END = "<!-- make bench: end of summary -->"
PROGRESS = re.compile(r"^@@progress (\d+) (\d+) ?(.*)$")


@dataclass
class Stage:
    key: str
    title: str
    scripts: list[list[str]]  # each: a script of benchmarks/ and its arguments
    quick: list[list[str]] = field(default_factory=list)
    expected_seconds: float = 60
    status: str = "pending"
    seconds: float = 0.0
    detail: str = ""


def stages() -> list[Stage]:
    return [
        Stage(
            "http",
            "HTTP: direct vs ztgate, c=1 and c=32; memory; each check's time",
            [["overhead.py", "--seconds", "5", "--repeat", "3", "--check-seconds", "6"]],
            [["overhead.py", "--seconds", "2", "--repeat", "1", "--check-seconds", "2"]],
            expected_seconds=170,
        ),
        Stage(
            "mcp",
            "MCP: direct vs ztgate vs mcp-proxy, c=1 and c=32",
            [["mcp_calls.py", "--calls", "400"]],
            [["mcp_calls.py", "--calls", "64"]],
            expected_seconds=120,
        ),
        Stage(
            "isolation",
            "checks in isolation: warrants, containment, guards, policy, SDK",
            [
                ["warrants.py", "--rounds", "5", "--n", "2000"],
                ["containment.py", "--rounds", "5", "--n", "4000"],
                ["guards.py", "--rounds", "5", "--n", "2000"],
                ["policy.py", "--rounds", "3", "--n", "2000"],
                ["sdk_signing.py", "--rounds", "3", "--n", "2000"],
            ],
            [
                ["warrants.py", "--rounds", "1", "--n", "200"],
                ["containment.py", "--rounds", "1", "--n", "200"],
                ["guards.py", "--rounds", "1", "--n", "100"],
                ["policy.py", "--rounds", "1", "--n", "100"],
                ["sdk_signing.py", "--rounds", "1", "--n", "200"],
            ],
            expected_seconds=90,
        ),
        Stage(
            "scaling",
            "scaling: 1 to 8 gateway workers, 1 to 3 replicas behind HAProxy, propagation",
            [
                ["scaling.py", "--workers", "1,2,4,8", "--replicas", "1,2,3", "--seconds", "8"],
                ["propagation.py", "--trials", "50"],
            ],
            [
                ["scaling.py", "--workers", "1,2", "--replicas", "2", "--seconds", "2"],
                ["propagation.py", "--trials", "5"],
            ],
            expected_seconds=150,
        ),
        Stage(
            "other",
            "identity, forwarding clients, enclaves, hot state in Redis, SQLite and PostgreSQL",
            [
                ["identity.py"],
                ["forwarding_clients.py", "--seconds", "4"],
                ["enclave.py"],
                ["hot_state.py", "--rounds", "5", "--n", "2000"],
                ["store.py", "--rounds", "5", "--n", "400"],
            ],
            [
                ["identity.py", "--rounds", "1", "--n", "50"],
                ["forwarding_clients.py", "--seconds", "1"],
                ["enclave.py", "--n", "3", "--requests", "30"],
                ["hot_state.py", "--rounds", "1", "--n", "200"],
                ["store.py", "--rounds", "1", "--n", "50"],
            ],
            expected_seconds=240,
        ),
    ]


def setup(console: Console) -> str:
    """wrk and the peer's venv; what was done."""
    done = []
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SystemExit(
                "wrk is missing: run `sudo apt-get install wrk` (or make bench as root)"
            )
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        done.append("wrk installed")
    wanted = sorted(
        line for line in PEER_REQUIREMENTS.read_text().splitlines() if line and line[0] != "#"
    )
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        freeze = subprocess.run(
            [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False
        ).stdout
        if sorted(freeze.split()) == wanted:
            return ", ".join(done) or "nothing to install"
    else:
        console.print("creating the peer bridge's venv (mcp-proxy 0.13.0, from PyPI, pinned)")
        # Never --clear: the directory may be shared (a symlink) with someone else's runs.
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV.resolve())], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(PEER_REQUIREMENTS)], check=True
    )
    done.append("peer venv installed")
    return ", ".join(done) or "nothing to install"


def run_stage(stage: Stage, quick: bool, progress: Progress, console: Console) -> None:
    scripts = stage.quick if quick else stage.scripts
    task = progress.add_task(f"  {stage.key}", total=len(scripts) * 100)
    started = time.monotonic()
    failures = []
    log_path = LOGS / f"{stage.key}.log"
    env = dict(os.environ, ZTGATE_BENCH_PROGRESS="1", COLUMNS="120", PYTHONUNBUFFERED="1")
    with log_path.open("w") as log:
        for index, script in enumerate(scripts):
            name = script[0]
            progress.update(task, description=f"  {stage.key}: {name}", completed=index * 100)
            log.write(f"$ python benchmarks/{' '.join(script)}\n")
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "benchmarks" / name), *script[1:]],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                match = PROGRESS.match(line)
                if match:
                    done, total = int(match.group(1)), int(match.group(2))
                    progress.update(
                        task,
                        completed=index * 100 + 100 * done / max(total, 1),
                        description=f"  {stage.key}: {name} {match.group(3)}",
                    )
                    continue
                log.write(line)
            if proc.wait() != 0:
                failures.append(name)
                console.print(f"[red]{name} failed[/]: see {log_path.relative_to(ROOT)}")
            progress.update(task, completed=(index + 1) * 100)
    stage.seconds = time.monotonic() - started
    stage.status = "failed: " + ", ".join(failures) if failures else "ok"
    progress.remove_task(task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the plumbing")
    parser.add_argument("--only", help="comma-separated stage keys (default: all)")
    parser.add_argument("--no-docs", action="store_true", help="do not update docs/")
    parser.add_argument(
        "--summary-only", action="store_true", help="re-write the summary from the last run"
    )
    options = parser.parse_args()
    console = Console()
    LOGS.mkdir(parents=True, exist_ok=True)
    if options.summary_only:
        last = json.loads((RESULTS / "summary.json").read_text())
        run = {k: last.get(k) for k in ("machine", "commit", "load_average_end",
                                        "wall_seconds", "quick", "setup", "stages")}  # fmt: skip
        write(console, summarise(run), options)
        return
    chosen = stages()
    if options.only:
        keys = set(options.only.split(","))
        chosen = [stage for stage in chosen if stage.key in keys]
    machine = machine_info()
    console.print(
        f"[bold]ztgate benchmarks[/] on {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, Linux {machine['kernel']}; "
        f"load average {machine['load_average']}"
    )
    started = time.monotonic()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("[bold]make bench", total=len(chosen) + 1)
        progress.update(overall, description="[bold]make bench[/]: setup")
        installed = setup(console)
        progress.advance(overall)
        for stage in chosen:
            progress.update(overall, description=f"[bold]make bench[/]: {stage.title}")
            run_stage(stage, options.quick, progress, console)
            progress.advance(overall)
            console.print(f"{stage.key}: {stage.status} in {stage.seconds:.0f} s")
    wall = time.monotonic() - started
    run = {
        "machine": machine,
        "commit": commit(),
        "load_average_end": load_average(),
        "wall_seconds": wall,
        "quick": options.quick,
        "setup": installed,
        "stages": {s.key: {"status": s.status, "seconds": round(s.seconds, 1)} for s in chosen},
    }
    write(console, summarise(run), options)
    console.print(f"[bold]make bench took {wall / 60:.1f} minutes[/]")
    if any(s.status != "ok" for s in chosen):
        raise SystemExit(1)


def commit() -> str:
    """The commit measured, and whether the work tree differed from it."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", "src"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head or 'unknown'}{' (with uncommitted changes in src/)' if dirty else ''}"


def write(console: Console, summary: dict[str, Any], options: argparse.Namespace) -> None:
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    text = markdown(summary)
    (RESULTS / "summary.md").write_text(text)
    if not options.no_docs and not summary["quick"]:
        CHART.write_text(chart(summary))
        update_doc(text)
        console.print(f"docs: {DOC.relative_to(ROOT)} and {CHART.relative_to(ROOT)} updated")
    console.print(text, markup=False, highlight=False)


# -- the summary ----------------------------------------------------------------


def _load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """The figures of this run's stages, with ratios against direct calls."""
    summary: dict[str, Any] = dict(run)
    rows: list[dict[str, Any]] = []
    http = _load("overhead") if "http" in run["stages"] else None
    if http:
        for c, paths in http["runs"].items():
            direct = paths["direct"]
            for tier in ("read", "write"):
                via = paths[tier]
                rows.append(
                    {
                        "protocol": "HTTP",
                        "path": f"ztgate, {tier} tool",
                        "baseline": "direct HTTP",
                        "concurrency": int(c),
                        "direct_p50_ms": direct["p50"] * 1000,
                        "p50_ms": via["p50"] * 1000,
                        "direct_p99_ms": direct["p99"] * 1000,
                        "p99_ms": via["p99"] * 1000,
                        "direct_calls_per_s": direct["requests_per_second"],
                        "calls_per_s": via["requests_per_second"],
                        "cpu_ms_per_call": via["cpu_ms_per_call"],
                    }
                )
        summary["memory_mib"] = http["memory_mib"]
    mcp = _load("mcp_calls") if "mcp" in run["stages"] else None
    if mcp:
        paths = mcp["paths"]
        pairs = (
            ("ztgate -> HTTP upstream", "direct, Streamable HTTP"),
            # The floor of any checking gateway (mcp_calls.FLOOR_PATH).
            ("floor gateway (proof + audit only) -> HTTP upstream", "direct, Streamable HTTP"),
            ("ztgate -> stdio upstream (enclave)", "direct, stdio"),
            ("mcp-proxy 0.13 -> stdio upstream", "direct, stdio"),
        )
        for path, base in pairs:
            if path not in paths or base not in paths:
                continue
            via, direct = paths[path], paths[base]
            for c in mcp_concurrencies(via):
                rows.append(
                    {
                        "protocol": "MCP",
                        "path": path,
                        "baseline": base,
                        "concurrency": c,
                        "direct_p50_ms": _mcp(direct, "p50_ms", c),
                        "p50_ms": _mcp(via, "p50_ms", c),
                        "direct_p99_ms": _mcp(direct, "p99_ms", c),
                        "p99_ms": _mcp(via, "p99_ms", c),
                        "direct_calls_per_s": _mcp(direct, "calls_per_s", c),
                        "calls_per_s": _mcp(via, "calls_per_s", c),
                        "cpu_ms_per_call": via.get("bridge_cpu_ms_per_call"),
                    }
                )
        summary["mcp_peer"] = mcp.get("peer")
        summary["mcp_memory_mib"] = mcp.get("memory_mib")
    for row in rows:
        row["p50_ratio"] = _ratio(row["p50_ms"], row["direct_p50_ms"])
        row["p99_ratio"] = _ratio(row["p99_ms"], row["direct_p99_ms"])
        row["throughput_ratio"] = _ratio(row["calls_per_s"], row["direct_calls_per_s"])
    summary["overhead"] = rows
    checks = _load("checks") if "http" in run["stages"] else None
    if checks:
        summary["checks"] = checks["tiers"]
    if "isolation" in run["stages"]:
        summary["isolation"] = isolation()
    if "scaling" in run["stages"]:
        summary["scaling"] = _load("scaling")
        summary["propagation"] = _load("propagation")
    return summary


def mcp_concurrencies(figures: dict[str, Any]) -> list[int]:
    found = {1}
    for key in figures:
        match = re.match(r"calls_per_s_c(\d+)$", key)
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def _mcp(figures: dict[str, Any], what: str, c: int) -> float | None:
    """A figure of the MCP benchmark at concurrency `c` (its c=1 latencies have no suffix)."""
    for key in (f"{what}_c{c}", what if c == 1 else None):
        if key and key in figures:
            return float(figures[key])
    return None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def isolation() -> list[dict[str, Any]]:
    """The headline figure of each in-process benchmark (median µs per call)."""
    picks = (
        ("warrants", "ms", "authenticate + warrant + proof + scope", 1000),
        ("containment", "us", "all of them (halt, limits), in sequence", 1),
        ("guards", "ms", "all pre-call guards", 1000),
        ("guards", "ms", "provenance + dlp", 1000),
        ("policy", "ms", "default set: policy check per call", 1000),
        ("sdk_signing", "us", "proof signing", 1),
    )
    rows = []
    for name, unit, prefix, factor in picks:
        data = _load(name)
        if not data or unit not in data:
            continue
        for key, value in data[unit].items():
            if key.startswith(prefix):
                rows.append(
                    {
                        "benchmark": f"{name}.py",
                        "what": key,
                        "median_us": value["median"] * factor,
                        "p99_us": value["p99"] * factor,
                    }
                )
                break
    return rows


def _f(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def markdown(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    load = ", ".join(str(x) for x in m["load_average"])
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"Linux {m['kernel']}; {m['date']}; load average at the start {load} (1, 5, 15 min), "
        f"at the end {', '.join(str(x) for x in summary['load_average_end'])}. "
        f"Commit {summary.get('commit') or 'unknown'}. "
        f"`make bench` took {summary['wall_seconds'] / 60:.1f} minutes.",
        "",
    ]
    failed = [k for k, s in summary["stages"].items() if s["status"] != "ok"]
    if failed:
        lines += [f"**Stages that failed in this run:** {', '.join(failed)} (see "
                  "`benchmarks/results/logs/`).", ""]  # fmt: skip
    if summary.get("overhead"):
        lines += [
            "**Per call, through ztgate vs direct** (the ratios are gateway ÷ direct; "
            "throughput 0.10x means a tenth of the direct calls per second):",
            "",
            "| protocol | path (vs) | concurrency | p50 ms | p50 x | p99 ms | p99 x "
            "| calls/s | throughput x | gateway CPU ms/call |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in summary["overhead"]:
            lines.append(
                f"| {r['protocol']} | {r['path']} (vs {r['baseline']}) | {r['concurrency']} "
                f"| {_f(r['direct_p50_ms'])} → {_f(r['p50_ms'])} "
                f"| {_f(r['p50_ratio'], '.1f', 'x')} "
                f"| {_f(r['direct_p99_ms'])} → {_f(r['p99_ms'])} "
                f"| {_f(r['p99_ratio'], '.1f', 'x')} "
                f"| {_f(r['direct_calls_per_s'], '.0f')} → {_f(r['calls_per_s'], '.0f')} "
                f"| {_f(r['throughput_ratio'], '.2f', 'x')} | {_f(r['cpu_ms_per_call'])} |"
            )
        if summary.get("mcp_peer"):
            lines += ["", f"MCP peer: {summary['mcp_peer']}."]
        lines.append("")
    checks = summary.get("checks")
    if checks:
        lines += check_table(checks)
    if summary.get("isolation"):
        lines += [
            "**The same checks in isolation** (in-process, each alone, no HTTP; the benchmarks "
            "below in this document describe each):",
            "",
            "| benchmark | what | median µs | p99 µs |",
            "|---|---|---|---|",
        ]
        for r in summary["isolation"]:
            lines.append(
                f"| `{r['benchmark']}` | {r['what']} | {r['median_us']:.0f} | {r['p99_us']:.0f} |"
            )
        lines.append("")
    memory = summary.get("memory_mib")
    if memory:
        lines += [
            "**Memory per gateway process** (`ztgate serve`, one process, from "
            "`/proc/PID/smaps_rollup`):",
            "",
            "| process, when | RSS MiB | PSS MiB | USS MiB |",
            "|---|---|---|---|",
        ]
        for when, label in (
            ("idle", "ztgate, idle after start"),
            ("after_load", "ztgate, after the HTTP runs"),
        ):
            mem = memory[when]
            lines.append(f"| {label} | {mem['rss']:.0f} | {mem['pss']:.0f} | {mem['uss']:.0f} |")
        for name, mem in (summary.get("mcp_memory_mib") or {}).items():
            label = f"{name}, after the MCP runs (the bridge process alone)"
            lines.append(f"| {label} | {mem['rss']:.0f} | {mem['pss']:.0f} | {mem['uss']:.0f} |")
        lines.append("")
    scaling = summary.get("scaling")
    if scaling:
        lines += scaling_lines(scaling)
    propagation = summary.get("propagation")
    if propagation:
        lines.append(
            "**Propagation** (`propagation.py`: a change given to replica A, then calls to "
            "replica B back to back until it denies; from A's answer to B's denial):"
        )
        lines.append("")
        for kind in ("revocation", "kill"):
            s = propagation[kind]["summary"]
            lines.append(
                f"- {kind}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms over "
                f"{s['trials']} trials; calls B allowed after A answered: "
                f"{s['allowed_after_total']}"
            )
        lines.append("")
    return "\n".join(lines)


def check_table(checks: dict[str, Any]) -> list[str]:
    # The write tool first, and its order, as in the chart: it meets every check
    # (some do less for a read: no justification is required of one).
    tiers = sorted(checks, key=lambda t: t != "write")
    first = tiers[0]
    names = {k for tier in tiers for k in checks[tier]["entries"] if k.startswith("check:")}
    order = sorted(names, key=lambda k: -_median(checks[first], k))
    handle = {t: _per_call(checks[t], "stage:Gateway.handle") for t in tiers}
    heads = " | ".join(f"{t}: median µs | mean µs | share" for t in tiers)
    lines = [
        "**Where a call's time goes, check by check** — inside one real gateway (`ztgate "
        "serve` with the default pipeline, timers around each entry: "
        "`benchmarks/_timed_serve.py`), HTTP, concurrency 1, per call; the share is the "
        "mean's share of `Gateway.handle` (everything but the HTTP front door). Most "
        f"expensive first ({first} tool, by median):",
        "",
        f"| entry | {heads} |",
        "|---|" + "---|---|---|" * len(tiers),
    ]

    def cells(key: str) -> str:
        return " | ".join(
            f"{_median(checks[t], key):.0f} | {_per_call(checks[t], key):.0f} | "
            + (f"{100 * _per_call(checks[t], key) / handle[t]:.0f}%" if handle[t] else "")
            for t in tiers
        )

    for key in order:
        label = f"check `{key.removeprefix('check:')}`"
        if key == order[0]:
            label = f"**{label}**"
        lines.append(f"| {label} | {cells(key)} |")
    for key, label in (
        ("stage:pre-call checks", "all pre-call checks (the chain)"),
        ("stage:result checks", "all result checks"),
        ("stage:audit record", "audit records (1 for read, 2 for write)"),
        ("stage:forward to the tool", "forwarding to the tool (and the tool's own time)"),
        ("stage:Gateway.handle", "`Gateway.handle` in all"),
    ):
        lines.append(f"| {label} | {cells(key)} |")
    cpu = " | ".join(f" | {checks[t]['cpu_us_per_call']:.0f} | " for t in tiers)
    lines += [f"| gateway CPU per call (whole process) | {cpu}|", ""]
    return lines


def _per_call(tier: dict[str, Any], key: str) -> float:
    """The mean time per call (an entry met twice a call counts twice)."""
    entry = tier["entries"].get(key)
    return float(entry["per_call_us"]) if entry else 0.0


def _median(tier: dict[str, Any], key: str) -> float:
    """The median time per call (an entry met twice a call counts twice)."""
    entry = tier["entries"].get(key)
    if not entry:
        return 0.0
    return float(entry["median_us"]) * entry["count"] / max(tier["calls"], 1)


def scaling_lines(scaling: dict[str, Any]) -> list[str]:
    lines = [
        f"**Scaling with gateway workers** (`scaling.py`: `[gateway] workers = N`, unpinned, "
        f"wrk at concurrency {scaling['connections']}, read tool, {scaling['seconds']} s; "
        f"{scaling.get('store', 'SQLite, hot state in process')}):",
        "",
        "| workers | serving processes | calls/s | p50 ms | p99 ms | CPU ms/call |",
        "|---|---|---|---|---|---|",
    ]
    reasons = set()
    for p in scaling["points"]:
        if p["measured"]:
            lines.append(
                f"| {p['workers']} | {p['processes_serving']} | {p['calls_per_s']:.0f} "
                f"| {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | {p['cpu_ms_per_call']:.2f} |"
            )
        else:
            lines.append(f"| {p['workers']} | {p['processes_serving']} | not measured | | | |")
            reasons.add(p["why"].split(": ", 1)[1] if ": " in p["why"] else p["why"])
    lines.append("")
    if reasons:
        lines += [f"Not measured: {'; '.join(sorted(reasons))}.", ""]
    if scaling.get("replicas"):
        lines += [
            "**Replicas behind HAProxy** (`scaling.py --replicas`: N single-worker replicas, "
            "one PostgreSQL, one Redis, HAProxy; same load):",
            "",
            "| replicas | calls/s | p50 ms | p99 ms | CPU ms/call (replicas + HAProxy) |",
            "|---|---|---|---|---|",
        ]
        for p in scaling["replicas"]:
            lines.append(
                f"| {p['replicas']} | {p['calls_per_s']:.0f} | {p['p50_ms']:.1f} "
                f"| {p['p99_ms']:.1f} | {p['cpu_ms_per_call']:.2f} |"
            )
        lines.append("")
    if scaling.get("projection"):
        projection = scaling["projection"]
        lines.append(f"Projection, arithmetic only ({projection['basis']}): " + ", ".join(
            f"{n} → {v:.0f} calls/s" for n, v in projection["calls_per_s"].items()
        ) + ".")  # fmt: skip
        lines.append("")
    return lines


def chart(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    subtitle = (
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}, "
        f"load average {m['load_average'][0]} at the start"
    )
    panels = []
    rows = summary.get("overhead", [])
    colour = {"HTTP": 0, "MCP": 1}

    def label(r: dict[str, Any]) -> str:
        return f"{r['protocol']} {r['path']}, c={r['concurrency']}"

    panels.append(
        Panel(
            "p50 latency, x direct (lower is better)",
            [
                Bar(
                    label(r),
                    r["p50_ratio"],
                    f"{r['p50_ratio']:.1f}x  ({r['p50_ms']:.2f} ms)",
                    colour[r["protocol"]],
                )
                for r in rows
                if r["p50_ratio"]
            ],
            reference=1.0,
            reference_label="direct",
        )
    )
    panels.append(
        Panel(
            "throughput, x direct (higher is better)",
            [
                Bar(
                    label(r),
                    r["throughput_ratio"],
                    f"{r['throughput_ratio']:.2f}x  ({r['calls_per_s']:.0f} calls/s)",
                    colour[r["protocol"]],
                )
                for r in rows
                if r["throughput_ratio"]
            ],
            reference=1.0,
            reference_label="direct",
        )
    )
    checks = summary.get("checks")
    if checks:
        tier = "write" if "write" in checks else next(iter(checks))
        entries = checks[tier]["entries"]
        items = sorted(
            (
                (k.removeprefix("check:"), _median(checks[tier], k))
                for k in entries
                if k.startswith("check:")
            ),
            key=lambda kv: -kv[1],
        )
        bars = [Bar(name, value, f"{value:.0f} µs", 3 if i == 0 else 2)
                for i, (name, value) in enumerate(items)]  # fmt: skip
        for key, name in (
            ("stage:audit record", "audit records (2)"),
            ("stage:forward to the tool", "forwarding (and the tool's time)"),
        ):
            if key in entries:
                value = _median(checks[tier], key)
                bars.append(Bar(name, value, f"{value:.0f} µs", 4))
        panels.append(
            Panel(
                f"each check on the real pipeline, {tier} tool, median µs per call (HTTP, c=1)",
                bars,
                note="timed inside one `ztgate serve` with the default pipeline",
            )
        )
    return render(
        "ztgate: make bench",
        subtitle,
        panels,
        legend=("HTTP", "MCP", "check", "most expensive check", "audit, forwarding"),
    )


def update_doc(section: str) -> None:
    """Replace the summary between the markers in docs/performance.md (or add it on top)."""
    text = DOC.read_text()
    block = (
        f"{START}\n\n## `make bench`: the summary\n\n"
        "Written by `benchmarks/run_all.py` from the run's own results "
        "(`benchmarks/results/`); the chart is "
        "[performance-summary.svg](performance-summary.svg).\n\n"
        "![make bench summary](performance-summary.svg)\n\n"
        f"{section.rstrip()}\n\n{END}"
    )
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        marker = "\n## How the gateway is measured"
        head, _, tail = text.partition(marker)
        text = head.rstrip() + "\n\n" + block + "\n" + marker + tail
    DOC.write_text(text)


if __name__ == "__main__":
    main()
