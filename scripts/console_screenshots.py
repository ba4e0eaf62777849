"""Screenshots of the web console for the docs: `docs/console/*.png` (1280x800).

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]

Starts a real gateway with its console (the browser tests' kit,
`tests/browser/kit.py`) and the integration tests' tool server, plays some
traffic through the SDK (allowed, denied and asked calls; one asked call
approved, one rejected, one left pending), logs in as `admin` in Debian's
chromium (headless, driven by Playwright) and saves one PNG per page.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the integration harness and the browser kit

from playwright.sync_api import Page, sync_playwright  # noqa: E402

from browser.kit import (  # noqa: E402
    ADMIN,
    VIEWPORT,
    ConsoleSite,
    ask,
    console_site,
    launch_chromium,
    login,
)
from integration.harness import start_upstream  # noqa: E402
from ztgate.sdk import Agent, CallDenied  # noqa: E402

INTENT = "Pay the May invoices: acme INV-2041 (120) and globex INV-2042 (4200)"
PAGES = ("overview", "approvals", "feed", "agents", "tasks", "audit", "policy")


def play_traffic(site: ConsoleSite, agent: Agent) -> str:
    """Allowed, denied and asked calls; the id of the approval left pending."""
    for city in ("Lisbon", "Porto", "Faro", "Braga", "Coimbra", "Evora"):
        agent.call("lookup", {"invoice": f"INV-{city.upper()}", "city": city})
    agent.call("echo", {"msg": "status report sent"})
    for tool in ("delete_all_files", "read_secrets", "delete_all_files"):
        with contextlib.suppress(CallDenied):
            agent.call(tool, {"path": "/"})
    approved = ask(agent, "pay", {"to": "acme", "amount": 120, "invoice": "INV-2041"})
    site.api(
        "POST",
        f"/v1/approvals/{approved.approval_id}/approve",
        as_="alice",
        body={"comment": "invoice checked against the PO"},
    )
    agent.wait_for_approval(approved, timeout=10)
    rejected = ask(agent, "pay", {"to": "mallory", "amount": 9999, "invoice": "INV-6666"})
    site.api(
        "POST",
        f"/v1/approvals/{rejected.approval_id}/reject",
        as_="alice",
        body={"comment": "unknown payee"},
    )
    with contextlib.suppress(CallDenied):
        agent.wait_for_approval(rejected, timeout=10)
    pending = ask(agent, "pay", {"to": "globex", "amount": 4200, "invoice": "INV-2042"})
    return str(pending.approval_id)


def shoot(page: Page, path: Path) -> None:
    page.wait_for_load_state("load")
    page.wait_for_timeout(500)  # charts and live lists settle
    page.screenshot(path=path)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "console")
    out: Path = parser.parse_args().out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="ztgate-console-") as scratch,
        start_upstream() as upstream,
        console_site(Path(scratch) / "gateway", upstream) as site,
        site.agent(intent=INTENT) as agent,
    ):
        pending = play_traffic(site, agent)
        time.sleep(1)  # the overview's per-minute chart includes the last calls
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
            page = context.new_page()
            login(page, site, *ADMIN)
            for name in PAGES:
                page.click(f"#nav-{name}")
                shoot(page, out / f"{name}.png")
            page.goto(site.console(f"/approvals/{pending}"))
            page.fill("#comment", "amount and payee match the May invoice")
            page.locator("#comment").blur()
            page.evaluate("window.scrollTo(0, 0)")
            shoot(page, out / "approval.png")
            context.close()
            browser.close()


if __name__ == "__main__":
    main()
