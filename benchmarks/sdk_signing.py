"""What the agent SDK costs on the client: proof signing and request building, per call.

In-process, with an EC P-256 X.509-SVID from a real CA (what the Workload API
issues) and a real warrant token. Timed per operation, median and p99 over
`--n` samples, best of `--rounds` rounds by median:

- proof signing alone (`ztgate.warrants.proof.sign`, the JWK cached);
- a call request (`ztgate.sdk.requests.call_request`: canonical arguments,
  the proof, the body and headers);
- a bind request (after each SVID rotation);
- `Agent.call` end to end on the client (rotation check, JWT-SVID from
  cache, request, httpx, parsing the answer) over an in-memory transport
  that answers at once: the SDK's and httpx's cost, no network, no gateway.

    python benchmarks/sdk_signing.py [--rounds 5] [--n 3000]

Writes benchmarks/results/sdk_signing.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _harness import ROOT, machine
from cryptography import x509
from rich.console import Console
from rich.table import Table

from ztgate.clock import SystemClock
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.sdk import Agent
from ztgate.sdk.models import BoundWarrant, Grant, SvidKey
from ztgate.sdk.requests import bind_request, call_request
from ztgate.tasks.scope import parse_scope
from ztgate.warrants import proof
from ztgate.warrants import token as tokens
from ztgate.warrants.keys import WarrantKey

DOMAIN = "bench.example"
AGENT = f"spiffe://{DOMAIN}/agent/bench"
ARGUMENTS = {"to": "ops@acme.example", "subject": "weekly report", "amount": 42}
SCOPE = {"tools": {"send_email": {"limits": {"to": {"domains": ["acme.example"]}}}}}


def measure(step: Callable[[], Any], n: int, rounds: int) -> tuple[float, float]:
    """Median and p99 seconds of `step()`, from the round with the best median."""
    for _ in range(min(200, n)):
        step()
    best: list[float] = []
    for _ in range(rounds):
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            step()
            samples.append(time.perf_counter() - started)
        samples.sort()
        if not best or statistics.median(samples) < statistics.median(best):
            best = samples
    return statistics.median(best), best[int(len(best) * 0.99) - 1]


class StaticIdentity:
    """One SVID and one JWT-SVID, as a warm `WorkloadIdentity` serves them from memory."""

    def __init__(self, svid: SvidKey, jwt_svid: str, roots: list[x509.Certificate]) -> None:
        self._svid, self._jwt, self._roots = svid, jwt_svid, roots

    def svid(self) -> SvidKey:
        return self._svid

    def jwt_svid(self) -> str:
        return self._jwt

    def cached_jwt_svid(self) -> str | None:
        return self._jwt

    def trust_roots(self) -> list[x509.Certificate]:
        return self._roots

    def close(self) -> None:
        pass


def run(workdir: Path, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    ca = CertificateAuthority.create(workdir / "ca", DOMAIN, SystemClock())
    issued = ca.issue_x509_svid(AGENT)
    svid = SvidKey.from_chain(AGENT, issued.private_key, issued.chain)
    now = time.time()
    warrant_token = tokens.issue(
        WarrantKey(_hazmat.generate_key(), "bench"),
        issuer=f"ztgate:{DOMAIN}",
        audience="ztgate",
        warrant_id="w-bench",
        task_id="t-bench",
        agent=AGENT,
        scope=parse_scope(SCOPE),
        jkt=svid.jkt,
        issued_at=now,
        expires_at=now + 3600,
    )
    warrant = BoundWarrant(warrant_token, "w-bench", "t-bench", svid.jkt, now + 3600)
    jwt_svid = ca.issue_jwt_svid(AGENT, ["ztgate"])
    canonical = b'{"amount":42,"subject":"weekly report","to":"ops@acme.example"}'

    def sign() -> None:
        proof.sign(
            svid.private_key,
            audience="ztgate",
            task_id="t-bench",
            warrant=warrant_token,
            canonical=canonical,
            tool="send_email",
            issued_at=time.time(),
            jwk=svid.jwk,
        )

    def build_call() -> None:
        call_request(
            svid,
            warrant,
            "send_email",
            ARGUMENTS,
            audience="ztgate",
            issued_at=time.time(),
            bearer=jwt_svid,
            justification="the user asked for the weekly report",
        )

    def build_bind() -> None:
        bind_request(svid, Grant("t-bench"), audience="ztgate", issued_at=time.time())

    answer = json.dumps(
        {"call_id": "c", "outcome": "allow", "result": {"sent": True}, "verdicts": []}
    ).encode()
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=answer, headers={"content-type": "application/json"}
        )
    )
    agent = Agent(
        "http://127.0.0.1:8470",
        StaticIdentity(svid, jwt_svid, ca.roots()),
        transport=transport,
    )
    agent._warrant = warrant  # as if bound: this measures calls, not the bind round trip

    def agent_call() -> None:
        agent.call("send_email", ARGUMENTS, justification="the user asked for the weekly report")

    figures = {
        "proof signing (ES256, JWK cached)": measure(sign, n, rounds),
        "call request: canonical arguments + proof + body + headers": measure(
            build_call, n, rounds
        ),
        "bind request (x5c + proof)": measure(build_bind, n, rounds),
        "Agent.call, client side (in-memory transport)": measure(agent_call, n, rounds),
    }
    agent.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=3000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ztgate-sdkbench-") as scratch:
        figures = run(Path(scratch), options.n, options.rounds)
    table = Table("operation", "median µs", "p99 µs", title=f"SDK signing ({machine()})")
    lines = [
        f"Machine: {machine()}.",
        "",
        "| operation | median µs | p99 µs |",
        "|---|---|---|",
    ]
    for name, (median, p99) in figures.items():
        table.add_row(name, f"{median * 1e6:.1f}", f"{p99 * 1e6:.1f}")
        lines.append(f"| {name} | {median * 1e6:.1f} | {p99 * 1e6:.1f} |")
    Console().print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "sdk_signing.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "us": {
                    name: {"median": median * 1e6, "p99": p99 * 1e6}
                    for name, (median, p99) in figures.items()
                },
            },
            indent=2,
        )
    )
    (out / "sdk_signing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
