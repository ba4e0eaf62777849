"""What identity costs: SVID issuance, verification, the authenticate check, the Workload API.

In-process timings (best of several rounds, per operation) and real
round-trips with py-spiffe's own client against the Workload API on a Unix
socket, this process registered by uid and executable path.

    python benchmarks/identity.py [--rounds 5] [--n 300]

Writes benchmarks/results/identity.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import ROOT, machine
from cryptography.hazmat.primitives.serialization import Encoding
from rich.console import Console
from rich.table import Table
from spiffe import WorkloadApiClient

from ztgate.clock import SystemClock
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import trust_bundle
from ztgate.identity.check import AuthenticationCheck
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import RevocationSet
from ztgate.identity.service import serve_workload_api
from ztgate.identity.verify import verify_jwt_svid, verify_x509_svid
from ztgate.models import Credentials
from ztgate.pipeline import CallContext
from ztgate.testing import make_call, make_settings


def best_per_call(fn: Callable[[], Any], n: int, rounds: int) -> float:
    """Best-of-`rounds` mean seconds per call over `n` calls."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best


def in_process(workdir: Path, n: int, rounds: int) -> dict[str, float]:
    clock = SystemClock()
    ca = CertificateAuthority.create(workdir / "ca", "bench.example", clock)
    spiffe_id = "spiffe://bench.example/agent/bench"
    svid = ca.issue_x509_svid(spiffe_id)
    token = ca.issue_jwt_svid(spiffe_id, ["ztgate"])
    bundles = {"bench.example": trust_bundle(ca)}
    revocations = RevocationSet()
    check = AuthenticationCheck(
        audience="ztgate",
        bundles=lambda: bundles,
        revocations=lambda: revocations,
        registered=lambda _id: True,
    )
    der = b"".join(c.public_bytes(Encoding.DER) for c in svid.chain)
    x509_call = make_call(credentials=Credentials(client_certificate=der))
    jwt_call = make_call(credentials=Credentials(bearer=token))
    ctx = CallContext(clock)
    loop = asyncio.new_event_loop()

    def run_check(call: Any) -> None:
        loop.run_until_complete(check(call, ctx))

    def cold(call: Any) -> None:
        check.clear_cache()  # as if each credential were new
        run_check(call)

    figures = {
        "issue X.509-SVID (new key)": best_per_call(
            lambda: ca.issue_x509_svid(spiffe_id), n, rounds
        ),
        "issue JWT-SVID": best_per_call(
            lambda: ca.issue_jwt_svid(spiffe_id, ["ztgate"]), n, rounds
        ),
        "verify X.509-SVID chain": best_per_call(
            lambda: verify_x509_svid(list(svid.chain), bundles, clock.now()), n, rounds
        ),
        "verify JWT-SVID": best_per_call(
            lambda: verify_jwt_svid(token, "ztgate", bundles, clock.now()), n, rounds
        ),
        "authenticate check, X.509, warm cache": best_per_call(
            lambda: run_check(x509_call), n, rounds
        ),
        "authenticate check, X.509, cold": best_per_call(lambda: cold(x509_call), n, rounds),
        "authenticate check, JWT-SVID, warm cache": best_per_call(
            lambda: run_check(jwt_call), n, rounds
        ),
        "authenticate check, JWT-SVID, cold": best_per_call(lambda: cold(jwt_call), n, rounds),
    }
    loop.close()
    return figures


def workload_api(workdir: Path, n: int) -> dict[str, float]:
    workdir.mkdir(parents=True)
    settings = make_settings(workdir)
    database = settings.open_database()
    exe = os.path.realpath(sys.executable)
    EntryRegistry(database, SystemClock(), settings.identity.trust_domain).register(
        f"spiffe://{settings.identity.trust_domain}/agent/bench",
        [f"unix:uid:{os.getuid()}", f"unix:path:{exe}"],
    )
    database.dispose()
    socket_path = workdir / "agent.sock"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(serve_workload_api(settings, socket_path, stop)),
        daemon=True,
    )
    thread.start()
    for _ in range(200):
        if socket_path.exists():
            break
        time.sleep(0.01)
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        with WorkloadApiClient(socket_path=f"unix://{socket_path}") as client:
            client.fetch_x509_svid()
            figures["first FetchX509SVID (connect, attest, issue)"] = time.perf_counter() - started
            for name, fetch in (
                ("FetchX509SVID, warm", client.fetch_x509_svid),
                ("FetchJWTSVID, warm", lambda: client.fetch_jwt_svid(audience={"ztgate"})),
            ):
                samples = []
                for _ in range(n):
                    t = time.perf_counter()
                    fetch()
                    samples.append(time.perf_counter() - t)
                figures[f"{name} (median)"] = statistics.median(samples)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=300)
    options = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="ztgate-idbench-") as scratch:
        figures = in_process(Path(scratch) / "a", options.n, options.rounds)
        figures |= workload_api(Path(scratch) / "b", max(20, options.n // 3))
    table = Table("operation", "ms", title=f"identity ({machine()})")
    lines = [f"Machine: {machine()}.", "", "| operation | ms |", "|---|---|"]
    for name, seconds in figures.items():
        table.add_row(name, f"{seconds * 1000:.3f}")
        lines.append(f"| {name} | {seconds * 1000:.3f} |")
    console.print(table)
    out = ROOT / "benchmarks/results"
    out.mkdir(exist_ok=True)
    (out / "identity.json").write_text(
        json.dumps(
            {"machine": machine(), "ms": {k: v * 1000 for k, v in figures.items()}}, indent=2
        )
    )
    (out / "identity.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
