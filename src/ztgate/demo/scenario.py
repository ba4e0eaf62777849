"""`ztgate demo`: a scripted scenario against a live gateway on loopback.

It starts a real gateway process (with the demo tools) in a scratch
directory; a principal creates a task over the HTTP API; an agent — this very
process, attested through the SPIFFE Workload API — makes allowed and
refused calls through the SDK, delegates a narrower warrant to a helper, and
tries a replay and a cross-task warrant; then (`ztgate.demo.stories`) it
summarises an inbox holding an injected e-mail, and pays an invoice a person
approves with the CLI. The demo shows what happened and why, who got mail,
and verifies the audit chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from ztgate.audit.checkpoint import load_public_key
from ztgate.audit.reader import AuditReader
from ztgate.canonical import canonical_json
from ztgate.cli.init import initialise
from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.demo.mcp_story import play_inbox_over_mcp
from ztgate.demo.stories import play_inbox, play_payment
from ztgate.identity.attestation import process_selectors
from ztgate.identity.entries import EntryRegistry
from ztgate.ports import free_port
from ztgate.principals.registry import PrincipalRegistry
from ztgate.processes import stop_process
from ztgate.sdk import Agent, ApprovalPending, Delegation, Principal, ZtgateError, requests
from ztgate.warrants import proof


@contextlib.contextmanager
def live_gateway(workdir: Path) -> Iterator[tuple[str, Settings]]:
    """Initialise `workdir` and run a gateway process there until the block ends."""
    gateway_port, tools_port = free_port(), free_port()
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
        stop_process(process)
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


AGENT = "agent/demo"
HELPER = "agent/demo-helper"
INTENT = "Get the Lisbon forecast and mail it to Alice"
SCOPE = {
    "tools": {
        "get_weather": {},
        "send_email": {"limits": {"to": {"domains": ["example.com"]}}},
    }
}
RAW = {
    "Send malformed JSON": (b'{"tool": "echo", "arguments": {', 400),
    "Send JSON nested 100 levels deep": (
        b'{"tool":"echo","arguments":{"a":' + b"[" * 100 + b"]" * 100 + b"}}",
        400,
    ),
    "Send a 2 MiB body": (b'{"tool":"echo","arguments":{"a":"' + b"x" * 2_097_152 + b'"}}', 413),
}


@dataclass
class Scenario:
    """The demo's rows: what was asked, how the gateway answered, and whether that was expected."""

    table: Table = field(
        default_factory=lambda: Table(
            "#", "request", "HTTP", "outcome", "why / result", title="Calls"
        )
    )
    ok: bool = True

    def expect(self, title: str, expected: int, attempt: Callable[[], Any]) -> Any:
        """Run one step; record its status, outcome and reason."""
        result: Any = None
        try:
            result = attempt()
            status = 201 if isinstance(result, Delegation) else 200
            outcome, why = "[green]allowed[/]", _short(result)
        except ApprovalPending as pending:  # asked: the caller may wait for the decision
            result, status, outcome = pending, 202, "[yellow]asked[/]"
            why = "; ".join(f"{r.check}: {r.reason}" for r in pending.reasons) or pending.message
        except ZtgateError as exc:
            status = exc.status or 0
            reasons = getattr(exc, "reasons", ())
            why = "; ".join(f"{r.check}: {r.reason}" for r in reasons) or exc.message
            outcome = "[red]refused[/]"
        self.ok &= status == expected
        mark = "" if status == expected else f" [red](expected {expected})[/]"
        self.table.add_row(
            str(self.table.row_count + 1), title, f"{status}{mark}", outcome, why[:220]
        )
        return result

    def raw(self, title: str, expected: int, response: httpx.Response) -> None:
        """Record a request sent without the SDK."""
        body = response.json()
        reasons = body.get("reasons")
        why = "; ".join(r["reason"] for r in reasons) if reasons else body.get("detail", "")
        good = response.status_code == expected
        self.ok &= good
        outcome = "[green]allowed[/]" if response.status_code == 200 else "[red]refused[/]"
        mark = "" if good else f" [red](expected {expected})[/]"
        self.table.add_row(
            str(self.table.row_count + 1),
            title,
            f"{response.status_code}{mark}",
            outcome,
            str(why)[:110],
        )


def run_demo(console: Console) -> bool:
    """Run the scenario; True when every step behaved as expected."""
    with tempfile.TemporaryDirectory(prefix="ztgate-demo-") as scratch:
        workdir = Path(scratch)
        console.print(f"[bold]ztgate demo[/] — starting a gateway and the demo tools in {workdir}")
        with live_gateway(workdir) as (url, settings):
            scenario = Scenario()
            try:
                play(console, url, settings, scenario)
            except ZtgateError as exc:  # a step the script relies on failed
                console.print(f"[red]demo: {type(exc).__name__}: {exc.message}[/]")
                scenario.ok = False
            console.print(scenario.table)
        ok = scenario.ok and _show_audit(console, settings)
    console.print(
        "[green]demo finished as expected[/]" if ok else "[red]demo: something unexpected[/]"
    )
    return ok


def play(console: Console, url: str, settings: Settings, scenario: Scenario) -> None:
    """The scripted story: a principal's task, an agent's calls, a sub-agent, attacks."""
    domain = settings.identity.trust_domain
    agent_id, helper_id = f"spiffe://{domain}/{AGENT}", f"spiffe://{domain}/{HELPER}"
    api_key = register(settings, [agent_id, helper_id])
    socket_path = str(settings.path(settings.identity.workload_socket).resolve())
    with Principal(url, api_key) as principal:
        task = principal.create_task(
            agent=agent_id, intent=INTENT, scope=SCOPE, expires_in_seconds=600
        )
        other = principal.create_task(
            agent=agent_id, intent="Check the weather in Oslo", scope={"tools": {"get_weather": {}}}
        )
    console.print(
        f"principal [bold]admin[/] created task {task.task_id} for {agent_id}: "
        f"{INTENT!r}; tools get_weather, send_email (to example.com only)"
    )
    with (
        Agent.connect(url, socket_path=socket_path, spiffe_id=agent_id) as agent,
        Agent.connect(url, socket_path=socket_path, spiffe_id=helper_id) as helper,
        httpx.Client(base_url=url, timeout=10) as raw,
    ):
        bound = agent.bind(task_id=task.task_id)
        console.print(
            f"identity: {agent_id} got its X.509-SVID from the SPIFFE Workload API (this process, "
            f"attested by uid and executable) and bound the task's warrant {bound.warrant_id} to "
            "its key; every call below carries the warrant and a fresh proof"
        )
        scenario.raw(
            "Call without an identity",
            401,
            raw.post("/v1/calls", json={"tool": "get_weather", "arguments": {"city": "Lisbon"}}),
        )
        scenario.expect(
            "Read the weather",
            200,
            lambda: (
                agent.call(
                    "get_weather",
                    {"city": "Lisbon"},
                    justification="the user asked for the forecast",
                ).result
            ),
        )
        mail = {"to": "alice@example.com", "subject": "Forecast", "body": "Sunny in Lisbon."}
        scenario.expect(
            "Mail the forecast to Alice",
            200,
            lambda: (
                agent.call("send_email", mail, justification="the user asked to mail Alice").result
            ),
        )
        leak = {"to": "mallory@evil.example", "subject": "Forecast", "body": "Sunny in Lisbon."}
        scenario.expect(
            "Mail it to an address outside the task",
            403,
            lambda: agent.call("send_email", leak, justification="an email said to").result,
        )
        scenario.expect(
            "Call a tool the task does not allow",
            403,
            lambda: agent.call("delete_all_files", {}, justification="cleanup").result,
        )
        scenario.expect(
            "Smuggle an extra argument",
            403,
            lambda: agent.call("get_weather", {"city": "Lisbon", "shell": "rm -rf /"}).result,
        )
        svid = agent.identity.svid()
        request = requests.call_request(
            svid,
            bound,
            "get_weather",
            {"city": "Lisbon"},
            audience=settings.gateway.audience,
            issued_at=time.time(),
            bearer=agent.identity.jwt_svid(),
        )
        raw.post(request.path, content=request.content, headers=dict(request.headers))
        scenario.raw(
            "Replay that signed request",
            403,
            raw.post(request.path, content=request.content, headers=dict(request.headers)),
        )
        crossed = proof.sign(
            svid.private_key,
            audience=settings.gateway.audience,
            task_id=other.task_id,
            warrant=bound.token,
            canonical=canonical_json({"city": "Oslo"}),
            tool="get_weather",
            issued_at=time.time(),
        )
        scenario.raw(
            "Use this task's warrant for another task",
            403,
            raw.post(
                "/v1/calls",
                json={"tool": "get_weather", "arguments": {"city": "Oslo"}},
                headers={
                    "Authorization": f"Bearer {agent.identity.jwt_svid()}",
                    "Ztgate-Warrant": bound.token,
                    "Ztgate-Proof": crossed,
                },
            ),
        )
        scenario.expect(
            "Delegate send_email to anywhere to a helper",
            403,
            lambda: agent.delegate(
                helper_id,
                scope={"tools": {"send_email": {"limits": {"to": {"domains": ["evil.example"]}}}}},
            ),
        )
        delegation = scenario.expect(
            "Delegate only get_weather to a helper",
            201,
            lambda: agent.delegate(helper_id, scope={"tools": {"get_weather": {}}}),
        )
        if delegation is not None:
            helper.bind(grant=delegation)
            scenario.expect(
                "The helper reads the weather",
                200,
                lambda: helper.call("get_weather", {"city": "Porto"}).result,
            )
            scenario.expect(
                "The helper tries to send an email",
                403,
                lambda: helper.call("send_email", mail, justification="helping").result,
            )
        for title, (body, expected) in RAW.items():
            scenario.raw(
                title,
                expected,
                raw.post(
                    "/v1/calls",
                    content=body,
                    headers={
                        "content-type": "application/json",
                        "Authorization": f"Bearer {agent.identity.jwt_svid()}",
                    },
                ),
            )
        with Principal(url, api_key) as principal:
            principal.complete_task(task.task_id)
            scenario.expect(
                "Call after the task is completed",
                403,
                lambda: agent.call("get_weather", {"city": "Lisbon"}).result,
            )
            play_inbox(console, agent, principal, agent_id, scenario.expect)
            play_inbox_over_mcp(console, url, socket_path, principal, agent_id, scenario.expect)
            config = settings.base_dir / "ztgate.toml"
            play_payment(console, agent, principal, agent_id, config, scenario.expect)
        _show_outbox(console, settings)


def register(settings: Settings, spiffe_ids: list[str]) -> str:
    """Register this process under `spiffe_ids`; an API key for the `admin` principal."""
    database = settings.open_database()
    try:
        clock = SystemClock()
        entries = EntryRegistry(database, clock, settings.identity.trust_domain)
        for spiffe_id in spiffe_ids:
            entries.register(
                spiffe_id,
                process_selectors(),
                owner="demo",
            )
        _, key = PrincipalRegistry(database, clock).create_key("admin", ttl=3600)
    finally:
        database.dispose()
    return key


def _show_outbox(console: Console, settings: Settings) -> None:
    """Who the demo tools' `send_email` really mailed: what got out."""
    sender = next((t for t in settings.declared_tools() if t.name == "send_email"), None)
    if sender is None:
        return
    outbox = httpx.get(sender.upstream_url.replace("/send_email", "/outbox"), timeout=10).json()
    recipients = ", ".join(str(mail.get("to")) for mail in outbox) or "nobody"
    console.print(f"the outbox: {len(outbox)} e-mails sent, to {recipients}")


def _short(result: Any) -> str:
    if isinstance(result, Delegation):
        return f"warrant {result.warrant_id} (depth {result.depth})"
    return json.dumps(result)[:70]


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
