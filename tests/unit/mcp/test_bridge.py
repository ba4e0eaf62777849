"""The stdio bridge's handlers: relaying through a session, and what a refused wait becomes."""

from __future__ import annotations

from typing import Any

import mcp_types as types

from ztgate.mcp.bridge import Bridge, BridgeOptions
from ztgate.sdk.errors import CallDenied

OPTIONS = BridgeOptions("http://127.0.0.1:1", "/tmp/agent.sock", "01task", justification="desk")


class FakeSession:
    """Records what the bridge asks of its MCP session (the real one is tested end to end)."""

    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any], str | None, float]] = []
        self.refuse = refuse

    async def list_tools(self) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[types.Tool(name="lookup", input_schema={})])

    async def list_resources(self) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(name="today", uri="ztgate://files/notes%3A%2F%2Ftoday")]
        )

    async def read_resource(
        self, uri: str, *, justification: str | None
    ) -> types.ReadResourceResult:
        self.calls.append(("read", {"uri": uri}, justification, 0.0))
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, text="x")])

    async def list_prompts(self) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(name="files.summarise")])

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, *, justification: str | None
    ) -> types.GetPromptResult:
        self.calls.append(("prompt", {"name": name, **(arguments or {})}, justification, 0.0))
        return types.GetPromptResult(messages=[])

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        justification: str | None,
        approval_timeout: float,
    ) -> types.CallToolResult:
        self.calls.append((name, arguments, justification, approval_timeout))
        if self.refuse:
            raise CallDenied("approval 01a is rejected: alice said no")
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])


async def test_tools_are_listed_as_the_gateway_lists_them() -> None:
    bridge = Bridge(FakeSession(), OPTIONS)  # type: ignore[arg-type]
    listed = await bridge.list_tools(None, None)
    assert [tool.name for tool in listed.tools] == ["lookup"]


async def test_a_call_carries_the_clients_justification_or_the_default() -> None:
    session = FakeSession()
    bridge = Bridge(session, OPTIONS)  # type: ignore[arg-type]
    await bridge.call_tool(None, types.CallToolRequestParams(name="lookup", arguments={"q": 1}))
    given = types.CallToolRequestParams.model_validate(
        {"name": "lookup", "_meta": {"ztgate/justification": "the user asked"}}
    )
    await bridge.call_tool(None, given)
    assert session.calls == [
        ("lookup", {"q": 1}, "desk", 600.0),
        ("lookup", {}, "the user asked", 600.0),
    ]


async def test_a_rejected_approval_is_a_tool_error() -> None:
    bridge = Bridge(FakeSession(refuse=True), OPTIONS)  # type: ignore[arg-type]
    result = await bridge.call_tool(None, types.CallToolRequestParams(name="pay", arguments={}))
    assert result.is_error
    assert result.content[0].text == "ztgate: approval 01a is rejected: alice said no"  # type: ignore[union-attr]


async def test_resources_and_prompts_are_relayed_with_the_default_justification() -> None:
    session = FakeSession()
    bridge = Bridge(session, OPTIONS)  # type: ignore[arg-type]
    listed = await bridge.list_resources(None, None)
    uri = str(listed.resources[0].uri)
    await bridge.read_resource(None, types.ReadResourceRequestParams(uri=uri))
    assert [p.name for p in (await bridge.list_prompts(None, None)).prompts] == ["files.summarise"]
    await bridge.get_prompt(
        None, types.GetPromptRequestParams(name="files.summarise", arguments={"topic": "t"})
    )
    assert session.calls == [
        ("read", {"uri": uri}, "desk", 0.0),
        ("prompt", {"name": "files.summarise", "topic": "t"}, "desk", 0.0),
    ]
