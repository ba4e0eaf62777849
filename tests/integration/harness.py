"""Helpers for the integration tests: real processes, real sockets, real HTTP.

- `Upstream` / `start_upstream`: the tool server process (`upstream_server.py`)
  on ephemeral loopback ports; it records every call it receives.
- `GatewayProcess` / `start_gateway`: `python -m ztgate --config
  <dir>/ztgate.toml serve` as a subprocess on an ephemeral loopback port (port
  0; the port is read from uvicorn's start-up line), plus the CLI and direct
  SQLite reads of its audit log.
- `main_tools`: the tools the shared gateway declares in `[[tools]]`.
- `make_client` / `assert_problem`: clients that fail on any traceback, and the
  RFC 9457 checks every error answer must pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ztgate.canonical import canonical_json
from ztgate.cli.toml import array_of_tables, value
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.mcp.meta import call_meta
from ztgate.processes import child_env as clean_env
from ztgate.processes import stop_process
from ztgate.tasks.registry import TaskRegistry
from ztgate.testing import make_settings
from ztgate.warrants import proof
from ztgate.warrants.jwk import key_thumbprint

HERE = Path(__file__).resolve().parent
UPSTREAM_SCRIPT = HERE / "upstream_server.py"
PROBLEM_JSON = "application/problem+json"
TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', "site-packages")
_STARTED = re.compile(rb"Uvicorn running on https?://127\.0\.0\.1:(\d+)")

# Limits of the shared gateway (the tests rely on these exact values).
MAX_BODY_BYTES = 65_536
MAX_JSON_DEPTH = 8
MAX_RESULT_BYTES = 4096
SLOW_TOOL_TIMEOUT = 0.5

LEAK_MARKER = "LEAK-MARKER-must-not-reach-the-agent"  # as in upstream_server.py


def run_cli(
    config: Path, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m ztgate --config <config> <args>`, captured."""
    return subprocess.run(
        [sys.executable, "-m", "ztgate", "--config", str(config), *args],
        cwd=config.parent,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the upstream tool server -------------------------------------------------------


@dataclass
class Upstream:
    """The running tool server."""

    process: subprocess.Popen[bytes]
    port: int
    close_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def received(self, path: str = "/") -> list[dict[str, Any]]:
        """Every call the tool server received on a path starting with `path`."""
        response = httpx.get(f"{self.url}/received", params={"path": path}, timeout=10)
        response.raise_for_status()
        calls: list[dict[str, Any]] = response.json()
        return calls


# -- gateway processes ------------------------------------------------------------------


def gateway_toml(
    tools: list[dict[str, Any]],
    *,
    gateway: Mapping[str, Any] | None = None,
    store: Mapping[str, Any] | None = None,
    warrants: Mapping[str, Any] | None = None,
) -> str:
    """A config file: port 0 (ephemeral), the given sections and `[[tools]]`."""
    # Tests of other features than authentication run without it (loopback),
    # and without requiring justifications (tested with the SDK and the app).
    defaults = {"port": 0, "log_level": "info", "authentication": "off"}
    sections: dict[str, dict[str, Any]] = {"gateway": {**defaults, **(gateway or {})}}
    sections["warrants"] = {"require_justification": [], **(warrants or {})}
    if store:
        sections["store"] = dict(store)
    text = ""
    for name, values in sections.items():
        text += f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in values.items()) + "\n"
    return text + (array_of_tables("tools", tools) if tools else "")


class GatewayProcess:
    """`ztgate serve` as a subprocess on an initialised directory."""

    def __init__(self, workdir: Path, *, verify: ssl.SSLContext | None = None) -> None:
        """`verify`: the gateway serves HTTPS (`tls = true`); trust its CA with this context."""
        self.workdir = workdir
        self.verify = verify
        self.config = workdir / "ztgate.toml"
        self.db_path = workdir / ".ztgate" / "ztgate.db"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.verify is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.starts}.log"

    def start(self, timeout: float = 30) -> None:
        """Start the gateway and wait until GET /readyz answers 200."""
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ztgate", "--config", str(self.config), "serve"],
                cwd=self.workdir,
                env=clean_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {self.process.returncode}: "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            match = _STARTED.search(self.log_path.read_bytes())
            if match:
                self.port = int(match.group(1))
                with contextlib.suppress(httpx.HTTPError):
                    ready = httpx.get(f"{self.url}/readyz", timeout=2, verify=self.verify or True)
                    if ready.status_code == 200:
                        return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the gateway did not become ready: " + self.log_path.read_text()[-2000:])

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) and wait."""
        if self.process is not None:
            stop_process(self.process)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no draining, no final checkpoint."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a `ztgate` command against this gateway's config."""
        return run_cli(self.config, *args, timeout=timeout)

    def verify_audit(self) -> dict[str, Any]:
        """`ztgate audit verify --json`, asserted to exit 0 with every chain ok."""
        done = self.cli("audit", "verify", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        assert report["ok"] is True
        assert report["signatures_checked"] is True
        assert report["chains"], "no audit chain at all"
        assert all(chain["first_bad_seq"] is None for chain in report["chains"])
        return report

    # -- reading the audit log straight from SQLite -----------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db_path, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def audit_records(self, call_id: str) -> list[dict[str, Any]]:
        """The record bodies for `call_id`, in chain order."""
        rows = self._query(
            "SELECT body FROM audit_records WHERE call_id = ? ORDER BY chain, seq", (call_id,)
        )
        return [json.loads(body) for (body,) in rows]

    def audit_count(self) -> int:
        return int(self._query("SELECT count(*) FROM audit_records")[0][0])

    def audit_by_call(self) -> dict[str, list[tuple[str, str]]]:
        """(kind, outcome) of every record, by call id."""
        found: dict[str, list[tuple[str, str]]] = {}
        rows = self._query(
            "SELECT call_id, kind, outcome FROM audit_records "
            "WHERE call_id IS NOT NULL ORDER BY chain, seq"
        )
        for call_id, kind, outcome in rows:
            found.setdefault(call_id, []).append((kind, outcome))
        return found

    def tool_rows(self) -> list[tuple[Any, ...]]:
        return self._query("SELECT * FROM tools ORDER BY name")


class Replica(GatewayProcess):
    """A gateway process with a log of its own in a directory another one serves too."""

    def __init__(self, workdir: Path, name: str) -> None:
        super().__init__(workdir)
        self.name = name

    @property
    def log_path(self) -> Path:
        return self.workdir / f"gateway-{self.name}-{self.starts}.log"


@contextlib.contextmanager
def two_replicas(workdir: Path) -> Iterator[tuple[Replica, Replica]]:
    """Two gateway processes serving one directory, started in turn, stopped in reverse."""
    one, two = Replica(workdir, "one"), Replica(workdir, "two")
    one.start()
    try:
        two.start()
        try:
            yield one, two
        finally:
            two.stop()
    finally:
        one.stop()


@contextlib.contextmanager
def start_gateway(workdir: Path, toml: str) -> Iterator[GatewayProcess]:
    """Initialise `workdir` with `toml` (keys, data dir, DB) and run a gateway there."""
    workdir.mkdir(parents=True, exist_ok=True)
    make_settings(workdir, toml)
    gateway = GatewayProcess(workdir)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def critical_tools(
    upstream: Upstream, tag: str, names: Sequence[str] = ("pay", "pay_fast")
) -> list[dict[str, Any]]:
    """`critical` echo tools: the default policy asks a person about each of their calls."""
    return [
        {
            "name": name,
            "url": f"{upstream.url}/echo/{tag}",
            "risk": "critical",
            "input_schema": {"type": "object"},
        }
        for name in names
    ]


def main_tools(upstream: Upstream, dead_port: int, tag: str = "main") -> list[dict[str, Any]]:
    """The tools of the shared gateway."""
    any_object = {"type": "object"}
    return [
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/{tag}",
            "risk": "write",
            "description": "Returns its arguments.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "msg": {"type": "string", "maxLength": 200},
                    "opts": {
                        "type": "object",
                        "properties": {"count": {"type": "integer", "maximum": 10}},
                    },
                },
            },
        },
        {"name": "sink", "url": f"{upstream.url}/sink", "input_schema": any_object},
        {
            "name": "lookup",
            "url": f"{upstream.url}/echo/{tag}",
            "risk": "read",
            "input_schema": any_object,
        },
        {
            "name": "slow",
            "url": f"{upstream.url}/sleep",
            "input_schema": any_object,
            "timeout_seconds": SLOW_TOOL_TIMEOUT,
        },
        {"name": "failing", "url": f"{upstream.url}/fail", "input_schema": any_object},
        {"name": "notjson", "url": f"{upstream.url}/notjson", "input_schema": any_object},
        {"name": "plaintext", "url": f"{upstream.url}/text", "input_schema": any_object},
        {"name": "big", "url": f"{upstream.url}/big", "input_schema": any_object},
        {"name": "bigchunked", "url": f"{upstream.url}/big-chunked", "input_schema": any_object},
        {
            "name": "shaped",
            "url": f"{upstream.url}/shaped",
            "input_schema": any_object,
            "output_schema": {
                "type": "object",
                "properties": {"count": {"type": "integer"}},
                "required": ["count"],
            },
        },
        {
            "name": "closer",
            "url": f"http://127.0.0.1:{upstream.close_port}/close",
            "input_schema": any_object,
        },
        {
            "name": "unreachable",
            "url": f"http://127.0.0.1:{dead_port}/nothing",
            "input_schema": any_object,
        },
    ]


# -- clients ---------------------------------------------------------------------------


def assert_no_traceback(response: httpx.Response) -> None:
    """No response from the gateway ever carries a Python traceback."""
    response.read()
    text = response.text
    for sign in TRACEBACK_SIGNS:
        assert sign not in text, f"{response.request.url} leaked {sign!r}: {text[:500]}"


def make_client(base_url: str, timeout: float = 10) -> httpx.Client:
    """An HTTP client that fails the test on any traceback in any response."""
    return httpx.Client(
        base_url=base_url, timeout=timeout, event_hooks={"response": [assert_no_traceback]}
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """`response` is an RFC 9457 problem with `status` and a call id where one applies."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("urn:ztgate:problem:")
    assert isinstance(problem["title"], str)
    assert problem["title"]
    assert isinstance(problem["detail"], str)
    assert problem["detail"]
    return problem


@contextlib.contextmanager
def start_upstream() -> Iterator[Upstream]:
    """Run the tool server process until the block ends."""
    process = subprocess.Popen(
        [sys.executable, str(UPSTREAM_SCRIPT)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"the tool server did not start (exit {process.poll()})")
        ports = json.loads(line)
        server = Upstream(process, ports["port"], ports["close_port"])
        httpx.get(f"{server.url}/received", timeout=10).raise_for_status()
        yield server
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()


# -- tasks and proofs --------------------------------------------------------------------


class TaskCredentials:
    """A task for `agent` in a gateway's store, its warrant bound to `key`, a proof per call.

    Made the way a principal and an agent would (the task by the registry, as
    `ztgate tasks create` does; the proofs by `ztgate.warrants.proof.sign`,
    as the SDK does), for tests that exercise something else than warrants.
    """

    def __init__(
        self,
        workdir: Path,
        agent: str,
        key: Any,
        *,
        tools: Sequence[str] = ("lookup", "echo"),
        scope: Mapping[str, Any] | None = None,
        intent: str = "an integration test",
    ) -> None:

        self.key = key
        settings = load_settings(workdir / "ztgate.toml")
        database = settings.open_database()
        try:
            registry = TaskRegistry.from_settings(settings, database, SystemClock())
            task, _, warrant = registry.create(
                principal="admin",
                agent=agent,
                intent=intent,
                scope=dict(scope or {"tools": {tool: {} for tool in tools}}),
                agent_jkt=key_thumbprint(key),
            )
        finally:
            database.dispose()
        assert warrant is not None
        self.task_id = task.id
        self.warrant = warrant

    def headers(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, str]:
        """The warrant and a fresh proof for one call."""
        signed = proof.sign(
            self.key,
            audience="ztgate",
            task_id=self.task_id,
            warrant=self.warrant,
            canonical=canonical_json(dict(arguments)),
            tool=tool,
            issued_at=time.time(),
        )
        return {"Ztgate-Warrant": self.warrant, "Ztgate-Proof": signed}

    def mcp_meta(
        self, tool: str, arguments: Mapping[str, Any], justification: str
    ) -> dict[str, str]:
        """The same for an MCP request: the `_meta` of a `tools/call` (ztgate.mcp.meta)."""
        headers = self.headers(tool, arguments)
        return call_meta(
            headers["Ztgate-Warrant"], headers["Ztgate-Proof"], justification=justification
        )
