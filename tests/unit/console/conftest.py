"""A started gateway with the console, principals with passwords, and a browser-like client.

The client speaks to the ASGI app as `https://gateway` (so that the cookie
jar sends the Secure session cookie), and signs decisions as the console's
script does, with its own ECDSA P-256 key.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.approvals.registry import Approval
from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.console.signatures import p1363_signature, statement
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.models import ToolCall
from ztgate.principals.registry import PrincipalRegistry
from ztgate.testing import make_settings
from ztgate.warrants.jwk import public_jwk

AGENT = "spiffe://ztgate.local/agent/payer"
PASSWORD = "correct horse battery"
PRINCIPALS = {"root": ["admin"], "alice": ["approver"], "carol": ["tasks"], "dave": ["approver"]}
ORIGIN = "https://gateway"
_HIDDEN = r'name="{name}" value="([^"]*)"'


def hidden(html: str, name: str) -> str:
    """The value of the hidden input `name` in a page."""
    found = re.search(_HIDDEN.format(name=name), html)
    assert found is not None, f"no {name} in the page"
    return found.group(1)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("console")
    settings = make_settings(
        directory,
        '[gateway]\nauthentication = "required"\n'
        "[console]\nlogin_attempts_per_name = 3\nlogin_attempts_per_address = 50\n",
    )
    database = settings.open_database()
    try:
        database.migrate()
        principals = PrincipalRegistry(database, SystemClock())
        for name, roles in PRINCIPALS.items():
            principals.add(name, roles=roles)
            principals.set_password(name, PASSWORD)
        principals.set_disabled("dave", True)
    finally:
        database.dispose()
    return directory


@dataclass
class Browser:
    """A logged-in (or not) browser: its cookies, its session key."""

    gateway: Gateway
    client: httpx.AsyncClient
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    async def login(self, name: str, password: str = PASSWORD, **extra: str) -> httpx.Response:
        page = await self.client.get("/console/login")
        form = {
            "login_csrf": hidden(page.text, "login_csrf"),
            "name": name,
            "password": password,
            "public_jwk": orjson.dumps(public_jwk(self.key)).decode(),
            **extra,
        }
        return await self.client.post("/console/login", data=form, headers={"origin": ORIGIN})

    async def csrf(self, path: str = "/console/") -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        return hidden(page.text, "csrf")

    async def post(self, path: str, form: dict[str, str], **headers: str) -> httpx.Response:
        return await self.client.post(path, data=form, headers={"origin": ORIGIN, **headers})

    async def decide(
        self, approval: Approval, decision: str, comment: str = "", /, **override: Any
    ) -> httpx.Response:
        page = await self.client.get(f"/console/approvals/{approval.id}")
        if 'name="csrf"' in page.text and "decide-form" not in page.text:
            page = await self.client.get("/console/")  # no form here: any page's token
        session = hidden_attr(page.text, 'name="ztgate-session" content')
        signed = statement(
            approval_id=approval.id,
            decision=decision,
            comment=comment,
            request_sha256=override.pop("request_sha256", approval.request_sha256),
            session_id=override.pop("session_id", session),
        )
        key = override.pop("key", self.key)
        form = {
            "csrf": hidden(page.text, "csrf"),
            "decision": decision,
            "comment": comment,
            "signature": p1363_signature(key, signed),
            **override,
        }
        return await self.post(f"/console/approvals/{approval.id}/decide", form)


def hidden_attr(html: str, name: str) -> str:
    """The value of the attribute `name` in a page."""
    found = re.search(name + r'="([^"]*)"', html)
    assert found is not None, f"no {name} in the page"
    return found.group(1)


def ask(
    gateway: Gateway,
    principal: str = "root",
    amount: int = 100,
    ttl: float = 600,
    second_person: bool = False,
) -> Approval:
    """A pending approval request for a `pay` call."""
    arguments = {"to": "acme", "amount": amount}
    call = ToolCall("c1", "pay", arguments, canonical_json(arguments), agent=AGENT, task_id="t1")
    return gateway.approvals.create(
        call,
        risk="critical",
        principal=principal,
        intent="pay the acme invoice of 100 euros",
        reasons=[{"check": "policy", "outcome": "ask", "reason": "critical-asks"}],
        ttl=ttl,
        second_person=second_person,
    )


@pytest.fixture
async def gateway(template: Path, tmp_path: Path) -> AsyncIterator[Gateway]:
    directory = tmp_path / "gateway"
    shutil.copytree(template, directory)
    gateway = Gateway.from_settings(load_settings(directory / "ztgate.toml"))
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def browser(gateway: Gateway) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=create_asgi(gateway), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield Browser(gateway, client)


@pytest.fixture
async def alice(browser: Browser) -> Browser:
    done = await browser.login("alice")
    assert done.status_code == 303, done.text
    return browser
