"""`ztgate approvals`: list, show, approve and reject asked calls; roles and four eyes hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from click.testing import Result

from ztgate.approvals.registry import Approval, ApprovalRegistry, ForbiddenError
from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.errors import ConflictError, InvalidInputError
from ztgate.models import ToolCall
from ztgate.principals.registry import PrincipalRegistry
from ztgate.store.database import Database
from ztgate.store.tables import audit_records

Cli = Callable[..., Result]
AGENT = "spiffe://ztgate.local/agent/payer"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _request(settings: Settings, *, second_person: bool = False) -> Approval:
    database = Database(settings.database_url)
    try:
        principals = PrincipalRegistry(database, SystemClock())
        for name, roles in {"alice": ["approver"], "carol": ["tasks"]}.items():
            if principals.find(name) is None:
                principals.add(name, roles=roles)
        arguments = {"amount": 100, "password": "hunter2"}
        call = ToolCall(
            "c1", "pay", arguments, canonical_json(arguments), agent=AGENT, task_id="t1"
        )
        return ApprovalRegistry(database, SystemClock()).create(
            call,
            risk="critical",
            principal="alice",
            intent="pay the invoice",
            reasons=[{"check": "policy", "outcome": "ask", "reason": "a human decides"}],
            ttl=600,
            second_person=second_person,
        )
    finally:
        database.dispose()


def _decisions(settings: Settings) -> list[dict[str, Any]]:
    database = Database(settings.database_url)
    try:
        with database.read() as conn:
            rows = conn.execute(audit_records.select().order_by(audit_records.c.seq)).mappings()
            bodies = [orjson.loads(row["body"]) for row in rows]
    finally:
        database.dispose()
    return [b["detail"] for b in bodies if b["kind"] == "approval"]


def test_list_show_and_approve(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    made = _request(settings)
    listed = orjson.loads(_ok(ztgate("approvals", "list", "--json")).stdout)
    assert [a["id"] for a in listed] == [made.id]
    assert "1 pending approvals" in flatten(_ok(ztgate("approvals", "list")).stdout)
    shown = flatten(_ok(ztgate("approvals", "show", made.id)).stdout)
    assert "pay the invoice" in shown and "a human decides" in shown
    assert "hunter2" not in shown
    assert orjson.loads(_ok(ztgate("approvals", "show", made.id, "--json")).stdout)["id"] == made.id
    out = _ok(ztgate("approvals", "approve", made.id, "-p", "alice", "-c", "go ahead")).stdout
    assert f"approved {made.id}" in flatten(out)
    (decision,) = _decisions(settings)
    assert (decision["principal"], decision["decision"], decision["comment"]) == (
        "alice",
        "approved",
        "go ahead",
    )
    assert decision["api_key"] is None and decision["request_sha256"] == made.request_sha256
    assert orjson.loads(_ok(ztgate("approvals", "list", "--state", "all", "--json")).stdout)
    again = ztgate("approvals", "reject", made.id, "-p", "alice")
    assert isinstance(again.exception, ConflictError)


def test_reject_and_who_may_not_decide(ztgate: Cli, settings: Settings) -> None:
    made = _request(settings, second_person=True)
    assert isinstance(
        ztgate("approvals", "approve", made.id, "-p", "carol").exception, ForbiddenError
    )
    assert isinstance(
        ztgate("approvals", "approve", made.id, "-p", "alice").exception, ForbiddenError
    )
    assert isinstance(
        ztgate("approvals", "approve", made.id, "-p", "nobody").exception, InvalidInputError
    )
    _ok(ztgate("approvals", "reject", made.id, "-p", "admin", "-c", "no"))
    assert _decisions(settings)[-1]["decision"] == "rejected"
