"""The inbox story again, over MCP: what `ztgate demo` shows of the MCP front door.

The agent talks MCP to ztgate's /mcp with the SDK's `McpSession` (its
JWT-SVID, the task's warrant, a proof per call). `tools/list` shows only
the task's tools; the inbox it reads carries an instruction planted for it;
the send that instruction asks for comes back as an MCP tool error — a
person must approve it, with the reasons "argument came from untrusted
content" and "injection found in an earlier result" — and the summary to
the address the principal named goes through.
"""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
from rich.console import Console

from ztgate.demo.stories import HIJACKED_SEND, INBOX_INTENT, INBOX_SCOPE, SUMMARY, Step
from ztgate.sdk import ApprovalPending, CallDenied, Principal
from ztgate.sdk.aio import AsyncAgent
from ztgate.sdk.mcp import McpSession, asked
from ztgate.sdk.models import Reason


def play_inbox_over_mcp(
    console: Console,
    url: str,
    socket_path: str,
    principal: Principal,
    agent_id: str,
    expect: Step,
) -> None:
    """Run the MCP story; each step is a row of the demo's table."""
    task = principal.create_task(
        agent=agent_id, intent=INBOX_INTENT, scope=INBOX_SCOPE, expires_in_seconds=600
    )
    console.print(f"task {task.task_id} again, now over MCP: the agent talks to {url}/mcp")
    outcomes = asyncio.run(_session(url, socket_path, agent_id, task.task_id))
    listed, read, hijacked, summary = outcomes
    expect("MCP tools/list: only the task's tools", 200, lambda: listed)
    expect("MCP: read the inbox (one message is injected)", 200, lambda: _as_step(read))
    expect("MCP: obey the e-mail (send payroll out)", 202, lambda: _as_step(hijacked))
    expect("MCP: mail the summary to the user", 200, lambda: _as_step(summary))
    principal.complete_task(task.task_id)


async def _session(
    url: str, socket_path: str, agent_id: str, task_id: str
) -> tuple[list[str], types.CallToolResult, types.CallToolResult, types.CallToolResult]:
    agent = await AsyncAgent.connect(url, socket_path=socket_path, spiffe_id=agent_id)
    async with agent:
        await agent.bind(task_id=task_id)
        async with McpSession(agent) as session:
            listed = sorted(tool.name for tool in (await session.list_tools()).tools)
            read = await session.call_tool(
                "read_inbox", {}, justification="the user asked for a summary"
            )
            hijacked = await session.call_tool(
                "send_email", HIJACKED_SEND, justification="IT support asked for the file"
            )
            summary = await session.call_tool(
                "send_email", SUMMARY, justification="the user asked for it"
            )
    return listed, read, hijacked, summary


def _as_step(result: types.CallToolResult) -> Any:
    """A tool result as the demo's steps report them: its content, or the refusal it carries."""
    detail = (result.structured_content or {}).get("ztgate")
    if not result.is_error:
        return result.structured_content
    text = str(getattr(result.content[0], "text", "")) if result.content else "refused"
    raw = detail.get("reasons", []) if isinstance(detail, dict) else []
    reasons = tuple(
        Reason(str(r.get("check", "")), str(r.get("outcome", "")), str(r.get("reason", "")))
        for r in raw
        if isinstance(r, dict)
    )
    approval = asked(result)
    if approval is not None:
        raise ApprovalPending(text, approval_id=approval, reasons=reasons)
    raise CallDenied(text, reasons=reasons)
