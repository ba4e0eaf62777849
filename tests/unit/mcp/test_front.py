"""The MCP front door's answers: what an agent's MCP client gets for each kind of outcome."""

from __future__ import annotations

from ztgate.approvals.registry import Approval
from ztgate.gateway import CallReport, Failure
from ztgate.mcp.front import tool_result
from ztgate.models import Decision, Outcome, ToolResult, Verdict
from ztgate.testing import make_call


def _text(result: object) -> str:
    return str(result.content[0].text)  # type: ignore[attr-defined]


def test_an_allowed_call_gives_its_result_as_text_and_structured_content() -> None:
    call = make_call("lookup", {"q": "x"})
    decision = Decision(call, (Verdict("policy", Outcome.ALLOW, "permitted"),))
    result = tool_result(CallReport(call, decision, result=ToolResult(200, {"answer": 42})))
    assert not result.is_error
    assert _text(result) == '{"answer":42}'
    assert result.structured_content == {"answer": 42}
    assert result.meta == {"ztgate/call_id": call.call_id}


def test_a_result_that_is_not_an_object_is_wrapped() -> None:
    call = make_call("lookup", {})
    decision = Decision(call, (Verdict("policy", Outcome.ALLOW, "permitted"),))
    result = tool_result(CallReport(call, decision, result=ToolResult(200, [1, 2])))
    assert result.structured_content == {"result": [1, 2]}


def test_a_denied_call_is_a_tool_error_naming_each_reason() -> None:
    call = make_call("send", {})
    decision = Decision(
        call,
        (
            Verdict("scope", Outcome.ALLOW, "within scope"),
            Verdict("policy", Outcome.DENY, "forbidden by secrets-stay"),
        ),
    )
    result = tool_result(CallReport(call, decision))
    assert result.is_error
    assert _text(result) == "ztgate denied the call: policy: forbidden by secrets-stay"
    assert result.structured_content == {
        "ztgate": {
            "call_id": call.call_id,
            "outcome": "deny",
            "reasons": [
                {"check": "policy", "outcome": "deny", "reason": "forbidden by secrets-stay"}
            ],
        }
    }


def test_a_rate_limited_call_says_when_to_retry() -> None:
    call = make_call("send", {})
    decision = Decision(call, (Verdict("rate", Outcome.DENY, "too fast", retry_after=1.5),))
    result = tool_result(CallReport(call, decision))
    assert result.structured_content is not None
    assert result.structured_content["ztgate"]["retry_after"] == 1.5


def test_a_failed_call_never_looks_allowed() -> None:
    call = make_call("send", {})
    result = tool_result(CallReport(call, None, failure=Failure.STORE_UNAVAILABLE, detail="x"))
    assert result.is_error and "fail closed" in _text(result)
    upstream = tool_result(CallReport(call, None, failure=Failure.UPSTREAM_TIMEOUT, detail="slow"))
    assert upstream.is_error and "slow" in _text(upstream)


def test_an_asked_call_names_the_approval_to_wait_for() -> None:
    call = make_call("pay", {"amount": 5})
    decision = Decision(call, (Verdict("policy", Outcome.ASK, "a critical tool"),))
    approval = Approval.__new__(Approval)
    object.__setattr__(approval, "id", "01appr")
    object.__setattr__(approval, "state", "pending")
    object.__setattr__(approval, "expires_at", 1800000000.0)
    result = tool_result(CallReport(call, decision, approval=approval))
    assert result.is_error
    assert "Approval request 01appr" in _text(result) and "ztgate/approval" in _text(result)
    assert result.structured_content is not None
    assert result.structured_content["ztgate"]["approval"]["wait"] == "/v1/approvals/01appr/wait"
