"""The web console end to end: a real gateway process, spoken to over HTTP as a browser would.

Logins (good, bad, unknown, disabled, wrong role), the session cookie's
attributes, logout, CSRF, and approvals decided in the console with the
session key's signature (made here with `cryptography`, over the same
canonical statement the console's script signs): the waiting SDK call then
runs; a signature by another key or over another statement is refused; an
approval is still bound to the call's arguments and refused after its timeout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.console.signatures import p1363_signature, statement
from ztgate.identity.attestation import process_selectors
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.sdk import Agent, ApprovalPending, CallDenied, Principal
from ztgate.testing import make_settings
from ztgate.warrants.jwk import public_jwk

from .harness import GatewayProcess, Upstream, clean_env, critical_tools, gateway_toml, main_tools

AGENT = "spiffe://ztgate.local/agent/console"
PASSWORD = "correct horse battery staple"
JUSTIFICATION = "the user asked to pay the invoice"
ZTGATE = (sys.executable, "-m", "ztgate")


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, dead_port: int
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("console")
    tools = [*main_tools(upstream, dead_port, tag="console"), *critical_tools(upstream, "console")]
    toml = gateway_toml(tools, gateway={"authentication": "required"})
    toml = "[approvals]\ntool_timeout_seconds = { pay_fast = 1.0 }\n\n" + toml
    make_settings(workdir, toml)
    process = GatewayProcess(workdir)
    process.start()
    database = load_settings(process.config).open_database()
    try:
        EntryRegistry(database, SystemClock(), "ztgate.local").register(AGENT, process_selectors())
        principals = PrincipalRegistry(database, SystemClock())
        for name, roles in (("alice", ["approver"]), ("carol", ["tasks"]), ("dave", ["approver"])):
            principals.add(name, roles=roles)
        process.keys = {"admin": principals.create_key("admin")[1]}  # type: ignore[attr-defined]
    finally:
        database.dispose()
    for name in ("alice", "carol", "dave"):
        done = subprocess.run(
            [
                *ZTGATE,
                "--config",
                str(process.config),
                "principals",
                "password",
                name,
                "--password-stdin",
            ],
            input=PASSWORD + "\n",
            cwd=workdir,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert process.cli("principals", "disable", "dave").returncode == 0
    try:
        yield process
    finally:
        process.stop()


class Browser:
    """A browser's view of the console: cookies kept by hand (Secure ones on http://127.0.0.1
    too, as Chromium does for loopback), the Origin header on posts, and a session key."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.http = httpx.Client(base_url=gateway.url, timeout=10, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.set_cookie_headers: list[str] = []

    def close(self) -> None:
        self.http.close()

    def _keep(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def get(self, path: str) -> httpx.Response:
        return self._keep(self.http.get(path, headers=self._cookie_header()))

    def post(self, path: str, form: dict[str, str], origin: str | None = None) -> httpx.Response:
        headers = {"origin": origin or self.gateway.url, **self._cookie_header()}
        return self._keep(self.http.post(path, data=form, headers=headers))

    def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = self.get("/console/login")
        return self.post(
            "/console/login",
            {
                "login_csrf": _hidden(page.text, "login_csrf"),
                "name": name,
                "password": password,
                "public_jwk": orjson.dumps(public_jwk(self.key)).decode(),
            },
        )

    def csrf(self) -> str:
        return _hidden(self.get("/console/").text, "csrf")

    def session_id(self) -> str:
        page = self.get("/console/")
        found = re.search(r'name="ztgate-session" content="([^"]+)"', page.text)
        assert found is not None
        return found.group(1)

    def decide(
        self,
        approval_id: str,
        decision: str,
        comment: str = "",
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        signed_comment: str | None = None,
    ) -> httpx.Response:
        page = self.get(f"/console/approvals/{approval_id}")
        assert page.status_code == 200, page.text
        request_sha256 = re.search(r'data-request-sha256="([0-9a-f]{64})"', page.text)
        assert request_sha256 is not None, "the request is not pending"
        signed = statement(
            approval_id=approval_id,
            decision=decision,
            comment=comment if signed_comment is None else signed_comment,
            request_sha256=request_sha256.group(1),
            session_id=self.session_id(),
        )
        return self.post(
            f"/console/approvals/{approval_id}/decide",
            {
                "csrf": _hidden(page.text, "csrf"),
                "decision": decision,
                "comment": comment,
                "signature": p1363_signature(key or self.key, signed),
            },
        )


def _hidden(html: str, name: str) -> str:
    found = re.search(f'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no {name} in the page"
    return found.group(1)


@pytest.fixture
def browser(gateway: GatewayProcess) -> Iterator[Browser]:
    client = Browser(gateway)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def alice(browser: Browser) -> Browser:
    done = browser.login("alice")
    assert done.status_code == 303, done.text
    return browser


@pytest.fixture(scope="module")
def agent(gateway: GatewayProcess) -> Iterator[Agent]:
    keys: dict[str, str] = gateway.keys  # type: ignore[attr-defined]
    with Principal(gateway.url, keys["admin"], timeout=10) as principal:
        task_id = principal.create_task(
            agent=AGENT,
            intent="pay the acme invoice of 100 euros",
            scope={"tools": {"pay": {}, "pay_fast": {}, "lookup": {}}},
        ).task_id
    socket_path = str(gateway.workdir / ".ztgate" / "agent.sock")
    with Agent.connect(gateway.url, socket_path=socket_path, spiffe_id=AGENT, timeout=10) as client:
        client.bind(task_id=task_id)
        yield client


def _pending(agent: Agent, tool: str, arguments: dict[str, Any]) -> ApprovalPending:
    with pytest.raises(ApprovalPending) as caught:
        agent.call(tool, arguments, justification=JUSTIFICATION)
    assert caught.value.approval_id is not None
    return caught.value


def _state(gateway: GatewayProcess, approval_id: str) -> str:
    rows = gateway._query("SELECT state FROM approvals WHERE id = ?", (approval_id,))
    return str(rows[0][0])


# -- logins and sessions -----------------------------------------------------------------


def test_a_login_sets_a_strict_session_cookie(browser: Browser) -> None:
    done = browser.login("alice")
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    (session_cookie,) = [h for h in browser.set_cookie_headers if h.startswith("ztgate_console=")]
    attributes = {part.strip().split("=")[0].lower(): part for part in session_cookie.split(";")}
    assert {"httponly", "secure", "samesite", "path"} <= set(attributes)
    assert attributes["samesite"].split("=")[1].lower() == "strict"
    assert attributes["path"].split("=")[1] == "/console"
    overview = browser.get("/console/")
    assert overview.status_code == 200 and 'id="nav-approvals"' in overview.text
    assert "script-src 'self'" in overview.headers["content-security-policy"]
    assert overview.headers["x-frame-options"] == "DENY"
    token = browser.cookies["ztgate_console"]
    stored = browser.gateway._query("SELECT token_sha256 FROM console_sessions")
    assert all(token not in row[0] for row in stored)  # only the hash is stored


@pytest.mark.parametrize(
    ("name", "password"),
    [("alice", "not the password at all"), ("nobody", PASSWORD), ("dave", PASSWORD)],
    ids=["bad-password", "unknown-user", "disabled"],
)
def test_failed_logins_all_say_the_same(browser: Browser, name: str, password: str) -> None:
    refused = browser.login(name, password)
    assert refused.status_code == 401
    assert "invalid name or password" in refused.text
    assert "ztgate_console" not in browser.cookies
    assert browser.get("/console/").status_code == 303


def test_a_principal_without_the_approver_role_is_refused(browser: Browser) -> None:
    refused = browser.login("carol")
    assert refused.status_code == 401 and "invalid name or password" in refused.text
    assert "ztgate_console" not in browser.cookies


def test_logout_ends_the_session_on_the_server(alice: Browser) -> None:
    token = alice.cookies["ztgate_console"]
    done = alice.post("/console/logout", {"csrf": alice.csrf()})
    assert done.status_code == 303 and done.headers["location"] == "/console/login"
    assert "ztgate_console" not in alice.cookies
    alice.cookies["ztgate_console"] = token  # a copied cookie is worthless now
    assert alice.get("/console/approvals").status_code == 303


# -- CSRF and decisions -----------------------------------------------------------------


@pytest.mark.parametrize("csrf", [None, "wrong"], ids=["missing", "wrong"])
def test_a_decision_without_the_csrf_token_changes_nothing(
    alice: Browser, agent: Agent, csrf: str | None
) -> None:
    pending = _pending(agent, "pay", {"to": "acme", "amount": 7, "csrf": csrf or "none"})
    approval_id = str(pending.approval_id)
    form = {"decision": "approve", "comment": "", "signature": "x"}
    if csrf is not None:
        form["csrf"] = csrf
    refused = alice.post(f"/console/approvals/{approval_id}/decide", form)
    assert refused.status_code == 403
    assert "CSRF" in refused.text
    assert _state(alice.gateway, approval_id) == "pending"
    other_site = alice.post(
        f"/console/approvals/{approval_id}/decide",
        {**form, "csrf": alice.csrf()},
        origin="https://evil.example",
    )
    assert other_site.status_code == 403
    assert _state(alice.gateway, approval_id) == "pending"


def test_a_signed_console_approval_lets_the_waiting_call_run(alice: Browser, agent: Agent) -> None:
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = agent.call(
                "pay",
                {"to": "acme", "amount": 100},
                justification=JUSTIFICATION,
                approval_timeout=30,
            )
        except Exception as exc:  # handed to the test thread
            outcome["error"] = exc

    waiter = threading.Thread(target=call)
    waiter.start()
    approval_id = _wait_listed(alice, "pay", '"amount":100')
    page = alice.get(f"/console/approvals/{approval_id}")
    assert "pay the acme invoice of 100 euros" in page.text
    assert "named in the intent" in page.text
    done = alice.decide(approval_id, "approve", "invoice checked")
    assert done.status_code == 303, done.text
    waiter.join(30)
    assert "error" not in outcome, outcome
    result = outcome["result"]
    assert result.result is not None
    shown = alice.get(f"/console/approvals/{approval_id}")
    decision = re.search(r'id="decision"[^>]*>([^<]*)', shown.text)
    assert decision is not None and "approved by alice" in decision.group(1)
    records = alice.gateway._query(
        "SELECT body FROM audit_records WHERE kind = 'approval' ORDER BY seq"
    )
    detail = [orjson.loads(body)["detail"] for (body,) in records]
    (mine,) = [d for d in detail if d["approval"] == approval_id]
    assert mine["via"] == "console" and mine["signature"] and mine["session_key_thumbprint"]
    assert orjson.loads(mine["signed_statement"])["decision"] == "approve"
    alice.gateway.verify_audit()


def test_signatures_by_another_key_or_over_another_statement_are_refused(
    alice: Browser, agent: Agent
) -> None:
    pending = _pending(agent, "pay", {"to": "acme", "amount": 11})
    approval_id = str(pending.approval_id)
    stolen = alice.decide(approval_id, "approve", key=ec.generate_private_key(ec.SECP256R1()))
    assert stolen.status_code == 403 and "signature" in stolen.text
    swapped = alice.decide(approval_id, "approve", "ok", signed_comment="another comment")
    assert swapped.status_code == 403
    assert _state(alice.gateway, approval_id) == "pending"
    with pytest.raises(CallDenied):
        agent._call("pay", {"to": "acme", "amount": 11}, JUSTIFICATION, None, approval_id)


def test_a_console_approval_is_bound_to_the_arguments_and_used_once(
    alice: Browser, agent: Agent
) -> None:
    arguments = {"to": "acme", "amount": 50}
    pending = _pending(agent, "pay", arguments)
    approval_id = str(pending.approval_id)
    assert alice.decide(approval_id, "approve").status_code == 303
    with pytest.raises(CallDenied, match="the arguments changed"):
        agent._call("pay", {"to": "acme", "amount": 5000}, JUSTIFICATION, None, approval_id)
    assert agent.wait_for_approval(pending, timeout=5).result is not None
    with pytest.raises(CallDenied, match="used"):
        agent._call("pay", arguments, JUSTIFICATION, None, approval_id)


def test_a_console_approval_after_the_timeout_is_refused(alice: Browser, agent: Agent) -> None:
    pending = _pending(agent, "pay_fast", {"to": "acme", "amount": 1})
    approval_id = str(pending.approval_id)
    page = alice.get(f"/console/approvals/{approval_id}")
    assert pending.expires_at is not None
    time.sleep(max(0.0, pending.expires_at - time.time()) + 0.2)
    signed = statement(
        approval_id=approval_id,
        decision="approve",
        comment="",
        request_sha256=re.findall(r'data-request-sha256="([0-9a-f]{64})"', page.text)[0],
        session_id=alice.session_id(),
    )
    late = alice.post(
        f"/console/approvals/{approval_id}/decide",
        {
            "csrf": alice.csrf(),
            "decision": "approve",
            "comment": "",
            "signature": p1363_signature(alice.key, signed),
        },
    )
    assert late.status_code == 409 and "expired" in late.text
    with pytest.raises(CallDenied, match="expired"):
        agent.wait_for_approval(pending, timeout=5)


def test_the_feed_streams_decisions(alice: Browser, agent: Agent) -> None:
    after = re.search(r"after=(\d+)", alice.get("/console/feed").text)
    assert after is not None
    headers = alice._cookie_header()
    agent.call("lookup", {"q": "feed"})
    url = f"/console/feed/events?after={after.group(1)}&outcome=allow"
    with alice.http.stream("GET", url, headers=headers, timeout=10) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        seen = ""
        for line in events.iter_lines():
            seen += line + "\n"
            if '"tool":"lookup"' in line:
                break
    assert '"outcome":"allow"' in seen


def _wait_listed(browser: Browser, tool: str, marker: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = browser.get("/console/approvals/rows").text
        for approval_id in re.findall(r'data-approval-id="([^"]+)"', rows):
            page = browser.get(f"/console/approvals/{approval_id}").text
            if f"<code>{tool}</code>" in page and marker.replace('"', "&#34;") in page:
                return approval_id
        time.sleep(0.1)
    raise AssertionError(f"no pending approval for {tool}")
