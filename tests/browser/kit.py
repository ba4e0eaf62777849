"""The browser tests' kit, without pytest: system chromium, a gateway with its console, agents.

Used by `conftest.py` here and by `scripts/console_screenshots.py`.

- `launch_chromium`: Debian's chromium (`ZTGATE_CHROMIUM` overrides), headless,
  driven by Playwright; never a browser Playwright downloads.
- `ConsoleSite` / `console_site`: a real `ztgate serve` (integration harness)
  with `[console] enabled = true`, authentication required, the default
  policy (its `critical-asks` asks about every call of a `critical` tool),
  principals with passwords and an agent registered for this process.
- `login`: a real login through the form (the login page's JavaScript makes
  the session's signing key, so raw HTTP requests cannot stand in for it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, Playwright, expect

from integration.harness import GatewayProcess, Upstream, gateway_toml
from ztgate.cli.toml import value
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.identity.attestation import process_selectors
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import ApproverScope, PrincipalRegistry
from ztgate.sdk import Agent, ApprovalPending, CallResult, Principal
from ztgate.testing import make_settings

# Playwright must never fetch a browser of its own: we drive the system's.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

AGENT = "spiffe://ztgate.local/agent/console"
JUSTIFICATION = "the user asked to pay the invoice"
VIEWPORT = {"width": 1280, "height": 800}

# Principals and their console passwords: an approver, and one with another role only.
APPROVER = ("alice", "alice-approves-payments")
SECOND_APPROVER = ("carol", "carol-approves-too")
# An approver whose scope covers the `lookup` tool only (not the critical ones).
SCOPED_APPROVER = ("dave", "dave-approves-lookups")
TASKS_ONLY = ("bob", "bob-only-creates-tasks")
ADMIN = ("admin", "admin-sees-everything")

# `critical` tools are asked about by the default policy; `pay_fast`'s
# requests lapse after FAST_TIMEOUT seconds (approvals.tool_timeout_seconds).
CRITICAL_TOOLS = ("pay", "pay_fast")
FAST_TIMEOUT = 3.0
ALL_TOOLS = ("lookup", "echo", *CRITICAL_TOOLS)
DECIDED = {"approve": "approved", "reject": "rejected"}

MISSING_CHROMIUM = (
    "chromium not found: the browser tests drive Debian's chromium "
    "(`make test` installs it as root; otherwise `sudo apt-get install chromium`, "
    "or set ZTGATE_CHROMIUM to a Chromium executable)"
)


class ChromiumMissing(RuntimeError):
    """No Chromium executable to drive."""


def chromium_executable() -> str:
    """The Chromium to drive: `ZTGATE_CHROMIUM`, else `chromium` on PATH.

    Raises:
        ChromiumMissing: neither names an executable file.
    """
    path = os.environ.get("ZTGATE_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        raise ChromiumMissing(MISSING_CHROMIUM + (f" ({path} is not executable)" if path else ""))
    return path


def launch_chromium(playwright: Playwright) -> Browser:
    """The system chromium, headless.

    Raises:
        ChromiumMissing: see `chromium_executable`.
    """
    # Chromium's sandbox relies on user namespaces, which it refuses to set
    # up for root (it exits with "Running as root without --no-sandbox is not
    # supported"); CI runs as root in a container. Only then is it switched
    # off: the pages it loads are our own console on loopback.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    # Containers often give /dev/shm 64 MiB, too little for chromium's
    # shared memory: it crashes tabs. /tmp instead.
    args.append("--disable-dev-shm-usage")
    return playwright.chromium.launch(
        executable_path=chromium_executable(), headless=True, args=args
    )


# -- the gateway ---------------------------------------------------------------------


def console_toml(upstream: Upstream) -> str:
    """A config with the console on, authentication required, and the kit's tools."""
    tools: list[dict[str, Any]] = [
        {
            "name": "lookup",
            "url": f"{upstream.url}/echo/console",
            "risk": "read",
            "description": "Looks up an invoice.",
            "input_schema": {"type": "object"},
        },
        {
            "name": "echo",
            "url": f"{upstream.url}/echo/console",
            "risk": "write",
            "description": "Returns its arguments.",
            "input_schema": {"type": "object"},
        },
        *(
            {
                "name": name,
                "url": f"{upstream.url}/echo/console",
                "risk": "critical",
                "description": "Pays an invoice.",
                "input_schema": {"type": "object"},
            }
            for name in CRITICAL_TOOLS
        ),
    ]
    head = (
        "[console]\nenabled = true\n\n"
        "[approvals]\n"
        f"tool_timeout_seconds = {value({'pay_fast': FAST_TIMEOUT})}\n\n"
    )
    return head + gateway_toml(tools, gateway={"authentication": "required"})


@dataclass
class ConsoleSite:
    """A running gateway with its console, principals with passwords and API keys."""

    gateway: GatewayProcess
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.gateway.url

    def console(self, path: str = "/") -> str:
        """The absolute URL of a console page, e.g. `console("/approvals")`."""
        return f"{self.gateway.url}/console{path}"

    def api(self, method: str, path: str, *, as_: str = "admin", body: Any = None) -> Any:
        """The gateway's HTTP API with a principal's key; the JSON answer (raises on >= 400)."""
        headers = {"Authorization": f"Bearer {self.keys[as_]}"}
        with httpx.Client(base_url=self.url, timeout=10) as client:
            response = client.request(method, path, headers=headers, json=body)
        response.raise_for_status()
        return response.json()

    def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (or enable again) a principal, as `ztgate principals disable` does."""
        database = load_settings(self.gateway.config).open_database()
        try:
            PrincipalRegistry(database, SystemClock()).set_disabled(name, disabled)
        finally:
            database.dispose()

    def decision_record(self, approval_id: str) -> dict[str, Any]:
        """The audit record of the decision on `approval_id` (read from SQLite)."""
        rows = self.gateway._query(
            "SELECT body FROM audit_records WHERE kind = 'approval' ORDER BY chain, seq"
        )
        for (body,) in rows:
            record: dict[str, Any] = json.loads(body)
            if record.get("detail", {}).get("approval") == approval_id:
                return record
        raise AssertionError(f"no audit record of a decision on {approval_id}")

    def session_jwk(self, session_id: str) -> dict[str, Any]:
        """The public key a console session was bound to at login."""
        rows = self.gateway._query(
            "SELECT public_jwk FROM console_sessions WHERE id = ?", (session_id,)
        )
        assert rows, f"no console session {session_id}"
        jwk: dict[str, Any] = json.loads(rows[0][0])
        return jwk

    def approval(self, approval_id: str) -> dict[str, Any]:
        """One approval request as the API shows it."""
        found: dict[str, Any] = self.api("GET", f"/v1/approvals/{approval_id}")["approval"]
        return found

    @contextlib.contextmanager
    def agent(
        self, intent: str = "pay the acme invoice", tools: tuple[str, ...] = ALL_TOOLS
    ) -> Iterator[Agent]:
        """This process as the kit's agent, bound to a new task for `tools`."""
        with Principal(self.url, self.keys["admin"], timeout=10) as principal:
            task_id = principal.create_task(
                agent=AGENT, intent=intent, scope={"tools": {tool: {} for tool in tools}}
            ).task_id
        socket_path = str(self.gateway.workdir / ".ztgate" / "agent.sock")
        with Agent.connect(self.url, socket_path=socket_path, spiffe_id=AGENT, timeout=10) as agent:
            agent.bind(task_id=task_id)
            yield agent


def _set_up_principals(site: ConsoleSite) -> None:
    database = load_settings(site.gateway.config).open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(AGENT, process_selectors())
        principals = PrincipalRegistry(database, SystemClock())
        principals.add(APPROVER[0], roles=["approver"])
        principals.add(SECOND_APPROVER[0], roles=["approver"])
        principals.add(TASKS_ONLY[0], roles=["tasks"])
        principals.add(
            SCOPED_APPROVER[0], roles=["approver"], scope=ApproverScope(tools=("lookup",))
        )
        everyone = (APPROVER, SECOND_APPROVER, SCOPED_APPROVER, TASKS_ONLY, ADMIN)
        for name, password in everyone:
            principals.set_password(name, password)
            site.keys[name] = principals.create_key(name)[1]
    finally:
        database.dispose()


@contextlib.contextmanager
def console_site(workdir: Path, upstream: Upstream) -> Iterator[ConsoleSite]:
    """Initialise `workdir`, set up principals and the agent, and serve the console."""
    workdir.mkdir(parents=True, exist_ok=True)
    make_settings(workdir, console_toml(upstream))
    site = ConsoleSite(GatewayProcess(workdir))
    site.gateway.start()
    try:
        _set_up_principals(site)
        yield site
    finally:
        site.gateway.stop()


# -- the browser side ------------------------------------------------------------------


def submit_login(page: Page, site: ConsoleSite, name: str, password: str) -> None:
    """Fill in and send the console's login form (the page makes its key first)."""
    page.goto(site.console("/login"))
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login")


def login(page: Page, site: ConsoleSite, name: str, password: str) -> None:
    """Log in through the console's form and land on the overview."""
    submit_login(page, site, name, password)
    page.wait_for_url(site.console("/"))


def approval_ids(page: Page) -> list[str]:
    """The ids of the approval rows on the page, in order."""
    ids: list[str] = page.locator("tr[data-approval-id]").evaluate_all(
        "rows => rows.map(row => row.dataset.approvalId)"
    )
    return ids


def decide(page: Page, site: ConsoleSite, approval_id: str, action: str, comment: str) -> None:
    """On the request's page: the comment, then `approve` or `reject`, until the page says so."""
    if not page.url.endswith(f"/console/approvals/{approval_id}"):
        page.goto(site.console(f"/approvals/{approval_id}"))
    page.fill("#comment", comment)
    page.click(f"#{action}")
    expect(page.locator("#decision")).to_contain_text(DECIDED[action])


def new_row(page: Page, before: set[str], timeout: float = 15) -> str:
    """The id of the first approval row that was not on the page before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [i for i in approval_ids(page) if i not in before]
        if fresh:
            return fresh[0]
        page.wait_for_timeout(50)
    raise AssertionError("no new approval row appeared")


# What console.js does on submit, callable from a test: the session's key
# (the only one in this context's IndexedDB) signs a decision statement.
_SIGN = """async ([approval, decision, comment, requestSha256]) => {
    const session = document.querySelector('meta[name="ztgate-session"]').content;
    const db = await new Promise((resolve, reject) => {
        const opened = indexedDB.open("ztgate-console", 1);
        opened.onsuccess = () => resolve(opened.result);
        opened.onerror = () => reject(opened.error);
    });
    const pairs = await new Promise((resolve, reject) => {
        const all = db.transaction("keys", "readonly").objectStore("keys").getAll();
        all.onsuccess = () => resolve(all.result);
        all.onerror = () => reject(all.error);
    });
    db.close();
    const statement = JSON.stringify({
        approval, comment, decision, request_sha256: requestSha256, session,
        type: "ztgate-console-decision/1",
    });
    const signature = await crypto.subtle.sign(
        {name: "ECDSA", hash: "SHA-256"}, pairs[0].privateKey,
        new TextEncoder().encode(statement));
    let text = "";
    for (const byte of new Uint8Array(signature)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
}"""

_POST = """([action, fields]) => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    for (const [name, value] of Object.entries(fields)) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
}"""


def post_signed_decision(
    page: Page, site: ConsoleSite, approval_id: str, decision: str, comment: str
) -> int:
    """Sign and POST a decision from the page, bypassing its buttons; the answer's status.

    The page must be a logged-in console page: its logout form has the CSRF token.
    """
    request_sha256 = site.approval(approval_id)["request_sha256"]
    signature = page.evaluate(_SIGN, [approval_id, decision, comment, request_sha256])
    fields = {
        "csrf": page.locator('form.logout input[name="csrf"]').input_value(),
        "decision": decision,
        "comment": comment,
        "signature": signature,
    }
    with page.expect_response(f"**/approvals/{approval_id}/decide") as answer:
        page.evaluate(_POST, [site.console(f"/approvals/{approval_id}/decide"), fields])
    return answer.value.status


def mark_page(page: Page) -> None:
    """Mark the page's window: `still_marked` tells whether it was reloaded since."""
    page.evaluate("window.__ztgateNotReloaded = true")


def still_marked(page: Page) -> bool:
    """True while the page marked by `mark_page` was neither reloaded nor left."""
    return bool(page.evaluate("window.__ztgateNotReloaded === true"))


# -- agents waiting for approval ------------------------------------------------------------


def ask(agent: Agent, tool: str, arguments: Mapping[str, Any]) -> ApprovalPending:
    """Make a call the policy asks about; the pending approval (202).

    Raises:
        AssertionError: the call was not asked.
    """
    try:
        agent.call(tool, arguments, justification=JUSTIFICATION)
    except ApprovalPending as pending:
        assert pending.approval_id is not None
        return pending
    raise AssertionError(f"{tool} was not asked about")


class Waiter(threading.Thread):
    """A thread running `agent.wait_for_approval` (or a whole waiting call) to its end."""

    def __init__(
        self,
        agent: Agent,
        *,
        pending: ApprovalPending | None = None,
        call: tuple[str, Mapping[str, Any]] | None = None,
        timeout: float = 30,
    ) -> None:
        super().__init__(daemon=True)
        self.agent, self.pending, self.call, self.timeout = agent, pending, call, timeout
        self.result: CallResult | None = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()

    def run(self) -> None:
        try:
            if self.pending is not None:
                self.result = self.agent.wait_for_approval(self.pending, self.timeout)
            elif self.call is not None:
                tool, arguments = self.call
                self.result = self.agent.call(
                    tool, arguments, justification=JUSTIFICATION, approval_timeout=self.timeout
                )
        except BaseException as exc:  # handed to the test's thread
            self.error = exc

    def outcome(self, timeout: float = 30) -> CallResult:
        """The call's result once the thread ends; its exception re-raised.

        Raises:
            AssertionError: the thread did not end within `timeout` seconds.
        """
        self.join(timeout)
        assert not self.is_alive(), "the waiting call did not end"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
