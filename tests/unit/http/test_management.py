"""The management API over the real ASGI app: principals' API keys, roles, tasks, revocations."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ztgate.audit.reader import AuditReader
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.testing import FrozenClock, make_settings

PROBLEM = "application/problem+json"
DOMAIN = "ztgate.local"
AGENT = f"spiffe://{DOMAIN}/agent/mailer"
HELPER = f"spiffe://{DOMAIN}/agent/helper"
SCOPE = {"tools": {"send": {"limits": {"amount": {"maximum": 100}}}, "search": {}}}
JKT = "A" * 43


PRINCIPALS = {"alice": ["tasks"], "bob": ["tasks"], "root": ["admin"], "carol": ["approver"]}


def initialise(directory: Path, toml: str) -> None:
    """A gateway directory with the principals above and their API keys (in keys.json)."""
    settings = make_settings(directory, toml)
    database = settings.open_database()
    try:
        database.migrate()
        principals = PrincipalRegistry(database, SystemClock())
        keys = {}
        for name, roles in PRINCIPALS.items():
            principals.add(name, roles=roles)
            keys[name] = principals.create_key(name)[1]
    finally:
        database.dispose()
    (directory / "keys.json").write_bytes(orjson.dumps(keys))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised gateway directory (authentication required), copied for each test."""
    directory = tmp_path_factory.mktemp("template")
    initialise(directory, '[gateway]\nauthentication = "required"\n')
    return directory


@dataclass
class Api:
    gateway: Gateway
    client: httpx.AsyncClient
    principals: PrincipalRegistry
    clock: FrozenClock
    keys: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    async def post(self, path: str, name: str | None, body: Any = None) -> httpx.Response:
        headers = self.auth(name) if name else {}
        if body is None:
            return await self.client.post(path, headers=headers)
        return await self.client.post(path, headers=headers, json=body)

    async def get(self, path: str, name: str | None, **params: Any) -> httpx.Response:
        headers = self.auth(name) if name else {}
        return await self.client.get(path, headers=headers, params=params)

    async def create_task(self, name: str = "alice", **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"agent": AGENT, "intent": "Email Bob the invoice", "scope": SCOPE}
        body.update(overrides)
        response = await self.post("/v1/tasks", name, body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


async def open_api(directory: Path) -> AsyncIterator[Api]:
    settings = load_settings(directory / "ztgate.toml")
    clock = FrozenClock(time.time())
    gateway = Gateway.from_settings(settings, clock=clock)
    await gateway.start()
    try:
        principals = PrincipalRegistry(gateway.database, clock, audit=gateway.audit)
        keys = orjson.loads((directory / "keys.json").read_bytes())
        transport = httpx.ASGITransport(app=create_asgi(gateway), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Api(gateway, client, principals, clock, keys)
    finally:
        await gateway.stop()


@pytest.fixture
async def api(template: Path, tmp_path: Path) -> AsyncIterator[Api]:
    shutil.copytree(template, tmp_path / "gateway")
    async for opened in open_api(tmp_path / "gateway"):
        yield opened


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:ztgate:problem:{slug}"
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def admin_records(gateway: Gateway, action: str) -> list[dict[str, Any]]:
    bodies = [
        orjson.loads(record.body)
        for record in AuditReader(gateway.database).records(gateway.audit.chain)
    ]
    return [b for b in bodies if b.get("kind") == "admin" and b["detail"].get("action") == action]


# -- authentication ------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/x"),
    ("POST", "/v1/tasks/x/complete"),
    ("POST", "/v1/tasks/x/revoke"),
    ("POST", "/v1/warrants/x/revoke"),
    ("POST", "/v1/revocations"),
    ("GET", "/v1/revocations"),
]


async def test_every_route_needs_an_api_key(api: Api) -> None:
    for method, path in ROUTES:
        response = await api.client.request(method, path, json={})
        body = problem(response, 401, "unauthenticated")
        assert "Authorization: Bearer ztg_" in body["detail"]
        assert response.headers["www-authenticate"] == 'Bearer realm="ztgate-management"'


async def test_a_missing_or_malformed_header(api: Api) -> None:
    for header in ("", "Bearer", "Bearer   ", "Basic YWxpY2U6cHc=", api.keys["alice"]):
        response = await api.client.get("/v1/tasks", headers={"Authorization": header})
        problem(response, 401, "unauthenticated")


async def test_an_unknown_key(api: Api) -> None:
    for key in ("ztg_0123456789abcdef_" + "a" * 43, "not-a-key", "ztg_"):
        response = await api.client.get("/v1/tasks", headers={"Authorization": f"Bearer {key}"})
        body = problem(response, 401, "unauthenticated")
        assert "unknown, revoked or expired" in body["detail"]
        assert response.headers["www-authenticate"] == (
            'Bearer realm="ztgate-management", error="invalid_token"'
        )


async def test_a_wrong_secret_for_a_real_key_id(api: Api) -> None:
    key = api.keys["alice"]
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    response = await api.client.get("/v1/tasks", headers={"Authorization": f"Bearer {forged}"})
    problem(response, 401, "unauthenticated")


async def test_a_revoked_key_and_a_disabled_principal(api: Api) -> None:
    assert (await api.get("/v1/tasks", "alice")).status_code == 200
    [record] = api.principals.keys("alice")
    api.principals.revoke_key(record.id)
    problem(await api.get("/v1/tasks", "alice"), 401, "unauthenticated")
    assert (await api.get("/v1/tasks", "bob")).status_code == 200
    api.principals.set_disabled("bob", True)
    problem(await api.get("/v1/tasks", "bob"), 401, "unauthenticated")


async def test_an_expired_key(api: Api) -> None:
    _, key = api.principals.create_key("alice", ttl=60)
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/v1/tasks", headers=headers)).status_code == 200
    api.clock.advance(60)
    problem(await api.client.get("/v1/tasks", headers=headers), 401, "unauthenticated")


# -- roles ---------------------------------------------------------------------------------------


async def test_tasks_need_the_tasks_role(api: Api) -> None:
    body = {"agent": AGENT, "intent": "x", "scope": SCOPE}
    refused = problem(await api.post("/v1/tasks", "carol", body), 403, "forbidden")
    assert refused["detail"] == "principal 'carol' lacks the 'tasks' role"
    assert refused["title"] == "Forbidden"
    problem(await api.get("/v1/tasks", "carol"), 403, "forbidden")
    created = await api.create_task()
    task_id = created["task"]["id"]
    problem(await api.get(f"/v1/tasks/{task_id}", "carol"), 403, "forbidden")
    problem(await api.post(f"/v1/tasks/{task_id}/complete", "carol"), 403, "forbidden")
    problem(await api.post(f"/v1/tasks/{task_id}/revoke", "carol"), 403, "forbidden")
    problem(
        await api.post(f"/v1/warrants/{created['warrant_id']}/revoke", "carol"), 403, "forbidden"
    )


async def test_revocations_need_the_admin_role(api: Api) -> None:
    body = {"kind": "spiffe_id", "value": AGENT}
    refused = problem(await api.post("/v1/revocations", "alice", body), 403, "forbidden")
    assert refused["detail"] == "principal 'alice' lacks the 'admin' role"
    problem(await api.get("/v1/revocations", "alice"), 403, "forbidden")


async def test_admin_may_do_everything(api: Api) -> None:
    created = await api.create_task("root")
    assert created["task"]["principal"] == "root"
    assert (await api.get("/v1/revocations", "root")).status_code == 200


# -- tasks ---------------------------------------------------------------------------------------


async def test_create_a_task(api: Api) -> None:
    created = await api.create_task(budget={"calls": 5}, expires_in_seconds=600)
    task = created["task"]
    assert task["principal"] == "alice" and task["agent"] == AGENT
    assert task["intent"] == "Email Bob the invoice"
    assert task["state"] == "active"
    assert task["budget"] == {"calls": 5, "spend": None}
    assert task["expires_at"] == pytest.approx(api.clock.now() + 600)
    assert task["scope"] == {
        "tools": {"search": {}, "send": {"limits": {"/amount": {"maximum": 100}}}}
    }
    assert created["warrant_id"] and created["warrant"] is None
    [record] = admin_records(api.gateway, "task.create")
    assert record["detail"]["principal"] == "alice"
    assert record["task_id"] == task["id"]


async def test_create_a_task_with_the_agents_key_returns_a_signed_warrant(api: Api) -> None:
    created = await api.create_task(agent_jkt=JKT)
    assert created["warrant"].count(".") == 2
    assert api.gateway.warrants is not None
    warrant = api.gateway.warrants.registry.warrant(created["warrant_id"])
    assert warrant.jkt == JKT


CREATE_REFUSALS: list[tuple[dict[str, Any], int, str, str]] = [
    ({"agent": "mailer"}, 422, "invalid-task", "SPIFFE ID"),
    ({"scope": {"tools": {}}}, 422, "invalid-task", "a scope names at least one tool"),
    (
        {"scope": {"tools": {"send": {"limits": {"to": {"domains": ["bücher.example"]}}}}}},
        422,
        "invalid-task",
        "is not a host name",
    ),
    ({"intent": "   "}, 422, "invalid-task", "a task needs an intent"),
    ({"expires_in_seconds": 10**9}, 422, "invalid-task", "a task's lifetime"),
    ({"agent_jkt": "short"}, 422, "invalid-task", "key thumbprint"),
    ({"intent": ""}, 422, "invalid-request", "the request does not fit the API"),
    ({"budget": {"calls": 0}}, 422, "invalid-request", ""),
    ({"budget": {"spend": -1}}, 422, "invalid-request", ""),
    ({"budget": {"tokens": 5}}, 422, "invalid-request", ""),
    ({"expires_in_seconds": 0}, 422, "invalid-request", ""),
    ({"principal": "bob"}, 422, "invalid-request", ""),
    ({"scope": "send"}, 422, "invalid-request", ""),
]


async def test_create_refusals(api: Api) -> None:
    for body, status, slug, fragment in CREATE_REFUSALS:
        full = {"agent": AGENT, "intent": "Email Bob", "scope": SCOPE, **body}
        refused = problem(await api.post("/v1/tasks", "alice", full), status, slug)
        assert fragment in refused["detail"], (body, refused)
    assert (await api.get("/v1/tasks", "root")).json() == {"tasks": []}


async def test_create_with_a_body_that_is_not_json(api: Api) -> None:
    response = await api.client.post(
        "/v1/tasks",
        content=b"{not json",
        headers={**api.auth("alice"), "content-type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == PROBLEM


async def test_list_shows_own_tasks_and_admins_see_all(api: Api) -> None:
    first = (await api.create_task("alice"))["task"]["id"]
    api.clock.advance(1)
    second = (await api.create_task("alice", agent=HELPER))["task"]["id"]
    api.clock.advance(1)
    theirs = (await api.create_task("bob"))["task"]["id"]

    async def ids(name: str, **params: Any) -> list[str]:
        response = await api.get("/v1/tasks", name, **params)
        assert response.status_code == 200, response.text
        return [task["id"] for task in response.json()["tasks"]]

    assert await ids("alice") == [second, first]
    assert await ids("bob") == [theirs]
    assert await ids("root") == [theirs, second, first]
    assert await ids("alice", agent=HELPER) == [second]
    assert await ids("root", agent=AGENT) == [theirs, first]
    assert await ids("alice", state="active") == [second, first]
    assert await ids("alice", state="completed") == []
    await api.post(f"/v1/tasks/{first}/complete", "alice")
    assert await ids("alice", state="completed") == [first]
    assert await ids("alice", state="active") == [second]
    problem(await api.get("/v1/tasks", "alice", state="bogus"), 422, "invalid-request")


async def test_expired_tasks_are_listed_as_expired(api: Api) -> None:
    task_id = (await api.create_task(expires_in_seconds=60))["task"]["id"]
    api.clock.advance(60)
    response = await api.get("/v1/tasks", "alice", state="expired")
    assert [t["id"] for t in response.json()["tasks"]] == [task_id]
    assert response.json()["tasks"][0]["state"] == "expired"


async def test_show_a_task_and_its_warrants(api: Api) -> None:
    created = await api.create_task()
    task_id = created["task"]["id"]
    response = await api.get(f"/v1/tasks/{task_id}", "alice")
    assert response.status_code == 200
    shown = response.json()
    assert shown["task"] == created["task"]
    [warrant] = shown["warrants"]
    assert warrant["id"] == created["warrant_id"]
    assert warrant["depth"] == 0 and warrant["parent_id"] is None and warrant["jkt"] is None


async def test_another_principals_task_is_not_found(api: Api) -> None:
    created = await api.create_task("alice")
    task_id = created["task"]["id"]
    for method, path in (
        ("GET", f"/v1/tasks/{task_id}"),
        ("POST", f"/v1/tasks/{task_id}/complete"),
        ("POST", f"/v1/tasks/{task_id}/revoke"),
        ("POST", f"/v1/warrants/{created['warrant_id']}/revoke"),
    ):
        response = await api.client.request(method, path, headers=api.auth("bob"))
        refused = problem(response, 404, "not-found")
        assert refused["detail"] == f"task {task_id!r} not found"
    # Indistinguishable from a task that does not exist.
    missing = problem(await api.get("/v1/tasks/no-such-task", "bob"), 404, "not-found")
    assert missing["detail"] == "task 'no-such-task' not found"
    # Nothing changed; the owner and an admin still see it active.
    assert (await api.get(f"/v1/tasks/{task_id}", "alice")).json()["task"]["state"] == "active"
    assert (await api.get(f"/v1/tasks/{task_id}", "root")).status_code == 200


async def test_complete_a_task(api: Api) -> None:
    task_id = (await api.create_task())["task"]["id"]
    response = await api.post(f"/v1/tasks/{task_id}/complete", "alice")
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    assert task["state"] == "completed" and task["ended_at"] == pytest.approx(api.clock.now())
    again = problem(
        await api.post(f"/v1/tasks/{task_id}/complete", "alice"), 409, "task-not-active"
    )
    assert "is completed, not active" in again["detail"]
    problem(await api.post(f"/v1/tasks/{task_id}/revoke", "alice"), 409, "task-not-active")
    [record] = admin_records(api.gateway, "task.complete")
    assert record["detail"]["principal"] == "alice"


async def test_revoke_a_task_with_and_without_a_reason(api: Api) -> None:
    first = (await api.create_task())["task"]["id"]
    response = await api.post(f"/v1/tasks/{first}/revoke", "alice", {"reason": "leaked"})
    assert response.status_code == 200
    assert response.json()["task"]["state"] == "revoked"
    assert response.json()["task"]["end_reason"] == "leaked"
    second = (await api.create_task())["task"]["id"]
    response = await api.post(f"/v1/tasks/{second}/revoke", "root")
    assert response.status_code == 200
    assert response.json()["task"]["end_reason"] is None
    problem(await api.post(f"/v1/tasks/{first}/revoke", "alice"), 409, "task-not-active")
    problem(
        await api.post(f"/v1/tasks/{second}/revoke", "root", {"reason": "x" * 501}),
        422,
        "invalid-request",
    )
    problem(
        await api.post(f"/v1/tasks/{second}/revoke", "root", {"why": "x"}), 422, "invalid-request"
    )
    problem(await api.post("/v1/tasks/nope/complete", "alice"), 404, "not-found")


async def test_an_expired_task_cannot_be_completed(api: Api) -> None:
    task_id = (await api.create_task(expires_in_seconds=60))["task"]["id"]
    api.clock.advance(61)
    refused = problem(
        await api.post(f"/v1/tasks/{task_id}/complete", "alice"), 409, "task-not-active"
    )
    assert "expired" in refused["detail"]


async def test_revoke_a_warrant_cascades(api: Api) -> None:
    assert api.gateway.warrants is not None
    registry = api.gateway.warrants.registry
    created = await api.create_task(agent_jkt=JKT)
    root = registry.warrant(created["warrant_id"])
    from ztgate.warrants import token as tokens

    parent = tokens.verify(
        created["warrant"],
        {registry.key.kid: registry.key.public_key},
        issuer=registry.issuer,
        audience=registry.audience,
        now=api.clock.now(),
    )
    child, _ = registry.delegate(parent, agent=HELPER)
    response = await api.post(f"/v1/warrants/{root.id}/revoke", "alice", {"reason": "done"})
    assert response.status_code == 200, response.text
    assert set(response.json()["revoked"]) == {root.id, child.id}
    assert registry.warrant(child.id).revoked_at is not None
    problem(await api.post("/v1/warrants/no-such-warrant/revoke", "alice"), 404, "not-found")
    [record] = admin_records(api.gateway, "warrant.revoke")
    assert record["detail"]["principal"] == "alice" and record["detail"]["reason"] == "done"


# -- revocations ---------------------------------------------------------------------------------


async def test_revoke_an_agent_and_list_revocations(api: Api) -> None:
    response = await api.post(
        "/v1/revocations", "root", {"kind": "spiffe_id", "value": AGENT, "reason": "compromised"}
    )
    assert response.status_code == 201, response.text
    [row] = response.json()["revocations"]
    assert (row["kind"], row["value"], row["reason"]) == ("spiffe_id", AGENT, "compromised")
    response = await api.post("/v1/revocations", "root", {"kind": "serial", "value": "0x0abc"})
    assert response.status_code == 201
    listed = (await api.get("/v1/revocations", "root")).json()
    assert {(r["kind"], r["value"]) for r in listed["revocations"]} == {
        ("spiffe_id", AGENT),
        ("serial", "abc"),
    }
    assert set(listed["kinds"]) == {"spiffe_id", "serial", "entry"}
    [record] = [
        r for r in admin_records(api.gateway, "revocation.revoke") if r["detail"]["value"] == AGENT
    ]
    assert record["detail"]["principal"] == "root"


async def test_revoke_an_entry(api: Api) -> None:
    entries = EntryRegistry(api.gateway.database, api.clock, DOMAIN)
    entry = entries.register(AGENT, ["unix:uid:1000"])
    response = await api.post("/v1/revocations", "root", {"kind": "entry", "value": entry.id})
    assert response.status_code == 201, response.text
    kinds = {row["kind"] for row in response.json()["revocations"]}
    assert kinds == {"entry", "spiffe_id"}


REVOCATION_ANSWERS: list[tuple[dict[str, Any], int, str | None]] = [
    ({"kind": "spiffe_id", "value": "not a spiffe id"}, 422, "invalid-revocation"),
    ({"kind": "spiffe_id", "value": "spiffe://other.example/a"}, 201, None),
    ({"kind": "serial", "value": "zz"}, 422, "invalid-revocation"),
    ({"kind": "entry", "value": "0123456789abcdef"}, 404, "not-found"),
    ({"kind": "agent", "value": AGENT}, 422, "invalid-request"),
    ({"kind": "spiffe_id", "value": ""}, 422, "invalid-request"),
    ({"kind": "spiffe_id", "value": AGENT, "reason": "x" * 501}, 422, "invalid-request"),
    ({"kind": "spiffe_id", "value": AGENT, "until": 5}, 422, "invalid-request"),
    ({"value": AGENT}, 422, "invalid-request"),
]


async def test_revocation_refusals(api: Api) -> None:
    for body, status, slug in REVOCATION_ANSWERS:
        response = await api.post("/v1/revocations", "root", body)
        if slug is None:
            assert response.status_code == status, response.text
        else:
            problem(response, status, slug)


# -- without authentication ----------------------------------------------------------------------


async def test_tasks_need_authentication_turned_on(tmp_path: Path) -> None:
    initialise(tmp_path, '[gateway]\nauthentication = "off"\n')
    async for api in open_api(tmp_path):
        refused = problem(
            await api.post("/v1/tasks", "alice", {"agent": AGENT, "intent": "x", "scope": SCOPE}),
            409,
            "tasks-disabled",
        )
        assert 'authentication = "required"' in refused["detail"]
        problem(await api.get("/v1/tasks", "alice"), 409, "tasks-disabled")
        # Revocations are an identity matter and work regardless.
        response = await api.post("/v1/revocations", "root", {"kind": "spiffe_id", "value": AGENT})
        assert response.status_code == 201
        # The key is still checked first.
        problem(await api.get("/v1/tasks", None), 401, "unauthenticated")


async def test_the_routes_are_documented(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    for _, path in ROUTES:
        documented = path.replace("/tasks/x", "/tasks/{task_id}")
        documented = documented.replace("/warrants/x", "/warrants/{warrant_id}")
        assert documented in paths, documented
