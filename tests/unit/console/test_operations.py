"""Operators' pages: agents, tasks, the audit log, the policy set; actions need their roles."""

from __future__ import annotations

from ztgate.principals.registry import PrincipalRegistry

from .conftest import AGENT, PASSWORD, Browser

SCOPE = {"tools": {"pay": {}}}


async def test_operator_pages_render_for_approvers(alice: Browser) -> None:
    for path in ("/console/agents", "/console/tasks", "/console/audit", "/console/policy"):
        page = await alice.client.get(path)
        assert page.status_code == 200, (path, page.text)
    audit = await alice.client.get("/console/audit")
    assert "Chain verification: intact" in audit.text
    refused = await alice.post(
        "/console/agents/suspend", {"csrf": await alice.csrf(), "spiffe_id": AGENT}
    )
    assert refused.status_code == 403  # approvers only look


async def test_admins_suspend_resume_and_revoke_agents(browser: Browser) -> None:
    assert (await browser.login("root")).status_code == 303
    csrf = await browser.csrf()
    for action, done in (("suspend", "suspended"), ("resume", "resumed"), ("revoke", "revoked")):
        answer = await browser.post(
            f"/console/agents/{action}", {"csrf": csrf, "spiffe_id": AGENT, "reason": "test"}
        )
        assert answer.status_code == 303, answer.text
        assert done in answer.headers["location"]
    page = await browser.client.get("/console/agents")
    assert "revoked" in page.text
    bad = await browser.post("/console/agents/suspend", {"csrf": csrf, "spiffe_id": "nope"})
    assert bad.status_code == 422
    unknown = await browser.client.get("/console/no-such-page")
    assert unknown.status_code == 404 and unknown.headers["x-frame-options"] == "DENY"


async def test_tasks_are_listed_and_ended_by_their_owner_or_an_admin(browser: Browser) -> None:
    gateway = browser.gateway
    assert gateway.warrants is not None
    registry = gateway.warrants.registry
    mine = registry.create(
        principal="erin", agent=AGENT, intent="pay acme", scope={"tools": {"pay": {}}}
    )[0]
    other = registry.create(
        principal="root", agent=AGENT, intent="other", scope={"tools": {"pay": {}}}
    )[0]
    principals = PrincipalRegistry(gateway.database, gateway.clock)
    principals.add("erin", roles=["approver", "tasks"])
    principals.set_password("erin", PASSWORD)
    assert (await browser.login("erin")).status_code == 303
    page = await browser.client.get("/console/tasks")
    assert f'data-task-id="{mine.id}"' in page.text and "pay acme" in page.text
    csrf = await browser.csrf()
    refused = await browser.post(f"/console/tasks/{other.id}/complete", {"csrf": csrf})
    assert refused.status_code == 403
    done = await browser.post(f"/console/tasks/{mine.id}/complete", {"csrf": csrf})
    assert done.status_code == 303 and "completed" in done.headers["location"]
    assert registry.get(mine.id).state == "completed"
    again = await browser.post(f"/console/tasks/{mine.id}/revoke", {"csrf": csrf})
    assert again.status_code == 409
    no_csrf = await browser.post(f"/console/tasks/{other.id}/revoke", {"csrf": ""})
    assert no_csrf.status_code == 403
    missing = await browser.post("/console/tasks/nope/complete", {"csrf": csrf})
    assert missing.status_code == 404


async def test_an_admin_revokes_any_task(browser: Browser) -> None:
    registry = browser.gateway.warrants.registry  # type: ignore[union-attr]
    task = registry.create(
        principal="carol", agent=AGENT, intent="x", scope={"tools": {"pay": {}}}
    )[0]
    assert (await browser.login("root")).status_code == 303
    done = await browser.post(
        f"/console/tasks/{task.id}/revoke", {"csrf": await browser.csrf(), "reason": "stop"}
    )
    assert done.status_code == 303
    assert registry.get(task.id).state == "revoked"
    policy = await browser.client.get("/console/policy")
    assert "policy-version" in policy.text or "No policy status" in policy.text
