"""What a policy decision costs per call: the default set, and a set of 1,000 policies.

In-process, through the `policy` check exactly as the gateway runs it (the
directory stat that notices edits, the facts, the Cedar request, the
evaluation), for an authenticated, in-scope call to a write tool that the
policies allow. Also: the evaluation alone, the request alone, the same
decision with the policy text re-parsed on every call (what keeping the
parsed `PolicySet` saves), and what a (re)load costs. Medians over many
calls, best of several rounds.

    python benchmarks/policy.py [--rounds 5] [--n 2000]

Writes benchmarks/results/policy.{json,md}.
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

import cedarpy
from _harness import ROOT, machine
from rich.console import Console
from rich.table import Table

from ztgate.clock import SystemClock
from ztgate.models import Outcome
from ztgate.pipeline import CallContext
from ztgate.policy import engine, entities, loader
from ztgate.policy.check import PolicyCheck
from ztgate.policy.live import LivePolicies
from ztgate.tasks.registry import Task
from ztgate.tasks.scope import parse_scope
from ztgate.testing import make_call, make_tool
from ztgate.tools.catalog import Catalog
from ztgate.tools.model import RiskTier, Tool

AGENT = "spiffe://ztgate.local/agent/bench"
ARGUMENTS = {"to": "ops@acme.example", "subject": "weekly report", "amount": 42}
FACTS = {
    "principal.spiffe_id": AGENT,
    "principal.trust_domain": "ztgate.local",
    "principal.local": True,
    "scope.within": True,
    "task.id": "task-1",
    "warrant.depth": 0,
    "warrant.delegated_by": [],
}


def tools() -> list[Tool]:
    send = make_tool(
        "send_email",
        risk=RiskTier.WRITE,
        url="https://mail.internal/send",
        schema={
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "amount": {"type": "integer"},
            },
            "required": ["to", "subject"],
        },
    )
    wire = make_tool(
        "wire_money",
        risk=RiskTier.CRITICAL,
        url="https://bank.internal/wire",
        schema={
            "type": "object",
            "properties": {"amount": {"type": "integer"}, "iban": {"type": "string"}},
        },
    )
    search = make_tool("search", schema={"type": "object", "properties": {"q": {"type": "string"}}})
    fillers = [make_tool(f"tool_{i}", risk=RiskTier.WRITE) for i in range(7)]
    return [send, wire, search, *fillers]


def thousand() -> str:
    """The default set and 995 more: per-agent, per-host, typed-argument and task policies."""
    parts = [loader.default_set()[0].text]
    parts += [
        f'forbid (principal == Agent::"spiffe://ztgate.local/agent/blocked-{i}", action, '
        "resource);\n"
        for i in range(400)
    ]
    parts += [
        'forbid (principal, action in Action::"call", resource)\n'
        f'when {{ context.hosts.contains("bad-{i}.example") }};\n'
        for i in range(300)
    ]
    parts += [
        'forbid (principal, action == Action::"call:send_email", resource)\n'
        f"when {{ context.arguments has amount && context.arguments.amount > {1000 + i} }};\n"
        for i in range(200)
    ]
    parts += [
        'permit (principal, action == Action::"call:search", resource)\n'
        f'when {{ context has task && context.task.intent like "*project-{i}*" }};\n'
        for i in range(95)
    ]
    return "\n".join(parts)


async def measure(step: Callable[[], Awaitable[Any]], n: int, rounds: int) -> tuple[float, float]:
    """Median and p99 seconds of `step()` over `n` calls, best round by median."""
    best: list[float] = []
    for _ in range(rounds):
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            await step()
            samples.append(time.perf_counter() - started)
        if not best or statistics.median(samples) < statistics.median(best):
            best = samples
    best.sort()
    return statistics.median(best), best[int(len(best) * 0.99)]


def timed(action: Callable[[], Any], times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


async def figures_for(
    label: str, text: str, n: int, rounds: int, scratch: Path
) -> dict[str, tuple[float, float]]:
    directory = scratch / label
    directory.mkdir()
    (directory / "policies.cedar").write_text(text, encoding="utf-8")
    listed = tools()
    catalog = Catalog(listed)
    clock = SystemClock()
    task = Task(
        id="task-1",
        principal="admin",
        agent=AGENT,
        intent="send the weekly report",
        scope=parse_scope({"tools": {"send_email": {}}}),
        budget_calls=None,
        budget_spend=None,
        state="active",
        created_at=time.time(),
        expires_at=time.time() + 3600,
    )
    check = PolicyCheck(LivePolicies(directory, clock), tasks=lambda task_id: task)
    check.start(lambda: catalog)
    snapshot = check.live.snapshot
    assert snapshot is not None
    call = make_call("send_email", ARGUMENTS)
    entry = catalog.get("send_email")

    async def decide() -> None:
        ctx = CallContext(clock, tool=entry)
        ctx.facts.update(FACTS)
        verdict = await check(call, ctx)
        assert verdict.outcome is Outcome.ALLOW, verdict.reason

    facts = check.facts(call, _context(clock, entry), snapshot)
    request = entities.build(snapshot, facts)

    async def evaluate() -> None:
        engine.evaluate(snapshot, request)

    async def build() -> None:
        entities.build(snapshot, facts)

    results = {
        f"{label}: policy check per call": await measure(decide, n, rounds),
        f"{label}: Cedar evaluation alone": await measure(evaluate, n, rounds),
        f"{label}: facts to Cedar request": await measure(build, n, rounds),
    }
    if label == "default set":
        cedar = request.cedar()
        source = text

        async def reparse() -> None:
            cedarpy.is_authorized(cedar, source, request.entities)

        results[f"{label}: evaluation, policy text re-parsed per call"] = await measure(
            reparse, max(n // 4, 100), rounds
        )
    load = timed(lambda: loader.load(loader.read(directory), listed), 3)
    results[f"{label}: load (parse + validate, on start and each reload)"] = (load, load)
    return results


def _context(clock: SystemClock, entry: Any) -> CallContext:
    ctx = CallContext(clock, tool=entry)
    ctx.facts.update(FACTS)
    return ctx


async def run(n: int, rounds: int) -> dict[str, tuple[float, float]]:
    figures: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ztgate-policybench-") as scratch:
        default = loader.default_set()[0].text
        figures.update(await figures_for("default set", default, n, rounds, Path(scratch)))
        figures.update(await figures_for("1,000 policies", thousand(), n, rounds, Path(scratch)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=2000)
    options = parser.parse_args()
    figures = asyncio.run(run(options.n, options.rounds))
    table = Table("operation", "median ms", "p99 ms", title=f"policy ({machine()})")
    lines = [f"Machine: {machine()}.", "", "| operation | median ms | p99 ms |", "|---|---|---|"]
    for name, (median, p99) in figures.items():
        table.add_row(name, f"{median * 1000:.3f}", f"{p99 * 1000:.3f}")
        lines.append(f"| {name} | {median * 1000:.3f} | {p99 * 1000:.3f} |")
    Console().print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "policy.json").write_text(
        json.dumps(
            {
                "machine": machine(),
                "cedarpy": cedarpy_version(),
                "ms": {k: {"median": m * 1000, "p99": p * 1000} for k, (m, p) in figures.items()},
            },
            indent=2,
        )
    )
    (out / "policy.md").write_text("\n".join(lines) + "\n")


def cedarpy_version() -> str:
    from importlib.metadata import version

    return version("cedarpy")


if __name__ == "__main__":
    main()
