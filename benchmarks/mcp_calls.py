"""MCP `tools/call` through ztgate versus the same server directly, and versus a peer bridge.

One run, one machine, the very same upstream server (benchmarks/mcp_upstream.py,
FastMCP) on every path, with the SDK's `Client`:

- direct, stdio: the client starts the server and talks to it over stdio;
- direct, Streamable HTTP: the server over HTTP;
- ztgate -> HTTP upstream: the client talks to ztgate's /mcp (JWT-SVID, the
  task's warrant, a fresh proof per call; the full default pipeline:
  identity, warrant, proof, limits, scope, schema, guards, Cedar policy,
  result scan, audit), which calls the server over its kept-open session;
- ztgate -> stdio upstream in an enclave (bubblewrap; the server's only way
  out the egress proxy);
- mcp-proxy 0.13 (PyPI; the peer): its Streamable HTTP server in front of
  the same stdio server. Installed into benchmarks/results/peer-venv.
- a TCP relay (benchmarks/tcp_relay.py) in front of the HTTP server: it
  copies bytes and parses nothing, so what it adds is the floor any bridge
  pays on this machine for one more loopback hop and process;
- a floor gateway (benchmarks/floor_gateway.py) in front of the HTTP server:
  HTTP in and out as ztgate serves it, one ES256 verify, and two SQLite
  audit commits per call, and no other check: the floor of any Python
  gateway with per-call proofs and a write-ahead audit log.

Per path: latency p50/p99 and throughput at concurrency 1 (sequential calls)
and at concurrency 32 (one session, 32 concurrent requests), and the bridge's
own CPU time per call (from /proc: ztgate's or mcp-proxy's process, not the
server's).

The calls are made in rounds (`--rounds`, 5), every path in turn in each
round, so that a change in the machine's load during the run falls on all
paths alike; each path's figures pool its rounds.

    python benchmarks/mcp_calls.py [--calls 400] [--rounds 5] [--only NAME]

Writes benchmarks/results/mcp_calls.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
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
)
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.mcp.meta import call_meta
from ztgate.mcp.servers import McpServer, McpServerRegistry
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint, public_jwk

UPSTREAM = ROOT / "benchmarks" / "mcp_upstream.py"
RELAY = ROOT / "benchmarks" / "tcp_relay.py"
# The floor: what one more loopback hop and process cost, with nothing parsed.
RELAY_PATH = "TCP relay (no parsing) -> HTTP upstream"
FLOOR = ROOT / "benchmarks" / "floor_gateway.py"
# The floor of a checking gateway: HTTP, one signature, two audit commits.
FLOOR_PATH = "floor gateway (proof + audit only) -> HTTP upstream"
PEER_VENV = ROOT / "benchmarks" / "results" / "peer-venv"
PEER = "mcp-proxy==0.13.0"
PEER_REQUIREMENTS = ROOT / "benchmarks" / "peer-requirements.txt"  # PEER and its dependencies
ARGUMENTS = {
    "to": "alice@example.com",
    "subject": "Quarterly report",
    "body": "Hi Alice, the quarterly figures are attached; revenue grew 4% and costs fell 2%. "
    "Could you review them before Friday's meeting? Thanks, Bob",
    "priority": 2,
}
AGENT = "spiffe://ztgate.local/agent/mcp-bench"
CONCURRENCY = 32

Call = Callable[[Client], Awaitable[Any]]


def peer_python() -> Path:
    """The peer's venv (mcp-proxy and the mcp 1.x SDK it needs), made on first use."""
    bin_dir = PEER_VENV / "bin"
    if not (bin_dir / "mcp-proxy").exists():
        # Never --clear: the directory may be someone else's (a symlink).
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV.resolve())], check=True)
        subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
             "-r", str(PEER_REQUIREMENTS)],
            check=True,
        )  # fmt: skip
    # The real paths: an enclave binds directories, not the symlinks to them.
    return PEER_VENV.resolve() / "bin" / "python"


@dataclass
class Block:
    """What one path's calls of one round took (latencies, durations, its bridge's CPU)."""

    times: list[float] = field(default_factory=list)
    sequential: float = 0.0
    loaded: list[float] = field(default_factory=list)
    concurrent: float = 0.0
    loaded_calls: int = 0
    calls: int = 0
    cpu: float = 0.0
    # The bridge's CPU over the measured calls alone, sequential and concurrent.
    cpu_c1: float = 0.0
    cpu_loaded: float = 0.0


async def measure(
    client: Client, call: Call, calls: int, block: Block, warm: int, pid: int | None = None
) -> None:
    """Add to `block`: `calls` sequential calls (after `warm` unmeasured), then as many at once.

    With `pid`, that process's CPU time over each of the two is added too.
    """
    for _ in range(warm):
        await call(client)
    cpu = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    for _ in range(calls):
        began = time.perf_counter()
        await call(client)
        block.times.append(time.perf_counter() - began)
    block.sequential += time.perf_counter() - started
    if pid:
        block.cpu_c1 += cpu_seconds(pid) - cpu
        cpu = cpu_seconds(pid)

    async def worker(n: int) -> None:
        for _ in range(n):
            began = time.perf_counter()
            await call(client)
            block.loaded.append(time.perf_counter() - began)

    each = max(calls // CONCURRENCY, 1)
    started = time.perf_counter()
    await asyncio.gather(*(worker(each) for _ in range(CONCURRENCY)))
    block.concurrent += time.perf_counter() - started
    if pid:
        block.cpu_loaded += cpu_seconds(pid) - cpu
    block.loaded_calls += each * CONCURRENCY
    block.calls += warm + calls + each * CONCURRENCY


def figures_of(block: Block) -> dict[str, float]:
    """A path's figures from all its rounds."""
    times, loaded = sorted(block.times), sorted(block.loaded)
    return {
        "p50_ms": 1000 * statistics.median(times),
        "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))],
        "calls_per_s_c1": len(times) / block.sequential,
        f"p50_ms_c{CONCURRENCY}": 1000 * statistics.median(loaded),
        f"p99_ms_c{CONCURRENCY}": 1000 * loaded[int(0.99 * (len(loaded) - 1))],
        f"calls_per_s_c{CONCURRENCY}": block.loaded_calls / block.concurrent,
        "calls": block.calls,
    }


_counter = iter(range(10**9))


def arguments() -> dict[str, Any]:
    """The call's arguments, a little different each time (as a loop detector expects)."""
    return {**ARGUMENTS, "subject": f"Quarterly report, part {next(_counter)}"}


async def plain(client: Client) -> Any:
    result = await client.call_tool("echo", arguments())
    if result.is_error:
        raise RuntimeError(f"the call failed: {result.content}")
    return result


@contextlib.asynccontextmanager
async def http_client(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=headers or {}, timeout=60)
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        yield client


class Gateway:
    """A ztgate workdir with the benchmark's task, agent and MCP upstreams."""

    def __init__(self, workdir: Path, port: int, upstream_url: str, peer: Path) -> None:
        self.workdir = workdir
        self.port = port
        # Containment stays on (every check runs); its burst suspension is set
        # above the benchmark's own rate, which is not a runaway agent.
        settings = make_settings(
            workdir, f"[gateway]\nport = {port}\n\n[limits]\nburst_calls_per_second = 100000\n"
        )
        database = settings.open_database()
        database.migrate()
        clock = SystemClock()
        EntryRegistry(database, clock, "ztgate.local").register(
            AGENT, ["unix:path:/opt/bench/agent"]
        )
        servers = McpServerRegistry(database, clock)
        servers.add(McpServer(name="web", transport="http", url=upstream_url))
        servers.add(
            McpServer(
                name="local",
                transport="stdio",
                command=str(peer),
                args=(str(UPSTREAM),),
                read_only_paths=(str(PEER_VENV.resolve()), str(UPSTREAM.parent)),
            )
        )
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
        self.key = ca.issue_x509_svid(AGENT).private_key
        self.jwk = public_jwk(self.key)  # found once, as the SDK's McpSession does
        self.token = ca.issue_jwt_svid(AGENT, ["ztgate"], ttl=3600)
        tasks = TaskRegistry.from_settings(load_settings(workdir / "ztgate.toml"), database, clock)
        task, _, warrant = tasks.create(
            principal="admin",
            agent=AGENT,
            intent="Mail the quarterly report to alice@example.com",
            scope={"tools": {"web.echo": {}, "local.echo": {}}},
            agent_jkt=key_thumbprint(self.key),
        )
        assert warrant is not None
        self.task_id, self.warrant = task.id, warrant
        database.dispose()

    def caller(self, tool: str) -> Call:
        async def call(client: Client) -> Any:
            args = arguments()
            canonical = canonical_json(args)
            signed = proof.sign(
                self.key,
                audience="ztgate",
                task_id=self.task_id,
                warrant=self.warrant,
                canonical=canonical,
                tool=tool,
                issued_at=time.time(),
                jwk=self.jwk,
            )
            meta = call_meta(self.warrant, signed, justification="benchmark")
            result = await client.call_tool(tool, args, meta=meta)  # type: ignore[arg-type]
            if result.is_error:
                raise RuntimeError(f"the call failed: {result.content}")
            return result

        return call


async def run(options: argparse.Namespace, console: Console) -> dict[str, Any]:
    peer = peer_python()
    version = subprocess.run(
        [str(PEER_VENV / "bin" / "python"), "-m", "pip", "show", "mcp-proxy", "mcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    results: dict[str, Any] = {
        "machine": machine(),
        "machine_info": machine_info(),
        "calls": options.calls,
        "concurrency": CONCURRENCY,
        "paths": {},
    }
    results["peer"] = f"{PEER} (with mcp {_versions(version)['mcp']}), Streamable HTTP"
    upstream_port, gateway_port, proxy_port = free_port(), free_port(), free_port()
    relay_port, floor_port = free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    with tempfile.TemporaryDirectory(prefix="ztgate-mcp-bench-") as scratch:
        workdir = Path(scratch)
        # Logs go to files: a long run fills a pipe nobody reads, and blocks.
        names = ("up", "gw", "peer", "relay", "floor")
        logs = {name: (workdir / f"{name}.log").open("wb") for name in names}
        with process(
            [str(peer), str(UPSTREAM), "--http", str(upstream_port)], cpus=None, stderr=logs["up"]
        ) as upstream:
            _wait_port(upstream_port, upstream)
            gateway = Gateway(workdir, gateway_port, upstream_url, peer)
            with (
                process(
                    [python(), "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"],
                    cpus=None,
                    cwd=workdir,
                    stderr=logs["gw"],
                ) as served,
                process(
                    [str(PEER_VENV / "bin" / "mcp-proxy"), "--port", str(proxy_port),
                     "--log-level", "WARNING", "--", str(peer), str(UPSTREAM)],
                    cpus=None,
                    stderr=logs["peer"],
                ) as proxy,
                process(
                    [python(), str(RELAY), str(relay_port), str(upstream_port)],
                    cpus=None,
                    stderr=logs["relay"],
                ) as relay,
                process(
                    [python(), str(FLOOR), str(floor_port), upstream_url],
                    cpus=None,
                    stderr=logs["floor"],
                ) as floor,
            ):  # fmt: skip
                wait_http(f"http://127.0.0.1:{gateway_port}/readyz", served)
                _wait_port(proxy_port, proxy)
                _wait_port(relay_port, relay)
                _wait_port(floor_port, floor)
                stdio = StdioServerParameters(command=str(peer), args=[str(UPSTREAM)])
                # The warrant also rides on the session (as the SDK's McpSession
                # sends it), so the client's own tools/list sees the scoped tools
                # and caches their output schemas instead of re-listing per call.
                auth = {
                    "Authorization": f"Bearer {gateway.token}",
                    "Ztgate-Warrant": gateway.warrant,
                }
                front = f"http://127.0.0.1:{gateway_port}/mcp"
                paths: list[tuple[str, Callable[[], Any], Call, int | None]] = [
                    ("direct, stdio", lambda: Client(stdio), plain, None),
                    ("direct, Streamable HTTP", lambda: http_client(upstream_url), plain, None),
                    (
                        RELAY_PATH,
                        lambda: http_client(f"http://127.0.0.1:{relay_port}/mcp"),
                        plain,
                        relay.pid,
                    ),
                    (
                        FLOOR_PATH,
                        lambda: http_client(f"http://127.0.0.1:{floor_port}/mcp"),
                        plain,
                        floor.pid,
                    ),
                    (
                        "ztgate -> HTTP upstream",
                        lambda: http_client(front, auth),
                        gateway.caller("web.echo"),
                        served.pid,
                    ),
                    (
                        "ztgate -> stdio upstream (enclave)",
                        lambda: http_client(front, auth),
                        gateway.caller("local.echo"),
                        served.pid,
                    ),
                    (
                        "mcp-proxy 0.13 -> stdio upstream",
                        lambda: http_client(f"http://127.0.0.1:{proxy_port}/mcp"),
                        plain,
                        proxy.pid,
                    ),
                ]
                chosen = [path for path in paths if options.only in path[0]]
                rounds = max(options.rounds, 1)
                blocks = {name: Block() for name, *_ in chosen}
                async with contextlib.AsyncExitStack() as stack:
                    clients = {
                        name: await stack.enter_async_context(open_client())
                        for name, open_client, *_ in chosen
                    }
                    # Rounds, each path in turn: a change in the machine's
                    # load over the run falls on every path alike.
                    with Progress(console=console) as progress:
                        bar = progress.add_task("MCP paths", total=rounds * len(chosen))
                        for round_ in range(rounds):
                            for name, _, call, pid in chosen:
                                block = blocks[name]
                                before = cpu_seconds(pid) if pid else 0.0
                                await measure(
                                    clients[name], call, options.calls // rounds, block,
                                    warm=30 if round_ == 0 else 5, pid=pid,
                                )  # fmt: skip
                                if pid:
                                    block.cpu += cpu_seconds(pid) - before
                                progress.advance(bar)
                            report_progress(round_ + 1, rounds, f"round {round_ + 1}")
                for name, _, _, pid in chosen:
                    figures = figures_of(blocks[name])
                    if pid:
                        block = blocks[name]
                        figures["bridge_cpu_ms_per_call"] = 1000 * block.cpu / block.calls
                        figures["bridge_cpu_ms_per_call_c1"] = (
                            1000 * block.cpu_c1 / len(block.times)
                        )
                        figures[f"bridge_cpu_ms_per_call_c{CONCURRENCY}"] = (
                            1000 * block.cpu_loaded / block.loaded_calls
                        )
                    results["paths"][name] = figures
                results["rounds"] = rounds
                # The bridge processes alone (not the servers they started).
                results["memory_mib"] = {
                    "ztgate": memory_mib(served.pid),
                    "mcp-proxy 0.13": memory_mib(proxy.pid),
                }
    return results


def _versions(pip_show: str) -> dict[str, str]:
    found: dict[str, str] = {}
    name = ""
    for line in pip_show.splitlines():
        if line.startswith("Name: "):
            name = line.removeprefix("Name: ").strip().lower()
        elif line.startswith("Version: ") and name:
            found[name] = line.removeprefix("Version: ").strip()
    return found


def _wait_port(port: int, proc: Any) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a benchmark process exited: {proc.args}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def report(console: Console, results: dict[str, Any]) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "mcp_calls.json").write_text(json.dumps(results, indent=2))
    paths = results["paths"]
    direct = {  # none for the paths whose direct path was not measured (--only)
        RELAY_PATH: paths.get("direct, Streamable HTTP"),
        FLOOR_PATH: paths.get("direct, Streamable HTTP"),
        "ztgate -> HTTP upstream": paths.get("direct, Streamable HTTP"),
        "ztgate -> stdio upstream (enclave)": paths.get("direct, stdio"),
        "mcp-proxy 0.13 -> stdio upstream": paths.get("direct, stdio"),
    }
    columns = ("path", "p50 ms", "p99 ms", "added p50 ms", "calls/s c=1",
               f"p50 ms c={CONCURRENCY}", f"p99 ms c={CONCURRENCY}",
               f"calls/s c={CONCURRENCY}", "bridge CPU ms/call",
               "CPU c=1", f"CPU c={CONCURRENCY}")  # fmt: skip
    table = Table(*columns, title=f"MCP tools/call ({results['machine']})")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, figures in paths.items():
        base = direct.get(name)
        row = (
            name,
            f"{figures['p50_ms']:.2f}",
            f"{figures['p99_ms']:.2f}",
            f"{figures['p50_ms'] - base['p50_ms']:.2f}" if base else "",
            f"{figures['calls_per_s_c1']:.0f}",
            f"{figures[f'p50_ms_c{CONCURRENCY}']:.2f}",
            f"{figures[f'p99_ms_c{CONCURRENCY}']:.2f}",
            f"{figures[f'calls_per_s_c{CONCURRENCY}']:.0f}",
            *(
                f"{figures[key]:.2f}" if key in figures else ""
                for key in (
                    "bridge_cpu_ms_per_call",
                    "bridge_cpu_ms_per_call_c1",
                    f"bridge_cpu_ms_per_call_c{CONCURRENCY}",
                )
            ),
        )
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    console.print(f"peer: {results['peer']}")
    (out / "mcp_calls.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument(
        "--only", default="", help="measure only the paths whose name contains this (profiling)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="the calls in this many rounds, paths in turn"
    )
    options = parser.parse_args()
    console = Console()
    report(console, asyncio.run(run(options, console)))


if __name__ == "__main__":
    main()
