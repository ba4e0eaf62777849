"""Console logins and sessions: one message for every failure, throttling, roles, CSRF, logout."""

from __future__ import annotations

from .conftest import Browser, hidden


async def test_bad_logins_say_one_thing_and_are_throttled(browser: Browser) -> None:
    for name, password in (("alice", "wrong password!"), ("nobody", "whatever it is")):
        refused = await browser.login(name, password)
        assert refused.status_code == 401
        assert "invalid name or password" in refused.text
    disabled = await browser.login("dave")
    assert disabled.status_code == 401 and "invalid name or password" in disabled.text
    for _ in range(2):
        await browser.login("alice", "wrong password!")
    throttled = await browser.login("alice")  # even the right password, for now
    assert throttled.status_code == 429 and "too many failed logins" in throttled.text


async def test_the_login_form_needs_its_own_token_and_origin(browser: Browser) -> None:
    page = await browser.client.get("/console/login")
    form = {"login_csrf": "forged", "name": "alice", "password": "correct horse battery"}
    forged = await browser.post("/console/login", form)
    assert forged.status_code == 403
    form["login_csrf"] = hidden(page.text, "login_csrf")
    other = await browser.post("/console/login", form, origin="https://evil.example")
    assert other.status_code == 403


async def test_a_login_without_a_session_key_is_refused(browser: Browser) -> None:
    refused = await browser.login("alice", public_jwk='{"kty": "RSA"}')
    assert refused.status_code == 400 and "session key" in refused.text


async def test_roles_are_checked_at_login_and_on_every_request(browser: Browser) -> None:
    refused = await browser.login("carol")
    assert refused.status_code == 401 and "invalid name or password" in refused.text
    done = await browser.login("alice")
    assert done.status_code == 303
    from ztgate.principals.registry import PrincipalRegistry

    # Disabled while logged in: the next request finds out.
    registry = PrincipalRegistry(browser.gateway.database, browser.gateway.clock)
    registry.set_disabled("alice", True)
    gone = await browser.client.get("/console/approvals")
    assert gone.status_code == 303 and gone.headers["location"] == "/console/login"


async def test_not_logged_in_goes_to_the_login_page(browser: Browser) -> None:
    for path in ("/console/", "/console/approvals", "/console/feed", "/console/audit"):
        page = await browser.client.get(path)
        assert page.status_code == 303 and page.headers["location"] == "/console/login"
    rows = await browser.client.get("/console/approvals/rows")
    assert rows.status_code == 401


async def test_logout_needs_the_csrf_token_and_ends_the_session(alice: Browser) -> None:
    csrf = await alice.csrf()
    refused = await alice.post("/console/logout", {"csrf": "wrong"})
    assert refused.status_code == 403
    assert (await alice.client.get("/console/")).status_code == 200
    done = await alice.post("/console/logout", {"csrf": csrf})
    assert done.status_code == 303
    assert (await alice.client.get("/console/")).status_code == 303


async def test_a_viewer_carries_the_session_and_its_csrf_token(alice: Browser) -> None:
    page = await alice.client.get("/console/approvals")
    assert 'name="csrf"' in page.text
    assert "alice (approver)" in page.text
    login_again = await alice.client.get("/console/login")
    assert login_again.status_code == 303  # logged in already


async def test_guesses_sent_in_parallel_are_throttled_too(browser: Browser) -> None:
    """Each guess counts before its password is checked: a burst cannot slip past the limit."""
    import asyncio

    answers = await asyncio.gather(
        *(browser.login("alice", f"wrong guess {n:04d}") for n in range(12))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(401) <= 3 and statuses.count(429) >= 9, statuses
