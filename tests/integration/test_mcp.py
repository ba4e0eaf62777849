"""The MCP front door through a real gateway, with the official SDK's client over Streamable HTTP.

The agent authenticates each HTTP request with its JWT-SVID; its warrant
and a fresh proof per call travel in the params' `_meta`; every call goes
through the same pipeline as `POST /v1/calls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from ztgate.approvals.registry import ApprovalRegistry
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.attestation import process_selectors
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.sdk import AsyncAgent, Principal
from ztgate.sdk.mcp import McpSession, asked
from ztgate.testing import make_settings

from .harness import (
    GatewayProcess,
    TaskCredentials,
    Upstream,
    critical_tools,
    gateway_toml,
    main_tools,
)
from .test_authentication import _register, _token

AGENT = "spiffe://ztgate.local/agents/mcp"
SDK_AGENT = "spiffe://ztgate.local/agents/mcp-sdk"
SCOPE = {"tools": {"lookup": {}, "echo": {}, "pay": {}}}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("mcp")
    tools = [
        *main_tools(upstream, dead_port, tag="mcp"),
        *critical_tools(upstream, "mcp-pay", ("pay",)),
    ]
    toml = gateway_toml(tools, gateway={"authentication": "required"})
    make_settings(workdir, toml)
    _register(workdir, AGENT)
    _register_this_process(workdir, SDK_AGENT)
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
    return TaskCredentials(gateway.workdir, AGENT, key, tools=("lookup", "echo"))


@contextlib.asynccontextmanager
async def connect(
    gateway: GatewayProcess, warrant: str | None = None, agent: str = AGENT
) -> AsyncIterator[Client]:
    """An MCP session as `agent`: its JWT-SVID authenticates every HTTP request."""
    headers = {"Authorization": f"Bearer {_token(gateway.workdir, agent)}"}
    if warrant is not None:
        headers["Ztgate-Warrant"] = warrant
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with http, Client(streamable_http_client(f"{gateway.url}/mcp", http_client=http)) as mcp:
        yield mcp


def _meta(task: TaskCredentials, tool: str, arguments: dict[str, Any]) -> dict[str, str]:
    return task.mcp_meta(tool, arguments, "an MCP integration test")


async def test_tools_list_shows_only_the_scope(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway) as client:
        listed = await client.list_tools(meta={"ztgate/warrant": task.warrant}, cache_mode="bypass")
    assert sorted(tool.name for tool in listed.tools) == ["echo", "lookup"]
    lookup = next(tool for tool in listed.tools if tool.name == "lookup")
    assert lookup.annotations is not None and lookup.annotations.read_only_hint is True


async def test_tools_list_without_a_warrant_shows_nothing(gateway: GatewayProcess) -> None:
    async with connect(gateway) as client:
        assert (await client.list_tools(cache_mode="bypass")).tools == []


async def test_the_warrant_can_be_a_header_for_the_whole_session(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway, warrant=task.warrant) as client:
        listed = await client.list_tools(cache_mode="bypass")
        assert sorted(tool.name for tool in listed.tools) == ["echo", "lookup"]
        arguments = {"q": "header"}
        signed = _meta(task, "lookup", arguments)
        del signed["ztgate/warrant"]
        assert not (await client.call_tool("lookup", arguments, meta=signed)).is_error


async def test_a_forged_warrant_shows_nothing_and_says_why(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    forged = task.warrant[:-4] + ("AAAA" if not task.warrant.endswith("AAAA") else "BBBB")
    async with connect(gateway) as client:
        with pytest.raises(MCPError, match="warrant"):
            await client.list_tools(meta={"ztgate/warrant": forged}, cache_mode="bypass")


async def test_an_allowed_call_runs_through_the_pipeline(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    arguments = {"q": "lisbon"}
    async with connect(gateway) as client:
        result = await client.call_tool("lookup", arguments, meta=_meta(task, "lookup", arguments))
    assert not result.is_error, result.content
    assert result.meta is not None
    (record,) = gateway.audit_records(result.meta["ztgate/call_id"])
    assert record["outcome"] == "allow" and record["agent"] == AGENT
    assert record["task_id"] == task.task_id


async def test_a_denied_call_is_a_tool_error_with_the_reason(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    arguments = {"q": "x"}
    async with connect(gateway) as client:
        result = await client.call_tool("big", arguments, meta=_meta(task, "big", arguments))
    assert result.is_error
    assert "ztgate denied the call" in _text(result) and "not in the task's scope" in _text(result)
    assert result.structured_content is not None
    assert result.structured_content["ztgate"]["outcome"] == "deny"


async def test_a_replayed_proof_is_refused(gateway: GatewayProcess, task: TaskCredentials) -> None:
    arguments = {"q": "replay"}
    meta = _meta(task, "lookup", arguments)
    async with connect(gateway) as client:
        assert not (await client.call_tool("lookup", arguments, meta=meta)).is_error
        again = await client.call_tool("lookup", arguments, meta=meta)
    assert again.is_error
    assert "replay" in _text(again)


async def test_a_call_without_a_proof_is_refused(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    async with connect(gateway) as client:
        result = await client.call_tool("lookup", {"q": "x"}, meta={"ztgate/warrant": task.warrant})
    assert result.is_error
    assert "proof" in _text(result)


async def test_an_unauthenticated_session_cannot_call(
    gateway: GatewayProcess, task: TaskCredentials
) -> None:
    arguments = {"q": "x"}
    async with Client(f"{gateway.url}/mcp") as anonymous:
        result = await anonymous.call_tool(
            "lookup", arguments, meta=_meta(task, "lookup", arguments)
        )
    assert result.is_error
    assert "authenticate" in _text(result)


def _text(result: Any) -> str:
    return str(result.content[0].text)


# -- the SDK's MCP session and the stdio bridge, as a real agent process -----------


def _register_this_process(workdir: Path, spiffe_id: str) -> None:
    """This interpreter (uid and path) attests as `spiffe_id`: the tests, and the bridge."""
    database = load_settings(workdir / "ztgate.toml").open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(
            spiffe_id, process_selectors()
        )
    finally:
        database.dispose()


def _sdk_task(gateway: GatewayProcess) -> str:
    database = load_settings(gateway.config).open_database()
    try:
        key = PrincipalRegistry(database, SystemClock()).create_key("admin")[1]
    finally:
        database.dispose()
    with Principal(gateway.url, key) as principal:
        return principal.create_task(agent=SDK_AGENT, intent="MCP via the SDK", scope=SCOPE).task_id


async def test_the_sdk_session_lists_calls_and_waits_for_approval(
    gateway: GatewayProcess,
) -> None:
    task_id = _sdk_task(gateway)
    socket_path = str(gateway.workdir / ".ztgate" / "agent.sock")
    agent = await AsyncAgent.connect(gateway.url, socket_path=socket_path, spiffe_id=SDK_AGENT)
    async with agent:
        await agent.bind(task_id=task_id)
        async with McpSession(agent) as session:
            listed = await session.list_tools()
            assert sorted(tool.name for tool in listed.tools) == ["echo", "lookup", "pay"]
            done = await session.call_tool("lookup", {"q": "sdk"}, justification="a test")
            assert not done.is_error
            waiting = await session.call_tool("pay", {"amount": 5}, justification="pay it")
            assert asked(waiting) is not None
            paid, approved = await asyncio.gather(
                session.call_tool(
                    "pay", {"amount": 6}, justification="pay it", approval_timeout=20
                ),
                _approve_when_asked_after(gateway, asked(waiting)),
            )
    assert not paid.is_error, paid.content
    assert paid.structured_content == {"echo": {"amount": 6}}
    assert approved != asked(waiting)


async def _approve_when_asked_after(gateway: GatewayProcess, earlier: str | None) -> str:
    database = load_settings(gateway.config).open_database()
    try:
        registry = ApprovalRegistry(database, SystemClock())
        admin = PrincipalRegistry(database, SystemClock()).get("admin")
        for _ in range(200):
            pending = [
                a for a in await asyncio.to_thread(registry.list, "pending") if a.id != earlier
            ]
            if pending:
                await asyncio.to_thread(registry.decide, pending[0].id, True, principal=admin)
                return pending[0].id
            await asyncio.sleep(0.05)
    finally:
        database.dispose()
    raise AssertionError("no approval request appeared")


async def test_a_desktop_client_through_the_stdio_bridge_sees_only_the_scope(
    gateway: GatewayProcess,
) -> None:
    task_id = _sdk_task(gateway)
    bridge = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "ztgate",
            "--config",
            str(gateway.config),
            "mcp",
            "connect",
            "--task",
            task_id,
            "--spiffe-id",
            SDK_AGENT,
            "--url",
            gateway.url,
            "--justification",
            "asked by the desktop user",
            "--approval-timeout",
            "0",
        ],
        cwd=str(gateway.workdir),
    )
    async with Client(bridge) as desktop:
        listed = await desktop.list_tools(cache_mode="bypass")
        assert sorted(tool.name for tool in listed.tools) == ["echo", "lookup", "pay"]
        allowed = await desktop.call_tool("echo", {"note": "from the desktop"})
        assert not allowed.is_error, allowed.content
        refused = await desktop.call_tool("big", {"q": "x"})
        assert refused.is_error and "not in the task's scope" in _text(refused)


def test_a_foreign_host_header_is_refused(gateway: GatewayProcess) -> None:
    """DNS rebinding: a page on another name must not reach /mcp through the browser."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    foreign = httpx.post(
        f"{gateway.url}/mcp", json=body, headers={**headers, "Host": "evil.example"}, timeout=10
    )
    assert foreign.status_code in (400, 421), foreign.text
    assert "host" in foreign.text.lower(), foreign.text
    local = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=10)
    assert "host" not in local.text.lower(), local.text  # refused for another reason
