"""What an agent's connection through the egress proxy costs: the gateway's checks per connection.

A served gateway (`ztgate serve`, authentication required, the proxy's TCP
listener on) and a loopback HTTP server; the agent's task grants `egress`.
Per round, one HTTP GET on a new connection:

- direct, to the loopback server;
- through the proxy as the agent: a fresh proof for the destination (timed
  apart: the agent's cost), `CONNECT` with its JWT-SVID, warrant and proof —
  decided by the gateway's authenticate, warrant, proof, scope and halt
  checks, the `open` record committed — then the GET inside the tunnel.

    python benchmarks/egress_agents.py [--n 300]

Writes benchmarks/results/egress_agents.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, latency_figures, process, python, wait_http, write_latency_table

sys.path.insert(0, str(ROOT / "tests"))
from integration.egress_kit import HeaderNames, threaded_http_server
from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.egress.agents import egress_arguments
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.ports import free_port
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint, public_jwk

AGENT = "spiffe://ztgate.local/agent/egress-bench"
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


class Agent:
    """The benchmark's agent: its key, JWT-SVID and task, in a fresh gateway directory."""

    def __init__(self, workdir: Path, port: int, proxy_port: int, echo: int) -> None:
        make_settings(
            workdir,
            f'[gateway]\nport = {port}\nauthentication = "required"\n\n'
            f"[limits]\nburst_calls_per_second = 100000\n\n"
            f"[egress_proxy]\nenabled = true\nport = {proxy_port}\n"
            f'agent_test_destinations = ["127.0.0.1:{echo}"]\n',
        )
        settings = load_settings(workdir / "ztgate.toml")
        database = settings.open_database()
        database.migrate()
        clock = SystemClock()
        EntryRegistry(database, clock, "ztgate.local").register(AGENT, ["unix:path:/opt/b"])
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
        self.key = ca.issue_x509_svid(AGENT).private_key
        self.jwk = public_jwk(self.key)
        self.token = ca.issue_jwt_svid(AGENT, ["ztgate"], ttl=3600)
        tasks = TaskRegistry.from_settings(settings, database, clock)
        task, _, warrant = tasks.create(
            principal="admin",
            agent=AGENT,
            intent="Fetch pages",
            scope={"tools": {"egress": {}}},
            agent_jkt=key_thumbprint(self.key),
        )
        assert warrant is not None
        self.task_id, self.warrant = task.id, warrant
        database.dispose()

    def connect(self, port: int) -> bytes:
        """A CONNECT head to 127.0.0.1:`port` with a fresh proof."""
        signed = proof.sign(
            self.key,
            audience="ztgate",
            task_id=self.task_id,
            warrant=self.warrant,
            canonical=canonical_json(egress_arguments("CONNECT", "127.0.0.1", port)),
            tool="egress",
            issued_at=time.time(),
            jwk=self.jwk,
        )
        return (
            f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nProxy-Authorization: Bearer {self.token}\r\n"
            f"Ztgate-Warrant: {self.warrant}\r\nZtgate-Proof: {signed}\r\n\r\n"
        ).encode()


async def _get(port: int, head: bytes = b"") -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if head:
        writer.write(head)
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), answer
    writer.write(GET)
    body = await reader.read()
    writer.close()
    assert b" 200 " in body.split(b"\r\n", 1)[0], body[:200]


async def measure(agent: Agent, proxy_port: int, echo: int, n: int) -> dict[str, dict[str, float]]:
    for _ in range(20):  # warm up both paths
        await _get(echo)
        await _get(proxy_port, agent.connect(echo))
    direct, signing, proxied = [], [], []
    for _ in range(n):
        began = time.perf_counter()
        await _get(echo)
        direct.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        head = agent.connect(echo)
        signed = time.perf_counter()
        await _get(proxy_port, head)
        done = time.perf_counter()
        signing.append((signed - began) * 1000)
        proxied.append((done - signed) * 1000)
    return {
        "HTTP GET, new connection, direct": latency_figures(direct, 3),
        "the agent signs the connection's proof": latency_figures(signing, 3),
        "HTTP GET, new connection, through the proxy as the agent": latency_figures(proxied, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    options = parser.parse_args()
    port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="ztgate-egress-bench-") as scratch:
        workdir = Path(scratch)
        with threaded_http_server(HeaderNames) as echo:
            agent = Agent(workdir, port, proxy_port, echo)
            log = (workdir / "gw.log").open("wb")
            command = [python(), "-m", "ztgate", "--config", str(workdir / "ztgate.toml"), "serve"]
            with process(command, cpus=None, cwd=workdir, stderr=log) as served:
                wait_http(f"http://127.0.0.1:{port}/readyz", served)
                results = asyncio.run(measure(agent, proxy_port, echo, options.n))
    write_latency_table("egress_agents", results, n=options.n)


if __name__ == "__main__":
    main()
