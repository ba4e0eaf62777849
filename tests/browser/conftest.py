"""Fixtures for the browser tests: Debian's chromium driven by Playwright, a real gateway.

- `browser`: headless chromium for each module (`kit.launch_chromium`). No
  chromium is a failure with the fix in the message, never a skip: `make
  test` installs it.
- `site`: `ztgate serve` with its console, for the session (`kit.console_site`).
- `agent`: this process as the kit's agent, bound to a task, for the module.
- `approver_page` / `page`: a fresh browser context per test, logged in as
  the approver, or not logged in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from integration.harness import Upstream, start_upstream
from ztgate.sdk import Agent

from .kit import (
    APPROVER,
    VIEWPORT,
    ChromiumMissing,
    ConsoleSite,
    console_site,
    launch_chromium,
    login,
)

# Generous for a loaded CI machine; a passing test waits far less.
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless system chromium for one test module.

    Not for the session: while the sync API's Playwright runs, its event loop
    is this thread's running loop, and pytest-asyncio cannot run the async
    tests of other modules ("Runner.run() cannot be called from a running
    event loop"). pytest-randomly shuffles modules but keeps each together.
    """
    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except ChromiumMissing as missing:
            pytest.fail(str(missing), pytrace=False)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def console_upstream() -> Iterator[Upstream]:
    """The tool server process (the integration tests' own, not shared with them)."""
    with start_upstream() as server:
        yield server


@pytest.fixture(scope="session")
def site(
    tmp_path_factory: pytest.TempPathFactory, console_upstream: Upstream
) -> Iterator[ConsoleSite]:
    """The gateway with its console for the session."""
    with console_site(tmp_path_factory.mktemp("console"), console_upstream) as running:
        yield running


@pytest.fixture(scope="module")
def agent(site: ConsoleSite) -> Iterator[Agent]:
    """This process as the kit's agent, bound to a fresh task for the module."""
    with site.agent() as client:
        yield client


@contextlib.contextmanager
def _page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies: logged out)."""
    with _page(browser) as opened:
        yield opened


@pytest.fixture
def approver_page(browser: Browser, site: ConsoleSite) -> Iterator[Page]:
    """A page in a fresh browser context, logged in as the approver."""
    with _page(browser) as opened:
        login(opened, site, *APPROVER)
        yield opened
