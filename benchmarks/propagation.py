"""How fast a revocation or a kill switch given to one replica stops calls on another.

Two `ztgate serve` replicas (A and B) on one PostgreSQL and one Redis
(`ztgate.cluster.LocalCluster`, as `make run-cluster`, without going
through HAProxy: the calls go to B, the order to A). Each trial has an
agent of its own, registered, with a task and a warrant; it calls B once
(allowed), then an admin revokes it on A (`POST /v1/revocations`, or
`POST /v1/containment/kill` for the kill switch), and as soon as A has
answered, the agent calls B back to back until B denies.

The delay is from A's answer to B's denying answer: it contains at least
one call's round trip on B. `allowed after` counts calls B still allowed
after A had answered (0 means B saw the change on its very next call).
Replicas learn of changes by broadcast (Redis pub/sub,
`ztgate.store.broadcasts`): A publishes once its transaction has committed,
before it answers; B re-reads the store's change generations when the
message arrives, so a call B takes before its event loop has read the
message can still be allowed.

    python benchmarks/propagation.py [--trials 50]

Writes benchmarks/results/propagation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import (
    ROOT,
    echo_upstream,
    free_port,
    machine,
    report_progress,
)
from overhead import ARGUMENTS, settings_toml
from rich.console import Console

from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.cluster import LocalCluster
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.tasks.registry import TaskRegistry
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint

TOOL = "echo"


class Caller:
    """One agent of one trial: registered, a task, signed calls."""

    def __init__(self, workdir: Path, number: int) -> None:
        self.spiffe_id = f"spiffe://ztgate.local/agent/propagation-{number}"
        settings = load_settings(workdir / "ztgate.toml")
        database = settings.open_database()
        clock = SystemClock()
        try:
            EntryRegistry(database, clock, settings.identity.trust_domain).register(
                self.spiffe_id, [f"unix:path:/opt/bench/propagation-{number}"]
            )
            ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
            self.key = ca.issue_x509_svid(self.spiffe_id, ttl=3600).private_key
            self.token = ca.issue_jwt_svid(self.spiffe_id, ["ztgate"], ttl=3600)
            task, _, warrant = TaskRegistry.from_settings(settings, database, clock).create(
                principal="admin",
                agent=self.spiffe_id,
                intent="measure propagation",
                scope={"tools": {TOOL: {}}},
                agent_jkt=key_thumbprint(self.key),
                ttl=3600,
            )
        finally:
            database.dispose()
        assert warrant is not None
        self.task_id, self.warrant = task.id, warrant
        self.counter = 0
        self.last = ""

    def call(self, client: httpx.Client) -> int:
        self.counter += 1
        arguments = {**ARGUMENTS, "subject": f"propagation {self.counter}"}
        signed = proof.sign(
            self.key,
            audience="ztgate",
            task_id=self.task_id,
            warrant=self.warrant,
            canonical=canonical_json(arguments),
            tool=TOOL,
            issued_at=time.time(),
        )
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Ztgate-Warrant": self.warrant,
            "Ztgate-Proof": signed,
        }
        answer = client.post(
            "/v1/calls", json={"tool": TOOL, "arguments": arguments}, headers=headers
        )
        self.last = answer.text
        return answer.status_code


def trial(caller: Caller, admin: httpx.Client, on_b: httpx.Client, kind: str) -> dict[str, Any]:
    status = caller.call(on_b)
    if status != 200:
        raise SystemExit(
            f"the first call of {caller.spiffe_id} on B was answered {status}: {caller.last}"
        )
    if kind == "revocation":
        path, body = "/v1/revocations", {"kind": "spiffe_id", "value": caller.spiffe_id}
    else:
        path, body = "/v1/containment/kill", {"scope": "agent", "target": caller.spiffe_id}
    sent = time.perf_counter()
    answer = admin.post(path, json=body)
    acknowledged = time.perf_counter()
    if answer.status_code != 201:
        raise SystemExit(f"{path} on A: {answer.status_code} {answer.text}")
    allowed_after = 0
    while True:
        status = caller.call(on_b)
        if status != 200:
            denied = time.perf_counter()
            break
        allowed_after += 1
        if allowed_after > 1000:
            raise SystemExit(f"B still allows {caller.spiffe_id} after 1000 calls")
    return {
        "order_ms": 1000 * (acknowledged - sent),
        "delay_ms": 1000 * (denied - acknowledged),
        "allowed_after": allowed_after,
        "denied_status": status,
    }


def summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    delays = sorted(p["delay_ms"] for p in points)
    cuts = statistics.quantiles(delays, n=100, method="inclusive")
    return {
        "trials": len(points),
        "p50_ms": statistics.median(delays),
        "p99_ms": cuts[98],
        "max_ms": delays[-1],
        "order_p50_ms": statistics.median(p["order_ms"] for p in points),
        "allowed_after_total": sum(p["allowed_after"] for p in points),
        "denied_status": sorted({p["denied_status"] for p in points}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    options = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {"machine": machine(), "trials": options.trials}
    with (
        tempfile.TemporaryDirectory(prefix="ztgate-propagation-") as scratch,
        echo_upstream(cpus=None) as upstream_url,
    ):
        workdir = Path(scratch)
        with LocalCluster(
            workdir, replicas=2, port=free_port(), config_text=settings_toml(0, upstream_url)
        ) as cluster:
            database = load_settings(cluster.config).open_database()
            try:
                api_key = PrincipalRegistry(database, SystemClock()).create_key("admin")[1]
            finally:
                database.dispose()
            one, two = cluster.members
            headers = {"Authorization": f"Bearer {api_key}"}
            callers = [Caller(workdir, n) for n in range(2 * options.trials)]
            total = 2 * options.trials
            with (
                httpx.Client(base_url=one.url, headers=headers, timeout=10) as admin,
                httpx.Client(base_url=two.url, timeout=10) as on_b,
            ):
                for index, kind in enumerate(("revocation", "kill")):
                    points = []
                    for n in range(options.trials):
                        caller = callers[index * options.trials + n]
                        points.append(trial(caller, admin, on_b, kind))
                        report_progress(index * options.trials + n + 1, total, kind)
                    results[kind] = {"summary": summary(points), "points": points}
                    figures = results[kind]["summary"]
                    console.print(
                        f"{kind} on A -> denied on B: p50 {figures['p50_ms']:.1f} ms, "
                        f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms; "
                        f"calls allowed after A answered: {figures['allowed_after_total']}"
                    )
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "propagation.json").write_text(json.dumps(results, indent=2))
    lines = [
        "| change on A | trials | p50 ms | p99 ms | max ms | calls B allowed after A answered |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("revocation", "kill"):
        s = results[kind]["summary"]
        lines.append(
            f"| {kind} | {s['trials']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
            f"{s['max_ms']:.1f} | {s['allowed_after_total']} |"
        )
    (out / "propagation.md").write_text("\n".join(lines) + "\n")
    console.print("\n".join(lines))


if __name__ == "__main__":
    main()
