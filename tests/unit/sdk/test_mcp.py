"""The SDK's MCP session pieces: the credentials on each request, and reading an asked result."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx2
import mcp_types as types
import pytest

from ztgate.sdk.errors import ZtgateError
from ztgate.sdk.mcp import McpSession, _AgentCredentials, asked


def _agent(warrant: str | None = "w.a.r") -> Any:
    identity = SimpleNamespace(cached_jwt_svid=lambda: None, jwt_svid=lambda: "j.w.t")
    bound = SimpleNamespace(token=warrant) if warrant else None
    return SimpleNamespace(identity=identity, warrant=bound, base_url="http://gw:8470/")


def test_each_request_carries_the_current_jwt_svid_and_the_warrant() -> None:
    request = httpx2.Request("POST", "http://gw/mcp")
    flow = _AgentCredentials(_agent()).auth_flow(request)
    sent = next(flow)
    assert sent.headers["Authorization"] == "Bearer j.w.t"
    assert sent.headers["Ztgate-Warrant"] == "w.a.r"


def test_no_warrant_header_before_binding() -> None:
    request = httpx2.Request("POST", "http://gw/mcp")
    sent = next(_AgentCredentials(_agent(None)).auth_flow(request))
    assert "Ztgate-Warrant" not in sent.headers


def test_the_session_talks_to_the_agents_gateway_by_default() -> None:
    assert McpSession(_agent()).url == "http://gw:8470/mcp"
    assert McpSession(_agent(), "https://other/mcp").url == "https://other/mcp"
    with pytest.raises(ZtgateError, match="not open"):
        _ = McpSession(_agent()).client


def _result(detail: Any, *, error: bool = True) -> types.CallToolResult:
    return types.CallToolResult(content=[], structured_content=detail, is_error=error)


def test_an_asked_result_names_its_approval() -> None:
    asking = {"ztgate": {"outcome": "ask", "approval": {"id": "01appr"}}}
    assert asked(_result(asking)) == "01appr"
    assert asked(_result(asking, error=False)) is None
    assert asked(_result({"ztgate": {"outcome": "deny"}})) is None
    assert asked(_result({"ztgate": {"outcome": "ask", "approval": "01appr"}})) is None
    assert asked(_result(None)) is None
