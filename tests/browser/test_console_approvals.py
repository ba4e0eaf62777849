"""The approver's path in a real browser: log in, see a request arrive, decide it.

An SDK agent's critical call gets 202 while the approvals page is open; its
row appears without a reload; approved from the console with a comment, the
agent's waiting call completes with the tool's result; rejected, the
agent's call is denied with the comment.
"""

from __future__ import annotations

import json
import uuid

import pytest
from playwright.sync_api import Page, expect

from ztgate.console import signatures
from ztgate.sdk import Agent, CallDenied

from .kit import (
    APPROVER,
    ConsoleSite,
    Waiter,
    approval_ids,
    ask,
    decide,
    login,
    mark_page,
    new_row,
    still_marked,
)

NAV = ("overview", "approvals", "feed", "agents", "tasks", "audit", "policy")


def test_login_lands_on_the_overview_with_every_page_linked(page: Page, site: ConsoleSite) -> None:
    login(page, site, *APPROVER)
    for name in NAV:
        expect(page.locator(f"#nav-{name}")).to_be_visible()
    expect(page.locator("#logout")).to_be_visible()


def test_logged_out_the_console_sends_you_to_the_login_page(page: Page, site: ConsoleSite) -> None:
    page.goto(site.console("/approvals"))
    expect(page.locator("#password")).to_be_visible()
    assert "/console/login" in page.url


def test_a_waiting_call_completes_once_approved_in_the_console(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    page = approver_page
    page.click("#nav-approvals")
    page.wait_for_url(site.console("/approvals"))
    before = set(approval_ids(page))
    mark_page(page)
    invoice = f"INV-{uuid.uuid4().hex[:8]}"
    waiter = Waiter(agent, call=("pay", {"to": "acme", "amount": 120, "invoice": invoice}))
    waiter.start()

    approval_id = new_row(page, before)  # the agent got 202; the list refreshed by itself
    assert still_marked(page), "the approvals page was reloaded"
    row = page.locator(f'tr[data-approval-id="{approval_id}"]')
    expect(row).to_contain_text("pay")
    assert waiter.is_alive(), "the agent's call did not wait for the decision"
    row.locator(f'a[href$="/console/approvals/{approval_id}"]').first.click()
    page.wait_for_url(site.console(f"/approvals/{approval_id}"))
    expect(page.locator("body")).to_contain_text("pay the acme invoice")  # the task's intent
    expect(page.locator("body")).to_contain_text(invoice)  # the call's arguments

    decide(page, site, approval_id, "approve", "invoice checked")
    result = waiter.outcome()
    assert result.result == {"echo": {"to": "acme", "amount": 120, "invoice": invoice}}
    approval = {v.check: v for v in result.verdicts}["approval"]
    assert approval.outcome == "allow"
    assert "approved by alice" in approval.reason
    used = site.approval(approval_id)
    assert (used["state"], used["used_call_id"]) == ("used", result.call_id)

    # The decision was signed in the browser with the session's WebCrypto key.
    detail = site.decision_record(approval_id)["detail"]
    assert (detail["via"], detail["principal"], detail["comment"]) == (
        "console",
        "alice",
        "invoice checked",
    )
    signed = detail["signed_statement"].encode()
    assert json.loads(signed)["approval"] == approval_id
    signatures.verify(site.session_jwk(detail["session"]), signed, detail["signature"])
    site.gateway.verify_audit()


def test_a_call_rejected_in_the_console_is_denied_with_the_comment(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    pending = ask(agent, "pay", {"to": "mallory", "amount": 9999})
    assert pending.approval_id is not None
    waiter = Waiter(agent, pending=pending)
    waiter.start()
    page = approver_page
    page.goto(site.console("/approvals"))
    expect(page.locator(f'tr[data-approval-id="{pending.approval_id}"]')).to_be_visible()

    decide(page, site, pending.approval_id, "reject", "unknown payee")
    with pytest.raises(CallDenied, match="unknown payee"):
        waiter.outcome()
    assert site.approval(pending.approval_id)["state"] == "rejected"
