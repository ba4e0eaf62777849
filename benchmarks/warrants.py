"""What a task-scoped call costs the gateway: authenticate + warrant + proof + scope.

In-process, through the gateway's own checks (built from settings exactly as
`ztgate serve` builds them), one fresh proof per call (signed beforehand: the
agent's signing is not the gateway's cost; it is measured separately, as the
SDK does it). Medians over many calls, best of several rounds.

    python benchmarks/warrants.py [--rounds 5] [--n 2000]

Writes benchmarks/results/warrants.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import ROOT, machine
from rich.console import Console
from rich.table import Table

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.gateway import Gateway
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.models import Credentials
from ztgate.pipeline import CallContext
from ztgate.testing import make_call, make_settings
from ztgate.warrants import proof as proofs
from ztgate.warrants.jwk import key_thumbprint, public_jwk

AGENT = "spiffe://ztgate.local/agent/bench"
ARGUMENTS = {"to": "ops@acme.example", "subject": "weekly report", "amount": 42}
SCOPE = {
    "tools": {
        "send_email": {
            "limits": {
                "to": {"domains": ["acme.example"]},
                "subject": {"pattern": "[^\\r\\n]{1,200}"},
                "amount": {"minimum": 0, "maximum": 100},
            }
        }
    }
}


async def measure(
    step: Callable[[int], Awaitable[Any]], n: int, rounds: int
) -> tuple[float, float]:
    """Median and p99 seconds of `step(i)` over `n` calls, best round by median."""
    best: list[float] = []
    offset = 0
    for _ in range(rounds):
        samples = []
        for i in range(n):
            started = time.perf_counter()
            await step(offset + i)
            samples.append(time.perf_counter() - started)
        offset += n
        if not best or statistics.median(samples) < statistics.median(best):
            best = samples
    best.sort()
    return statistics.median(best), best[int(len(best) * 0.99)]


async def run(workdir: Path, n: int, rounds: int) -> dict[str, tuple[float, float]]:
    settings = make_settings(workdir, '[gateway]\nauthentication = "required"\n')
    clock = SystemClock()
    database = settings.open_database()
    EntryRegistry(database, clock, "ztgate.local").register(AGENT, ["unix:uid:0"])
    gateway = Gateway.from_settings(settings)
    await gateway.start()
    assert gateway.identity is not None and gateway.warrants is not None
    ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
    svid = ca.issue_x509_svid(AGENT)
    assert svid.private_key is not None
    key = svid.private_key
    jkt = key_thumbprint(key)
    registry = gateway.warrants.registry
    task, _, warrant = registry.create(
        principal="admin", agent=AGENT, intent="send the weekly report", scope=SCOPE, agent_jkt=jkt
    )
    assert warrant is not None
    gateway.refresh()
    gateway.warrants.changed()
    bearer = ca.issue_jwt_svid(AGENT, ["ztgate"])
    canonical = canonical_json(ARGUMENTS)
    jwk = public_jwk(key)
    total = n * rounds + 10

    def sign(_: int) -> str:
        return proofs.sign(
            key,
            audience="ztgate",
            task_id=task.id,
            warrant=warrant,
            canonical=canonical,
            tool="send_email",
            issued_at=time.time(),
            jwk=jwk,
        )

    sign_median, sign_p99 = await measure(lambda i: asyncio.sleep(0, sign(i)), n, rounds)
    signed = [sign(i) for i in range(total * 2)]

    def call(i: int) -> Any:
        return make_call(
            "send_email",
            ARGUMENTS,
            credentials=Credentials(bearer=bearer, warrant=warrant, proof=signed[i]),
        )

    identity, warrants = gateway.identity, gateway.warrants

    async def authenticate(i: int) -> None:
        await identity.check(call(i), CallContext(clock))

    async def chain(i: int) -> None:
        ctx = CallContext(clock)
        c = call(i)
        for check in (identity.check, *warrants.checks()):
            verdict = await check(c, ctx)
            assert verdict.outcome.value == "allow", verdict.reason
            ctx.facts.update(verdict.facts)

    async def warrant_only(i: int) -> None:
        ctx = CallContext(clock)
        ctx.facts["principal.spiffe_id"] = AGENT
        await warrants.warrant_check(call(i), ctx)

    figures = {"SDK: sign one proof (ES256)": (sign_median, sign_p99)}
    figures["authenticate (JWT-SVID, warm)"] = await measure(authenticate, n, rounds)
    figures["warrant check (warm)"] = await measure(warrant_only, n, rounds)
    base = n * rounds + 5
    figures["authenticate + warrant + proof + scope"] = await measure(
        lambda i: chain(base + i), n, rounds
    )
    await gateway.stop()
    database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ztgate-warrantbench-") as scratch:
        figures = asyncio.run(run(Path(scratch), options.n, options.rounds))
    table = Table("operation", "median ms", "p99 ms", title=f"warrants ({machine()})")
    lines = [f"Machine: {machine()}.", "", "| operation | median ms | p99 ms |", "|---|---|---|"]
    for name, (median, p99) in figures.items():
        table.add_row(name, f"{median * 1000:.3f}", f"{p99 * 1000:.3f}")
        lines.append(f"| {name} | {median * 1000:.3f} | {p99 * 1000:.3f} |")
    Console().print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "warrants.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "ms": {k: {"median": m * 1000, "p99": p * 1000} for k, (m, p) in figures.items()},
            },
            indent=2,
        )
    )
    (out / "warrants.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
