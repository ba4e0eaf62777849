"""Shared benchmark plumbing: processes pinned to cores, wrk runs, CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ztgate.ports import free_port as free_port  # the benchmarks' too
from ztgate.processes import stop_process

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextlib.contextmanager
def process(
    args: list[str],
    *,
    cpus: set[int] | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stderr: Any = subprocess.PIPE,
) -> Iterator[subprocess.Popen[bytes]]:
    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=pin
    )
    try:
        yield proc
    finally:
        stop_process(proc, timeout=15)


@contextlib.contextmanager
def echo_upstream(cpus: set[int] | None) -> Iterator[str]:
    """`benchmarks/upstream.py` on a free port, answering: its echo tool's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/echo"
    with process([python(), str(ROOT / "benchmarks/upstream.py"), str(port)], cpus=cpus) as server:
        wait_http(url, server)
        yield url


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited early: {err[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@dataclass
class WrkResult:
    requests_per_second: float
    p50: float
    p99: float
    requests: int
    non_2xx: int


def wrk(
    url: str,
    body: str,
    *,
    connections: int,
    seconds: int,
    cpus: set[int],
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> WrkResult:
    """Run wrk with a POST body (and extra headers), or a Lua `script`; latencies in seconds."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `apt-get install -y wrk` (make bench does)")
    if script is not None:
        return _parse_wrk(_run_wrk(url, str(script), connections, seconds, cpus))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as generated:
        escaped = body.replace("\\", "\\\\").replace("'", "\\'")
        generated.write(
            "wrk.method = 'POST'\n"
            f"wrk.body = '{escaped}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
            + "".join(f"wrk.headers['{k}'] = '{v}'\n" for k, v in (headers or {}).items())
        )
    out = _run_wrk(url, generated.name, connections, seconds, cpus)
    os.unlink(generated.name)
    return _parse_wrk(out)


def _run_wrk(url: str, script: str, connections: int, seconds: int, cpus: set[int]) -> str:
    cpu_list = ",".join(str(c) for c in sorted(cpus))
    return subprocess.run(
        [
            "taskset",
            "-c",
            cpu_list,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _parse_wrk(out: str) -> WrkResult:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        if not match:
            raise RuntimeError(f"cannot parse wrk output:\n{out}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(rps, latency("50"), latency("99"), total, int(bad.group(1)) if bad else 0)


def python() -> str:
    return sys.executable


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (
        f"{model}, {os.cpu_count()} cores, {int(mem) / 1048576:.0f} GiB, "
        f"Python {sys.version.split()[0]}, Linux {os.uname().release}"
    )


def memory_mib(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private pages) of a process, in MiB, from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {
        "rss": fields.get("Rss", 0) / 1024,
        "pss": fields.get("Pss", 0) / 1024,
        "uss": uss / 1024,
    }


def descendants(pid: int) -> list[int]:
    """The process ids below `pid` (children, grandchildren ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def load_average() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def machine_info() -> dict[str, Any]:
    """The machine a result came from, as data: CPU, cores, memory, Python, kernel, time, load."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 1048576),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": load_average(),
    }


def report_progress(done: int, total: int, what: str = "") -> None:
    """One progress line for `benchmarks/run_all.py` (which reads the stage's output)."""
    if os.environ.get("ZTGATE_BENCH_PROGRESS"):
        print(f"@@progress {done} {total} {what}", flush=True)


def latency_figures(samples_ms: list[float], digits: int = 2) -> dict[str, float]:
    """p50, p90 and the minimum of latency samples in milliseconds."""
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), digits),
        "p90_ms": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], digits),
        "min_ms": round(ordered[0], digits),
    }


def write_latency_table(name: str, results: dict[str, dict[str, float]], **extra: Any) -> None:
    """benchmarks/results/`name`.{json,md} (with `extra` in the JSON), and the table printed."""
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    document = {"machine": machine(), **extra, "results": results}
    (out / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"Machine: {machine()}",
        "",
        "| what | p50 ms | p90 ms | min ms |",
        "|---|---|---|---|",
    ]
    for what, got in results.items():
        lines.append(f"| {what} | {got['p50_ms']} | {got['p90_ms']} | {got['min_ms']} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
