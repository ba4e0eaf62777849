"""A stdio MCP server run per task, for real: a gateway process, bubblewrap, the egress proxy.

`ztgate mcp add --per-task --secrets-command …`: each task that calls the
server gets an instance of its own in its own enclave, with the secrets the
operator's command minted for that task, its connections on record as that
agent's and task's, and it ends once idle. Agents call through the MCP
front door with the SDK's client, as in test_mcp_upstream.py.
"""

from __future__ import annotations

import asyncio
import http.server
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.mcp.servers import McpServer, McpServerRegistry
from ztgate.ports import free_port
from ztgate.testing import make_settings

from .egress_kit import egress_records, threaded_http_server
from .harness import GatewayProcess, TaskCredentials, gateway_toml
from .test_authentication import _register
from .test_enclave import _namespaces_allowed
from .test_mcp import connect as mcp_session

AGENT = "spiffe://ztgate.local/agents/per-task"
SERVER = Path(__file__).with_name("per_task_server.py").resolve()
TOOLS = ("vault.whoami", "vault.ping")
IDLE_SECONDS = 2
MINT = """
import json, os
task, agent = os.environ["ZTGATE_TASK_ID"], os.environ["ZTGATE_AGENT"]
print(json.dumps({"TASK_LABEL": "label-" + task, "AGENT_LABEL": agent}))
"""

pytestmark = pytest.mark.skipif(
    not _namespaces_allowed(),
    reason="this kernel forbids network namespaces here (`unshare --net true` fails)",
)


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"pong")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pinged() -> Iterator[int]:
    """A loopback HTTP host, the instances' allowed test destination; its port."""
    with threaded_http_server(_Pong) as port:
        yield port


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pinged: int) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("mcp-per-task")
    toml = gateway_toml([], gateway={"authentication": "required"})
    toml += f"[mcp]\ntask_instance_idle_seconds = {IDLE_SECONDS}\n"
    # The proxy's TCP listener on for agents as well: enclaves must still get theirs.
    toml += f"[egress_proxy]\nenabled = true\nport = {free_port()}\n"
    make_settings(workdir, toml)
    _register(workdir, AGENT)
    mint = workdir / "mint.py"
    mint.write_text(MINT)
    settings = load_settings(workdir / "ztgate.toml")
    database = settings.open_database()
    try:
        database.migrate()
        McpServerRegistry(database, SystemClock()).add(
            McpServer(
                name="vault",
                transport="stdio",
                command=sys.executable,
                args=(str(SERVER),),
                env={"PING_URL": f"http://127.0.0.1:{pinged}/ping"},
                read_only_paths=(str(SERVER),),
                allowed_test_destinations=(f"127.0.0.1:{pinged}",),
                per_task=True,
                secrets_command=(sys.executable, str(mint)),
            )
        )
    finally:
        database.dispose()
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _task(gateway: GatewayProcess) -> TaskCredentials:
    ca = CertificateAuthority.load(gateway.workdir / ".ztgate" / "ca", SystemClock())
    key = ca.issue_x509_svid(AGENT).private_key
    return TaskCredentials(gateway.workdir, AGENT, key, tools=TOOLS, intent="Check the vault")


async def _call(client: Client, task: TaskCredentials, tool: str) -> dict[str, Any]:
    meta = task.mcp_meta(tool, {}, "the user asked to check the vault")
    result = await client.call_tool(tool, {}, meta=meta)  # type: ignore[arg-type]
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def _instances(gateway: GatewayProcess) -> float:
    metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.search(r"^ztgate_mcp_task_instances (\S+)$", metrics, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


async def test_each_task_gets_its_own_instance_with_its_own_secrets(
    gateway: GatewayProcess,
) -> None:
    first, second = _task(gateway), _task(gateway)
    async with mcp_session(gateway, agent=AGENT) as client:
        one = await _call(client, first, "vault.whoami")
        two = await _call(client, second, "vault.whoami")
        again = await _call(client, first, "vault.whoami")
    assert one["task"] == f"label-{first.task_id}" and one["agent"] == AGENT
    assert two["task"] == f"label-{second.task_id}"
    assert one["pid"] == again["pid"]  # the task's instance is kept for its calls
    assert _instances(gateway) >= 2


async def test_an_instances_connections_are_its_tasks_on_record(gateway: GatewayProcess) -> None:
    task = _task(gateway)
    async with mcp_session(gateway, agent=AGENT) as client:
        assert (await _call(client, task, "vault.ping"))["ping"] == "200 pong"
    database = load_settings(gateway.config).open_database()
    try:
        opened = [r for r in egress_records(database) if r["detail"]["event"] == "open"]
    finally:
        database.dispose()
    assert opened, "the ping went out unrecorded"
    assert opened[-1]["agent"] == AGENT and opened[-1]["task_id"] == task.task_id
    assert opened[-1]["detail"]["enclave"] == "vault"


async def test_an_idle_instance_ends(gateway: GatewayProcess) -> None:
    task = _task(gateway)
    async with mcp_session(gateway, agent=AGENT) as client:
        await _call(client, task, "vault.whoami")
    assert _instances(gateway) >= 1
    deadline = time.monotonic() + 4 * IDLE_SECONDS
    while _instances(gateway) > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert _instances(gateway) == 0
