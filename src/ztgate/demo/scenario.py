"""`ztgate demo`: a scripted scenario against a live gateway on loopback.

It starts a real gateway process (with the demo tools) in a scratch
directory, makes allowed and refused calls over HTTP, shows what happened and
why, and verifies the audit chain.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from spiffe import WorkloadApiClient

from ztgate.audit.checkpoint import load_public_key
from ztgate.audit.reader import AuditReader
from ztgate.cli.init import initialise
from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.identity.entries import EntryRegistry


@dataclass(frozen=True)
class Step:
    """One scripted request and what the demo expects of it."""

    title: str
    body: Any
    expect: int
    raw: bytes | None = None
    authenticated: bool = True


STEPS = [
    Step(
        "Call without an identity",
        {"tool": "get_weather", "arguments": {"city": "Lisbon"}},
        401,
        authenticated=False,
    ),
    Step(
        "Read the weather",
        {
            "tool": "get_weather",
            "arguments": {"city": "Lisbon"},
            "justification": "the user asked for the forecast",
        },
        200,
    ),
    Step(
        "Send an email",
        {
            "tool": "send_email",
            "arguments": {
                "to": "alice@example.com",
                "subject": "Forecast",
                "body": "Sunny in Lisbon.",
            },
            "justification": "the user asked to mail the forecast to Alice",
        },
        200,
    ),
    Step("Call a tool nobody registered", {"tool": "delete_all_files", "arguments": {}}, 403),
    Step(
        "Smuggle an extra argument",
        {"tool": "get_weather", "arguments": {"city": "Lisbon", "shell": "rm -rf /"}},
        403,
    ),
    Step(
        "Send to something that is not an address",
        {"tool": "send_email", "arguments": {"to": "not an address", "subject": "x", "body": "y"}},
        403,
    ),
    Step("Send malformed JSON", None, 400, raw=b'{"tool": "echo", "arguments": {'),
    Step(
        "Send JSON nested 100 levels deep",
        None,
        400,
        raw=b'{"tool":"echo","arguments":{"a":' + b"[" * 100 + b"]" * 100 + b"}}",
    ),
    Step(
        "Send a 2 MiB body",
        None,
        413,
        raw=b'{"tool":"echo","arguments":{"a":"' + b"x" * 2_097_152 + b'"}}',
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def live_gateway(workdir: Path) -> Iterator[tuple[str, Settings]]:
    """Initialise `workdir` and run a gateway process there until the block ends."""
    gateway_port, tools_port = _free_port(), _free_port()
    config = workdir / "ztgate.toml"
    initialise(config, demo=True, force=False)
    config.write_text(config.read_text().replace(":8471/", f":{tools_port}/"))
    env = dict(
        os.environ, ZTGATE_GATEWAY__PORT=str(gateway_port), ZTGATE_DEMO__PORT=str(tools_port)
    )
    settings, _ = initialise(config, demo=True, force=False)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "ztgate", "--config", str(config), "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        _wait_ready(url, process)
        yield url, settings
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"the gateway exited: {error.strip()[-500:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the gateway did not become ready within 20 s")


def run_demo(console: Console) -> bool:
    """Run the scenario; True when every step behaved as expected."""
    with tempfile.TemporaryDirectory(prefix="ztgate-demo-") as scratch:
        workdir = Path(scratch)
        console.print(f"[bold]ztgate demo[/] — starting a gateway and the demo tools in {workdir}")
        with live_gateway(workdir) as (url, settings):
            token = agent_identity(console, settings)
            table = Table("#", "request", "HTTP", "outcome", "why / result", title="Calls")
            ok = token is not None
            with httpx.Client(base_url=url, timeout=10) as client:
                for number, step in enumerate(STEPS, start=1):
                    response = _send(client, step, token or "")
                    ok &= response.status_code == step.expect
                    table.add_row(
                        str(number), step.title, str(response.status_code), *_describe(response)
                    )
            console.print(table)
        ok &= _show_audit(console, settings)
    console.print(
        "[green]demo finished as expected[/]" if ok else "[red]demo: something unexpected[/]"
    )
    return ok


def agent_identity(console: Console, settings: Settings) -> str | None:
    """Register this process as an agent; fetch its SVIDs from the live Workload API.

    Returns the JWT-SVID the demo's calls present, or None if the identity is wrong.
    """
    spiffe_id = f"spiffe://{settings.identity.trust_domain}/agent/demo"
    database = settings.open_database()
    try:
        EntryRegistry(database, SystemClock(), settings.identity.trust_domain).register(
            spiffe_id,
            [f"unix:uid:{os.getuid()}", f"unix:path:{os.path.realpath(sys.executable)}"],
            owner="demo",
        )
    finally:
        database.dispose()
    socket_path = settings.path(settings.identity.workload_socket).resolve()
    with WorkloadApiClient(socket_path=f"unix://{socket_path}") as client:
        svid = client.fetch_x509_svid()
        token = client.fetch_jwt_svid(audience={settings.gateway.audience})
    console.print(
        f"identity: this process, registered by uid and executable, got the X.509-SVID "
        f"[bold]{svid.spiffe_id}[/] (valid until {svid.leaf.not_valid_after_utc:%H:%M:%S} UTC) "
        f"and a JWT-SVID for audience {settings.gateway.audience!r} from the SPIFFE Workload "
        "API; every call below but the first presents it"
    )
    if str(svid.spiffe_id) != spiffe_id or str(token.spiffe_id) != spiffe_id:
        return None
    return str(token.token)


def _send(client: httpx.Client, step: Step, token: str) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if step.authenticated:
        headers["Authorization"] = f"Bearer {token}"
    if step.raw is not None:
        return client.post("/v1/calls", content=step.raw, headers=headers)
    return client.post("/v1/calls", json=step.body, headers=headers)


def _describe(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    if response.status_code == 200:
        return "[green]allowed[/]", str(body["result"])[:70]
    reasons = body.get("reasons")
    why = "; ".join(r["reason"] for r in reasons) if reasons else body.get("detail", "")
    return "[red]refused[/]", str(why)[:110]


def _show_audit(console: Console, settings: Settings) -> bool:
    database = settings.open_database()
    try:
        reader = AuditReader(database)
        report = reader.verify(load_public_key(settings.path(settings.audit.public_key)))
    finally:
        database.dispose()
    for chain in report.chains:
        state = (
            "[green]verifies[/]" if chain.ok else f"[red]BROKEN at record {chain.first_bad_seq}[/]"
        )
        console.print(
            f"audit chain {chain.chain}: {chain.records} records, "
            f"{chain.checkpoints} signed checkpoints — {state}"
        )
    return report.ok and bool(report.chains)
