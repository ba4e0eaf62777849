"""The demo's inbox and payment stories: their data, and the approval command."""

from __future__ import annotations

from pathlib import Path

from ztgate.config import ToolSettings
from ztgate.demo.stories import (
    HIJACKED_SEND,
    INBOX_INTENT,
    INBOX_SCOPE,
    PAYMENT,
    PAYMENT_INTENT,
    PAYMENT_SCOPE,
    SUMMARY,
    approve_command,
)
from ztgate.demo.tools import INBOX, demo_tool_declarations
from ztgate.tasks.scope import parse_scope
from ztgate.tools.catalog import Catalog


def _catalog() -> Catalog:
    return Catalog(ToolSettings(**d).to_tool() for d in demo_tool_declarations(8471))


def test_the_stories_calls_fit_the_demo_tools_schemas() -> None:
    catalog = _catalog()
    for tool, arguments in (
        ("send_email", HIJACKED_SEND),
        ("send_email", SUMMARY),
        ("pay_invoice", PAYMENT),
    ):
        entry = catalog.get(tool)
        assert entry is not None and entry.arguments.is_valid(arguments), tool


def test_the_scopes_let_the_guards_and_policy_decide_not_the_scope() -> None:
    inbox = parse_scope(INBOX_SCOPE)
    assert inbox.violation("send_email", HIJACKED_SEND) is None
    assert inbox.violation("pay_invoice", PAYMENT) is not None
    assert parse_scope(PAYMENT_SCOPE).violation("pay_invoice", PAYMENT) is None


def test_the_hijacked_recipient_is_only_in_the_planted_text() -> None:
    planted = [m for m in INBOX if HIJACKED_SEND["to"] in m["body"]]
    assert [m["id"] for m in planted] == ["m-1002"]
    assert all(HIJACKED_SEND["to"] != m["from"] for m in INBOX)
    assert HIJACKED_SEND["to"] not in INBOX_INTENT


def test_the_legitimate_values_come_from_the_principal() -> None:
    assert SUMMARY["to"] in INBOX_INTENT
    for value in (PAYMENT["invoice"], PAYMENT["iban"], str(PAYMENT["amount_eur"])):
        assert value in PAYMENT_INTENT


def test_the_approval_is_given_with_the_cli_as_a_person() -> None:
    command = approve_command(Path("/srv/z/ztgate.toml"), "01abc")
    assert command[1:] == [
        "-m",
        "ztgate",
        "--config",
        "/srv/z/ztgate.toml",
        "approvals",
        "approve",
        "01abc",
        "--principal",
        "admin",
        "--comment",
        "invoice INV-1042 checked against the order",
    ]
