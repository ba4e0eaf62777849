"""What an enclave costs: start-up, a stdio MCP session's start, and the egress proxy's overhead.

- `Enclave.start()` + `stop()`: the sandbox probe and the proxy socket;
- a short Python program run to its end, in an enclave and without one;
- a stdio MCP server (tests/integration/enclave_server.py) from spawn to an
  initialised `ClientSession`, in an enclave and without one;
- one HTTP GET on a new connection (raw sockets) to a loopback server,
  direct and through the egress proxy's TCP listener (attribution, decision,
  the audit records of open and close);
- a server run per task (`mcp add --per-task`) through `McpUpstreams`: a new
  task's first call (its secrets command, its enclave, the server's start,
  its tools/list, the call), and the same task's next call.

    python benchmarks/enclave.py [--n 20] [--requests 300]

Writes benchmarks/results/enclave.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import ROOT, latency_figures, write_latency_table
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(ROOT / "tests"))
from integration.egress_kit import TableResolver, audit_log, http_server
from ztgate.egress.decision import Attribution, EgressRules
from ztgate.egress.grants import Grant
from ztgate.egress.proxy import EgressProxy
from ztgate.enclave import Enclave, EnclaveSpec, WrappedCommand
from ztgate.mcp.servers import McpServer
from ztgate.mcp.task_instances import TaskBinding
from ztgate.mcp.task_secrets import task_secrets
from ztgate.mcp.upstream import McpUpstreams
from ztgate.testing import make_call

SERVER = ROOT / "tests" / "integration" / "enclave_server.py"


async def timed(n: int, action: Callable[[], Awaitable[None]]) -> dict[str, float]:
    await action()  # warm up
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return latency_figures(samples)


async def run_to_end(wrapped: WrappedCommand) -> None:
    process = await asyncio.create_subprocess_exec(
        wrapped.command,
        *wrapped.args,
        env=dict(wrapped.env),
        stdout=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert await process.wait() == 0


async def mcp_session(wrapped: WrappedCommand) -> None:
    params = StdioServerParameters(
        command=wrapped.command, args=list(wrapped.args), env=dict(wrapped.env)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()


async def measure(n: int, requests: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        async with audit_log(Path(directory)) as (log, _), http_server() as server:
            proxy = EgressProxy(log, TableResolver({}))
            _, proxy_port = await proxy.listen_tcp("127.0.0.1", 0)
            test = (f"127.0.0.1:{server.port}",)
            spec = EnclaveSpec(name="bench", command=sys.executable, args=("-c", "print(1)"))
            mcp_spec = EnclaveSpec(
                name="bench-mcp",
                command=sys.executable,
                args=(str(SERVER),),
                read_only_paths=(SERVER,),
                allowed_test_destinations=test,
            )

            async def start_stop() -> None:
                async with Enclave(spec, proxy):
                    pass

            results["Enclave.start() + stop()"] = await timed(n, start_stop)
            async with Enclave(spec, proxy) as enclave:
                wrapped = enclave.command()
                results["python -c print(1), in an enclave"] = await timed(
                    n, lambda: run_to_end(wrapped)
                )
            bare = WrappedCommand(sys.executable, spec.args, {})
            results["python -c print(1), bare"] = await timed(n, lambda: run_to_end(bare))
            async with Enclave(mcp_spec, proxy) as enclave:
                wrapped_mcp = enclave.command()
                results["stdio MCP server to initialised session, in an enclave"] = await timed(
                    n, lambda: mcp_session(wrapped_mcp)
                )
            bare_mcp = WrappedCommand(sys.executable, mcp_spec.args, {})
            results["stdio MCP server to initialised session, bare"] = await timed(
                n, lambda: mcp_session(bare_mcp)
            )
            rules = EgressRules.build([], test_destinations=test)
            credentials = proxy.add_enclave(Grant("bench.1", Attribution("bench"), rules))
            url = f"http://127.0.0.1:{server.port}/"

            auth = base64.b64encode(f"{credentials.user}:{credentials.password}".encode())
            origin = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            absolute = (
                f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                f"Proxy-Authorization: Basic {auth.decode()}\r\n\r\n"
            )

            async def get(port: int, head: str) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(head.encode())
                answer = await reader.read()
                writer.close()
                assert answer.startswith(b"HTTP/1.1 200 ")

            async def direct() -> None:
                await get(server.port, origin)

            async def proxied() -> None:
                await get(proxy_port, absolute)

            results["HTTP GET, new connection, direct"] = await timed(requests, direct)
            results["HTTP GET, new connection, through the egress proxy"] = await timed(
                requests, proxied
            )
            first, warm = await per_task_calls(max(3, n // 4), proxy)
            results["per-task server: a new task's first call"] = first
            results["per-task server: the same task's next call"] = warm
            await proxy.stop()
    return results


async def per_task_calls(n: int, proxy: EgressProxy) -> tuple[dict[str, float], dict[str, float]]:
    """A new task's first call to a per-task server, and its next call (medians of `n`)."""
    mint = (sys.executable, "-c", 'print(\'{"TOKEN": "minted"}\')')
    server = McpServer(
        name="bench-task",
        transport="stdio",
        command=sys.executable,
        args=(str(SERVER),),
        read_only_paths=(str(SERVER),),
        per_task=True,
        secrets_command=mint,
    )

    async def enclave(
        server: McpServer, stack: contextlib.AsyncExitStack, task: TaskBinding | None = None
    ) -> WrappedCommand:
        # What the gateway's `_enclave_command` does for a task's instance.
        secrets = {}
        if task is not None:
            secrets = await task_secrets(
                mint, server=server.name, agent=task.agent, task_id=task.task_id
            )
        spec = EnclaveSpec(
            name=server.name,
            command=server.command,
            args=server.args,
            read_only_paths=(SERVER,),
            secrets=secrets,
            agent=task.agent if task else None,
            task_id=task.task_id if task else None,
        )
        return (await stack.enter_async_context(Enclave(spec, proxy))).command()

    imported: list[Any] = []
    upstreams = McpUpstreams(
        [server],
        sync=lambda _server, tools: imported.extend(tools),
        enclave=enclave,
        max_result_bytes=1 << 20,
    )
    await upstreams.start()
    tool = {found.name: found for found in imported}["bench-task.env"]
    call = make_call("bench-task.env", {})
    firsts, nexts = [], []
    try:
        for i in range(n):
            task = TaskBinding("spiffe://ztgate.local/agents/bench", f"task-{i}")
            for samples in (firsts, nexts):
                started = time.perf_counter()
                await upstreams.call(tool, call, task)
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await upstreams.stop()
    return latency_figures(firsts), latency_figures(nexts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    options = parser.parse_args()
    results = asyncio.run(measure(options.n, options.requests))
    write_latency_table("enclave", results)


if __name__ == "__main__":
    main()
