"""The console's pages and its approvals: login, roles, CSRF, signed decisions, the feed."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import select

from ztgate.store.tables import audit_records

from .conftest import AGENT, Browser, ask


async def test_login_sets_a_strict_cookie_and_lands_on_the_overview(browser: Browser) -> None:
    done = await browser.login("alice")
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    cookie = done.headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/console"):
        assert attribute in cookie
    page = await browser.client.get("/console/")
    assert page.status_code == 200
    for nav in ("overview", "approvals", "feed", "agents", "tasks", "audit", "policy"):
        assert f'id="nav-{nav}"' in page.text
    assert 'id="logout"' in page.text
    assert "<svg" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text  # no inline script


async def test_a_signed_approval_is_recorded_with_its_signature(alice: Browser) -> None:
    approval = ask(alice.gateway)
    listed = await alice.client.get("/console/approvals")
    assert f'data-approval-id="{approval.id}"' in listed.text
    rows = await alice.client.get("/console/approvals/rows")
    assert f'href="/console/approvals/{approval.id}"' in rows.text
    page = await alice.client.get(f"/console/approvals/{approval.id}")
    assert 'id="approve"' in page.text and 'id="reject"' in page.text
    assert "named in the intent" in page.text and 'id="comment"' in page.text
    done = await alice.decide(approval, "approve", 'fine "quoted"\nand ünïcode')
    assert done.status_code == 303, done.text
    shown = await alice.client.get(done.headers["location"])
    assert 'id="decision"' in shown.text and "approved by alice" in shown.text
    with alice.gateway.database.read() as conn:
        bodies = [orjson.loads(b) for (b,) in conn.execute(select(audit_records.c.body))]
    (record,) = [b for b in bodies if b["kind"] == "approval"]
    detail = record["detail"]
    assert detail["principal"] == "alice" and detail["via"] == "console"
    assert detail["signature"] and detail["session_key_thumbprint"]
    signed = orjson.loads(detail["signed_statement"])
    assert signed["approval"] == approval.id and signed["decision"] == "approve"
    assert signed["request_sha256"] == approval.request_sha256
    assert not any("correct horse" in orjson.dumps(b).decode() for b in bodies)


async def test_wrong_signatures_change_nothing(alice: Browser) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    approval = ask(alice.gateway)
    other_key = ec.generate_private_key(ec.SECP256R1())
    for override in (
        {"key": other_key},
        {"request_sha256": "0" * 64},
        {"session_id": "another-session"},
        {"signature": ""},
        {"signature": "not base64!"},
    ):
        refused = await alice.decide(approval, "approve", **override)
        assert refused.status_code == 403, override
    signed_reject = await alice.decide(approval, "reject", decision="approve")
    assert signed_reject.status_code == 403  # signed "reject", posted "approve"
    assert alice.gateway.approvals.get(approval.id).state == "pending"


async def test_decisions_need_the_csrf_token(alice: Browser) -> None:
    approval = ask(alice.gateway)
    for csrf in ("", "wrong"):
        refused = await alice.decide(approval, "approve", csrf=csrf)
        assert refused.status_code == 403
    elsewhere = await alice.client.post(
        f"/console/approvals/{approval.id}/decide",
        data={"csrf": await alice.csrf(), "decision": "approve"},
        headers={"origin": "null"},
    )
    assert elsewhere.status_code == 403
    assert alice.gateway.approvals.get(approval.id).state == "pending"


async def test_four_eyes_expired_and_decided_requests_are_refused(alice: Browser) -> None:
    own = ask(alice.gateway, principal="alice", amount=3, second_person=True)
    four_eyes = await alice.decide(own, "approve")
    assert four_eyes.status_code == 403 and "second person" in four_eyes.text
    rejected = await alice.decide(ask(alice.gateway, amount=1), "reject", "no")
    assert rejected.status_code == 303
    again = ask(alice.gateway, amount=2, ttl=0.001)
    late = await alice.decide(again, "approve")
    assert late.status_code == 409 and "expired" in late.text
    missing = await alice.client.get("/console/approvals/nope")
    assert missing.status_code == 404


async def test_the_feed_shows_decisions_and_streams_new_ones(
    alice: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ztgate.audit import AuditEntry
    from ztgate.console import app

    monkeypatch.setattr(app, "FEED_MAX_SECONDS", 1.0)  # the test transport reads whole bodies

    await alice.gateway.audit.append(
        AuditEntry(kind="decision", outcome="deny", call_id="c9", agent=AGENT, tool="pay")
    )
    page = await alice.client.get("/console/feed?outcome=deny")
    assert 'class="feed-row" data-outcome="deny"' in page.text
    assert (await alice.client.get("/console/feed?outcome=bogus")).status_code == 422
    async with alice.client.stream("GET", "/console/feed/events?after=0") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        seen = b""
        async for chunk in events.aiter_bytes():
            seen += chunk
            if b"event: decision" in seen:
                break
    assert b'"outcome":"deny"' in seen


async def test_an_approver_outside_its_scope_sees_no_buttons_and_cannot_decide(
    browser: Browser,
) -> None:
    from ztgate.principals.registry import PrincipalRegistry, parse_scope

    from .conftest import PASSWORD

    registry = PrincipalRegistry(browser.gateway.database, browser.gateway.clock)
    registry.add("erin", roles=["approver"], scope=parse_scope(tools=["email.*"]))
    registry.set_password("erin", PASSWORD)
    assert (await browser.login("erin")).status_code == 303
    approval = ask(browser.gateway)
    page = await browser.client.get(f"/console/approvals/{approval.id}")
    assert 'id="out-of-scope"' in page.text and 'id="approve"' not in page.text
    refused = await browser.decide(approval, "approve")
    assert refused.status_code == 403 and "approver scope" in refused.text
    assert browser.gateway.approvals.get(approval.id).state == "pending"


async def test_a_store_failure_is_an_error_page_never_a_traceback(
    alice: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ztgate.errors import AuditError, StoreUnavailableError

    def unavailable(*_args: object) -> None:
        raise StoreUnavailableError("database unavailable: disk I/O error")

    monkeypatch.setattr(alice.gateway.approvals, "list", unavailable)
    page = await alice.client.get("/console/approvals")
    assert page.status_code == 503 and "store is unavailable" in page.text
    assert "Traceback" not in page.text and "disk I/O" not in page.text

    def broken(*_args: object) -> None:
        raise AuditError("the audit log is not running")

    monkeypatch.setattr(alice.gateway.approvals, "get", broken)
    failed = await alice.client.get("/console/approvals/x")
    assert failed.status_code == 500 and "could not be completed" in failed.text
