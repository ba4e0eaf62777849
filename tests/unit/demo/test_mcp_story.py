"""The demo's MCP story: how an MCP tool result becomes one of the demo's rows."""

from __future__ import annotations

import mcp_types as types
import pytest

from ztgate.demo.mcp_story import _as_step
from ztgate.sdk import ApprovalPending, CallDenied

REASON = {"check": "policy", "outcome": "ask", "reason": "argument came from untrusted content"}


def _text(text: str) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=text)]


def test_an_allowed_result_is_its_structured_content() -> None:
    result = types.CallToolResult(content=[], structured_content={"sent": True})
    assert _as_step(result) == {"sent": True}


def test_an_asked_result_is_pending_with_its_reasons() -> None:
    detail = {"ztgate": {"outcome": "ask", "reasons": [REASON], "approval": {"id": "01a"}}}
    result = types.CallToolResult(
        content=_text("must approve"), structured_content=detail, is_error=True
    )
    with pytest.raises(ApprovalPending) as pending:
        _as_step(result)
    assert pending.value.approval_id == "01a"
    assert [r.reason for r in pending.value.reasons] == ["argument came from untrusted content"]


def test_a_denied_result_is_a_denial() -> None:
    detail = {"ztgate": {"outcome": "deny", "reasons": [{**REASON, "outcome": "deny"}]}}
    result = types.CallToolResult(content=_text("denied"), structured_content=detail, is_error=True)
    with pytest.raises(CallDenied) as denied:
        _as_step(result)
    assert denied.value.message == "denied" and denied.value.reasons[0].check == "policy"
