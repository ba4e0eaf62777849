"""The console's other pages in a real browser: the live feed, and every page renders.

The feed page shows a new decision row as the agent's call is decided,
without a reload, and its filter holds for the rows that stream in; every
page linked from the navigation renders without a JavaScript error; logging
out ends the session.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Locator, Page, expect

from ztgate.sdk import Agent, CallDenied

from .kit import ConsoleSite, mark_page, still_marked

PAGES = ("overview", "approvals", "feed", "agents", "tasks", "audit", "policy")


def feed_row(page: Page, outcome: str, call_id: str | None) -> Locator:
    """The feed's rows for one call with one outcome."""
    assert call_id is not None
    return page.locator(f'tr.feed-row[data-outcome="{outcome}"]', has_text=call_id)


def test_the_feed_shows_new_decisions_without_reloading(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    page = approver_page
    page.click("#nav-feed")
    page.wait_for_url(site.console("/feed"))
    expect(page.locator("#feed-status")).to_contain_text("Live")
    mark_page(page)

    allowed = agent.call("lookup", {"invoice": "INV-FEED"})
    expect(feed_row(page, "allow", allowed.call_id).first).to_be_visible()
    with pytest.raises(CallDenied) as denied:
        agent.call("not_in_the_task", {"invoice": "INV-FEED"})
    row = feed_row(page, "deny", denied.value.call_id)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("not_in_the_task")
    assert still_marked(page), "the feed page was reloaded"


def test_the_feed_filter_holds_for_live_rows(
    approver_page: Page, site: ConsoleSite, agent: Agent
) -> None:
    page = approver_page
    page.goto(site.console("/feed"))
    page.select_option("#outcome", "deny")
    page.click("#filter")
    page.wait_for_url("**/console/feed?outcome=deny**")

    allowed = agent.call("lookup", {"invoice": "INV-FILTER"})
    with pytest.raises(CallDenied) as denied:
        agent.call("not_in_the_task", {"invoice": "INV-FILTER"})
    expect(feed_row(page, "deny", denied.value.call_id)).to_have_count(1)
    # Streamed in order: had the allowed call's rows passed the filter, they would be here.
    assert allowed.call_id is not None
    expect(page.locator("tr.feed-row", has_text=allowed.call_id)).to_have_count(0)
    expect(page.locator('tr.feed-row:not([data-outcome="deny"])')).to_have_count(0)


def test_every_page_renders_without_a_script_error(approver_page: Page, site: ConsoleSite) -> None:
    page = approver_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if _is_error(message) else None,
    )
    for name in PAGES:
        page.click(f"#nav-{name}")
        page.wait_for_load_state("load")
        expect(page.locator(f"#nav-{name}")).to_be_visible()
    assert not errors, errors


def _is_error(message: ConsoleMessage) -> bool:
    return message.type == "error"


def test_logging_out_ends_the_session(approver_page: Page, site: ConsoleSite) -> None:
    page = approver_page
    page.click("#logout")
    page.wait_for_url("**/console/login**")
    page.goto(site.console("/approvals"))
    assert "/console/login" in page.url
