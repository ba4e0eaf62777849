"""Approvals over HTTP: approvers list, show and decide (audited with the key id); agents wait."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ztgate.approvals.registry import Approval
from ztgate.canonical import canonical_json
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.http.approvals import key_id
from ztgate.models import ToolCall
from ztgate.principals.registry import PrincipalRegistry
from ztgate.testing import make_settings

AGENT = "spiffe://ztgate.local/agent/payer"
PRINCIPALS = {"root": ["admin"], "alice": ["approver"], "carol": ["tasks"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("template")
    settings = make_settings(
        directory,
        '[gateway]\nauthentication = "off"\n[approvals]\nrequire_second_person = true\n',
    )
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
    return directory


@dataclass
class Api:
    gateway: Gateway
    client: httpx.AsyncClient
    keys: dict[str, str]

    async def post(self, path: str, name: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[name]}"}
        return await self.client.post(path, headers=headers, json=body)

    async def get(self, path: str, name: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[name]}"} if name else {}
        return await self.client.get(path, headers=headers)

    def request(self, principal: str = "alice", risk: str = "critical") -> Approval:
        arguments = {"amount": 100}
        call = ToolCall(
            "c1", "pay", arguments, canonical_json(arguments), agent=AGENT, task_id="t1"
        )
        settings = self.gateway.settings.approvals
        return self.gateway.approvals.create(
            call,
            risk=risk,
            principal=principal,
            intent="pay",
            reasons=[],
            ttl=600,
            second_person=settings.require_second_person,
        )


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


async def test_approvers_list_show_and_approve_with_the_key_id_audited(api: Api) -> None:
    made = api.request(principal="carol")
    listed = await api.get("/v1/approvals", "alice")
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["approvals"]] == [made.id]
    shown = await api.get(f"/v1/approvals/{made.id}", "alice")
    assert shown.json()["approval"]["request"]["tool"] == "pay"
    approved = await api.post(f"/v1/approvals/{made.id}/approve", "alice", {"comment": "fine"})
    assert approved.status_code == 200, approved.text
    decided = approved.json()["approval"]
    assert (decided["state"], decided["decided_by"], decided["comment"]) == (
        "approved",
        "alice",
        "fine",
    )
    assert decided["decided_key"] == api.keys["alice"].split("_")[1]
    again = await api.post(f"/v1/approvals/{made.id}/reject", "alice")
    assert again.status_code == 409
    assert (await api.get("/v1/approvals?state=approved", "alice")).json()["approvals"]


async def test_roles_four_eyes_and_unknown_requests(api: Api) -> None:
    made = api.request(principal="alice")
    assert (await api.get("/v1/approvals", "carol")).status_code == 403
    assert (await api.post(f"/v1/approvals/{made.id}/approve", "carol")).status_code == 403
    assert (await api.get("/v1/approvals")).status_code == 401
    own = await api.post(f"/v1/approvals/{made.id}/approve", "alice")
    assert own.status_code == 403 and "second person" in own.json()["detail"]
    rejected = await api.post(f"/v1/approvals/{made.id}/reject", "root", {"comment": "no"})
    assert rejected.json()["approval"]["state"] == "rejected"
    assert (await api.get("/v1/approvals/nope", "root")).status_code == 404
    assert (await api.post("/v1/approvals/nope/approve", "root")).status_code == 404


async def test_waiting_tells_only_the_state_and_why(api: Api) -> None:
    made = api.request(principal="carol")
    pending = await api.get(f"/v1/approvals/{made.id}/wait?timeout=0")
    assert pending.json()["approval"] == {
        "id": made.id,
        "state": "pending",
        "expires_at": made.expires_at,
    }
    waiter = asyncio.create_task(api.get(f"/v1/approvals/{made.id}/wait?timeout=5"))
    await asyncio.sleep(0.05)
    await api.post(f"/v1/approvals/{made.id}/reject", "alice", {"comment": "wrong vendor"})
    answer = (await asyncio.wait_for(waiter, 5)).json()["approval"]
    assert answer["state"] == "rejected" and "wrong vendor" in answer["reason"]
    assert "request" not in answer
    assert (await api.get("/v1/approvals/nope/wait?timeout=0")).status_code == 404
    assert (await api.get(f"/v1/approvals/{made.id}/wait?timeout=61")).status_code == 422


def test_the_key_id_is_read_from_the_header_never_the_secret() -> None:
    class Fake:
        headers = {"authorization": "Bearer ztg_0123456789abcdef_secret"}

    assert key_id(Fake()) == "0123456789abcdef"  # type: ignore[arg-type]


async def test_a_scoped_approver_is_refused_outside_its_scope(api: Api) -> None:
    from ztgate.principals.registry import parse_scope

    principals = PrincipalRegistry(api.gateway.database, api.gateway.clock)
    principals.add(
        "erin", roles=["approver"], scope=parse_scope(["spiffe://ztgate.local/agent/mail*"])
    )
    api.keys["erin"] = principals.create_key("erin")[1]
    made = api.request(principal="carol")
    refused = await api.post(f"/v1/approvals/{made.id}/approve", "erin")
    assert refused.status_code == 403 and "approver scope" in refused.json()["detail"]
    principals.set_scope("erin", parse_scope(["spiffe://ztgate.local/agent/pay*"]))
    approved = await api.post(f"/v1/approvals/{made.id}/approve", "erin")
    assert approved.status_code == 200, approved.text
