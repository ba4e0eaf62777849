"""The console refuses what it must, in a real browser.

A wrong password gets the error and no session; a decision POSTed without
the CSRF token is refused; a principal without the approver role cannot log
in, and one disabled after opening a request cannot decide it; an approver
outside their approver scope sees no buttons, and a decision they sign and
post anyway is refused; an approval given in the console is bound to the
exact call (a changed argument is refused, a replay is refused); a request
that lapsed cannot be approved, and its call is denied.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode

import pytest
from playwright.sync_api import Page, Route, expect

from ztgate.sdk import Agent, CallDenied

from .kit import (
    APPROVER,
    JUSTIFICATION,
    SCOPED_APPROVER,
    SECOND_APPROVER,
    TASKS_ONLY,
    ConsoleSite,
    ask,
    decide,
    login,
    post_signed_decision,
    submit_login,
)


def test_a_wrong_password_shows_the_error_and_opens_no_session(
    page: Page, site: ConsoleSite
) -> None:
    submit_login(page, site, APPROVER[0], "not-" + APPROVER[1])
    expect(page.locator("#error")).to_contain_text("invalid name or password")
    expect(page.locator("#nav-approvals")).to_have_count(0)
    assert "/console/login" in page.url
    page.goto(site.console("/approvals"))
    assert "/console/login" in page.url  # still no session


def test_a_decision_without_the_csrf_token_is_refused(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    pending = ask(agent, "pay", {"to": "acme", "amount": 7})
    page = approver_page
    page.goto(site.console(f"/approvals/{pending.approval_id}"))
    sent: list[dict[str, list[str]]] = []

    def drop_csrf(route: Route) -> None:
        # The browser's own signed decision, less its CSRF token.
        fields = parse_qs(route.request.post_data or "", keep_blank_values=True)
        sent.append(dict(fields))
        fields.pop("csrf", None)
        route.continue_(post_data=urlencode(fields, doseq=True))

    page.route("**/decide", drop_csrf)
    page.fill("#comment", "forged")
    with page.expect_response("**/decide") as answer:
        page.click("#approve")
    assert answer.value.status == 403
    expect(page.locator("#error")).to_contain_text("CSRF")
    assert sent and sent[0]["csrf"] and sent[0]["signature"][0], sent  # signed, token removed
    assert site.approval(str(pending.approval_id))["state"] == "pending"

    page.unroute("**/decide")  # the same decision with its token goes through
    decide(page, site, str(pending.approval_id), "reject", "not forged")
    assert site.approval(str(pending.approval_id))["state"] == "rejected"


def test_a_principal_without_the_approver_role_cannot_log_in(page: Page, site: ConsoleSite) -> None:
    submit_login(page, site, *TASKS_ONLY)
    expect(page.locator("#error")).to_contain_text("invalid name or password")  # no oracle
    expect(page.locator("#nav-approvals")).to_have_count(0)
    page.goto(site.console("/approvals"))
    assert "/console/login" in page.url


def test_the_role_is_checked_again_at_each_decision(
    page: Page, site: ConsoleSite, agent: Agent
) -> None:
    pending = ask(agent, "pay", {"to": "acme", "amount": 8})
    login(page, site, *SECOND_APPROVER)
    page.goto(site.console(f"/approvals/{pending.approval_id}"))
    page.fill("#comment", "approved by someone who no longer may")
    site.set_disabled(SECOND_APPROVER[0], True)
    try:
        with page.expect_response("**/decide") as answer:
            page.click("#approve")
        assert answer.value.status in (302, 303, 401, 403)
        expect(page.locator("#decision")).to_have_count(0)
        assert site.approval(str(pending.approval_id))["state"] == "pending"
        page.goto(site.console("/approvals"))
        expect(page.locator(f'tr[data-approval-id="{pending.approval_id}"]')).to_have_count(0)
    finally:
        site.set_disabled(SECOND_APPROVER[0], False)


def test_an_approval_is_not_replayed_on_a_changed_argument(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    arguments = {"to": "acme", "amount": 50}
    pending = ask(agent, "pay", arguments)
    decide(approver_page, site, str(pending.approval_id), "approve", "fifty is fine")
    with pytest.raises(CallDenied, match="the arguments changed"):
        agent._call("pay", {"to": "acme", "amount": 5000}, JUSTIFICATION, None, pending.approval_id)
    result = agent.wait_for_approval(pending, timeout=10)  # still unused: runs once
    assert result.result == {"echo": arguments}
    with pytest.raises(CallDenied, match="used"):
        agent._call("pay", arguments, JUSTIFICATION, None, pending.approval_id)


def test_an_approval_after_the_timeout_is_refused(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    pending = ask(agent, "pay_fast", {"to": "acme", "amount": 1})
    assert pending.expires_at is not None
    page = approver_page
    page.goto(site.console(f"/approvals/{pending.approval_id}"))
    expect(page.locator("#approve")).to_be_visible()  # shown while still pending
    time.sleep(max(0.0, pending.expires_at - time.time()) + 0.3)
    page.fill("#comment", "too late")
    page.click("#approve")
    expect(page.locator("#error")).to_contain_text("expired")
    expect(page.locator("#decision")).to_have_count(0)
    assert site.approval(str(pending.approval_id))["state"] == "expired"
    with pytest.raises(CallDenied, match="expired"):
        agent.wait_for_approval(pending, timeout=5)


def test_an_approver_outside_their_scope_gets_no_buttons_and_a_signed_post_is_refused(
    page: Page, approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    pending = ask(agent, "pay", {"to": "acme", "amount": 9})
    approval_id = str(pending.approval_id)
    login(page, site, *SCOPED_APPROVER)  # approves `lookup` calls only
    page.goto(site.console(f"/approvals/{approval_id}"))
    expect(page.locator("#out-of-scope")).to_be_visible()
    expect(page.locator("#approve")).to_have_count(0)
    # A decision signed with the scoped approver's own session key and CSRF token.
    assert post_signed_decision(page, site, approval_id, "approve", "mine now") == 403
    assert site.approval(approval_id)["state"] == "pending"

    # The same forged-but-valid post from an approver in scope goes through.
    approver_page.goto(site.console(f"/approvals/{approval_id}"))
    assert post_signed_decision(approver_page, site, approval_id, "reject", "not mine") < 400
    assert site.approval(approval_id)["state"] == "rejected"
