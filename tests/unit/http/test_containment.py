"""The kill switch over HTTP: admin principals kill, resume and list; calls stop at once."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.principals.registry import PrincipalRegistry
from ztgate.testing import make_settings

AGENT = "spiffe://ztgate.local/agent/mailer"
PRINCIPALS = {"root": ["admin"], "alice": ["tasks"]}


def initialise(directory: Path, toml: str) -> None:
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
    """Authentication off (no agents needed): `kill all` still stops every call."""
    directory = tmp_path_factory.mktemp("template")
    initialise(directory, '[gateway]\nauthentication = "off"\n')
    return directory


@dataclass
class Api:
    gateway: Gateway
    client: httpx.AsyncClient
    keys: dict[str, str]

    async def post(self, path: str, name: str | None, body: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[name]}"} if name else {}
        return await self.client.post(path, headers=headers, json=body)

    async def get(self, path: str, name: str) -> httpx.Response:
        return await self.client.get(path, headers={"Authorization": f"Bearer {self.keys[name]}"})

    async def call(self) -> httpx.Response:
        return await self.client.post("/v1/calls", json={"tool": "nothing", "arguments": {}})


@pytest.fixture
async def api(template: Path, tmp_path: Path) -> AsyncIterator[Api]:
    directory = tmp_path / "gateway"
    shutil.copytree(template, directory)
    gateway = Gateway.from_settings(load_settings(directory / "ztgate.toml"))
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=create_asgi(gateway), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Api(gateway, client, orjson.loads((directory / "keys.json").read_bytes()))
    finally:
        await gateway.stop()


async def test_kill_all_stops_the_next_call_and_resume_lifts_it(api: Api) -> None:
    before = await api.call()
    assert before.json()["reasons"][-1]["check"] == "schema"  # unknown tool: denied later
    killed = await api.post(
        "/v1/containment/kill", "root", {"scope": "all", "reason": "incident 12"}
    )
    assert killed.status_code == 201, killed.text
    hold = killed.json()["hold"]
    assert (hold["scope"], hold["target"], hold["actor"]) == ("all", "*", "root")
    stopped = await api.call()
    assert stopped.status_code == 403
    assert stopped.json()["reasons"] == [
        {
            "check": "halt",
            "outcome": "deny",
            "reason": "the kill switch is on: every call is stopped",
        }
    ]
    listed = await api.get("/v1/containment/suspensions", "root")
    assert [h["id"] for h in listed.json()["suspensions"]] == [hold["id"]]
    resumed = await api.post("/v1/containment/resume", "root", {"scope": "all"})
    assert resumed.status_code == 200
    assert [h["id"] for h in resumed.json()["lifted"]] == [hold["id"]]
    assert (await api.call()).json()["reasons"][-1]["check"] == "schema"


async def test_kill_and_resume_an_agent(api: Api) -> None:
    killed = await api.post("/v1/containment/kill", "root", {"scope": "agent", "target": AGENT})
    assert killed.status_code == 201
    api.gateway.refresh()
    assert api.gateway.containment is not None
    assert AGENT in api.gateway.containment.holds.agents
    resumed = await api.post("/v1/containment/resume", "root", {"scope": "agent", "target": AGENT})
    assert resumed.status_code == 200
    api.gateway.refresh()
    assert not api.gateway.containment.holds


@pytest.mark.parametrize(
    ("path", "name", "body", "status", "slug"),
    [
        ("/v1/containment/kill", None, {"scope": "all"}, 401, "unauthenticated"),
        ("/v1/containment/kill", "alice", {"scope": "all"}, 403, "forbidden"),
        ("/v1/containment/kill", "root", {"scope": "agent", "target": "x"}, 422, "invalid-hold"),
        ("/v1/containment/kill", "root", {"scope": "task", "target": "t9"}, 404, "not-found"),
        ("/v1/containment/kill", "root", {"scope": "everyone"}, 422, "invalid-request"),
        ("/v1/containment/resume", "root", {"scope": "all"}, 404, "not-held"),
        ("/v1/containment/resume", "alice", {"scope": "all"}, 403, "forbidden"),
    ],
)
async def test_refusals_are_problems(
    api: Api, path: str, name: str | None, body: Any, status: int, slug: str
) -> None:
    response = await api.post(path, name, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:ztgate:problem:{slug}"


async def test_only_admins_list(api: Api) -> None:
    assert (await api.get("/v1/containment/suspensions", "alice")).status_code == 403
    assert (await api.get("/v1/containment/suspensions", "root")).json() == {"suspensions": []}


async def test_the_routes_are_in_the_openapi_description(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert {"/v1/containment/kill", "/v1/containment/resume", "/v1/containment/suspensions"} <= set(
        paths
    )
