"""Agents' warrant routes over the real ASGI app: bind, delegate, and calls that carry them.

A real gateway (authentication required), a real CA, a real upstream on
loopback: an agent binds its task's warrant with its X.509-SVID, then calls a
tool with a JWT-SVID, the warrant and a proof; every way of misusing them is
refused with the reason.
"""

from __future__ import annotations

import base64
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.types import ASGIApp, Receive, Scope, Send

from ztgate.audit.reader import AuditReader
from ztgate.canonical import canonical_json
from ztgate.cli.toml import array_of_tables
from ztgate.clock import SystemClock
from ztgate.config import load_settings
from ztgate.gateway import Gateway
from ztgate.http.app import create_asgi
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority, X509Svid
from ztgate.identity.entries import EntryRegistry
from ztgate.principals.registry import PrincipalRegistry
from ztgate.testing import FrozenClock, make_settings
from ztgate.tools.registry import ToolRegistry
from ztgate.warrants import proof as proofs
from ztgate.warrants.jwk import key_thumbprint

PROBLEM = "application/problem+json"
DOMAIN = "ztgate.local"
AGENT = f"spiffe://{DOMAIN}/agent/mailer"
HELPER = f"spiffe://{DOMAIN}/agent/helper"
OTHER = f"spiffe://{DOMAIN}/agent/other"
AUDIENCE = "ztgate"
SCOPE = {
    "tools": {
        "send": {"limits": {"to": {"domains": ["acme.example"]}, "amount": {"maximum": 100}}},
        "search": {},
    }
}
SEND_SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "amount": {"type": "number"}},
    "additionalProperties": False,
}
ARGS = {"to": "bob@acme.example", "amount": 5}


# -- fixtures ------------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = orjson.dumps({"echo": orjson.loads(body)})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """An echo tool on loopback, in a thread, for the whole module."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def config(base: str, authentication: str = "required") -> str:
    tools = [
        {"name": "send", "url": f"{base}/echo", "risk": "write", "input_schema": SEND_SCHEMA},
        {
            "name": "search",
            "url": f"{base}/echo",
            "risk": "read",
            "input_schema": {"type": "object"},
        },
        {
            "name": "delete",
            "url": f"{base}/echo",
            "risk": "write",
            "input_schema": {"type": "object"},
        },
    ]
    return (
        f'[gateway]\nauthentication = "{authentication}"\n'
        "[warrants]\nmax_delegation_depth = 1\n\n" + array_of_tables("tools", tools)
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, upstream: str) -> Path:
    """An initialised gateway directory: tools, agents registered, a principal with an API key."""
    directory = tmp_path_factory.mktemp("template")
    settings = make_settings(directory, config(upstream))
    database = settings.open_database()
    try:
        database.migrate()
        ToolRegistry(database, SystemClock()).sync(settings.declared_tools())
        entries = EntryRegistry(database, SystemClock(), DOMAIN)
        for number, agent in enumerate((AGENT, HELPER, OTHER)):
            entries.register(agent, [f"unix:uid:{1000 + number}"])
        principals = PrincipalRegistry(database, SystemClock())
        principals.add("alice", roles=["tasks"])
        principals.add("root", roles=["admin"])
        keys = {name: principals.create_key(name)[1] for name in ("alice", "root")}
    finally:
        database.dispose()
    (directory / "keys.json").write_bytes(orjson.dumps(keys))
    return directory


class WithClientCertificate:
    """ASGI: adds the TLS extension a front door with mTLS adds, when a chain is set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.chain: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.chain:
            scope = {**scope, "extensions": {"tls": {"client_cert_chain": list(self.chain)}}}
        await self.app(scope, receive, send)


@dataclass
class World:
    gateway: Gateway
    client: httpx.AsyncClient
    ca: CertificateAuthority
    clock: FrozenClock
    keys: dict[str, str]
    mtls: WithClientCertificate

    # -- the principal's side ----------------------------------------------------------------

    async def create_task(self, agent: str = AGENT, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"agent": agent, "intent": "Email Bob the invoice", "scope": SCOPE}
        body.update(overrides)
        response = await self.client.post(
            "/v1/tasks", json=body, headers={"Authorization": f"Bearer {self.keys['alice']}"}
        )
        assert response.status_code == 201, response.text
        task: dict[str, Any] = response.json()["task"]
        return task

    async def manage(self, path: str, body: Any = None, who: str = "alice") -> httpx.Response:
        return await self.client.post(
            path, json=body, headers={"Authorization": f"Bearer {self.keys[who]}"}
        )

    # -- the agent's side ----------------------------------------------------------------------

    async def bind(
        self,
        svid: X509Svid,
        task_id: str,
        *,
        warrant_id: str | None = None,
        signer: Any = None,
        proof: str | None = None,
        x5c: bool = True,
    ) -> httpx.Response:
        body: dict[str, Any] = {"task_id": task_id}
        if warrant_id is not None:
            body["warrant_id"] = warrant_id
        if x5c:
            body["x5c"] = [base64.b64encode(der).decode() for der in chain_der(svid)]
        if proof is None:
            proof = proofs.sign(
                signer or svid.private_key,
                audience=AUDIENCE,
                task_id=task_id,
                warrant="",
                canonical=canonical_json(body),
                op="bind",
                issued_at=self.clock.now(),
            )
        return await self.client.post(
            "/v1/warrants/bind", json=body, headers={"Ztgate-Proof": proof}
        )

    async def bound(self, svid: X509Svid, task_id: str, **kwargs: Any) -> str:
        response = await self.bind(svid, task_id, **kwargs)
        assert response.status_code == 200, response.text
        token: str = response.json()["warrant"]
        return token

    def proof(
        self,
        svid: X509Svid,
        warrant: str,
        task_id: str,
        tool: str,
        arguments: dict[str, Any],
        **extra: Any,
    ) -> str:
        fields: dict[str, Any] = {
            "audience": AUDIENCE,
            "task_id": task_id,
            "warrant": warrant,
            "canonical": canonical_json(arguments),
            "tool": tool,
            "issued_at": self.clock.now(),
        }
        fields.update(extra)
        return proofs.sign(svid.private_key, **fields)

    async def call(
        self,
        svid: X509Svid,
        warrant: str | None,
        proof: str | None,
        tool: str = "send",
        arguments: dict[str, Any] | None = None,
        justification: str = "the user asked",
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.ca.issue_jwt_svid(svid.spiffe_id, [AUDIENCE])}",
            "Content-Type": "application/json",
        }
        if warrant is not None:
            headers["Ztgate-Warrant"] = warrant
        if proof is not None:
            headers["Ztgate-Proof"] = proof
        body = {
            "tool": tool,
            "arguments": ARGS if arguments is None else arguments,
            "justification": justification,
        }
        return await self.client.post("/v1/calls", content=orjson.dumps(body), headers=headers)

    async def proven_call(
        self,
        svid: X509Svid,
        warrant: str,
        task_id: str,
        tool: str = "send",
        arguments: dict[str, Any] | None = None,
    ) -> httpx.Response:
        arguments = ARGS if arguments is None else arguments
        proof = self.proof(svid, warrant, task_id, tool, arguments)
        return await self.call(svid, warrant, proof, tool, arguments)

    async def delegate(
        self, svid: X509Svid, warrant: str, task_id: str, body: dict[str, Any]
    ) -> httpx.Response:
        proof = proofs.sign(
            svid.private_key,
            audience=AUDIENCE,
            task_id=task_id,
            warrant=warrant,
            canonical=canonical_json(body),
            op="delegate",
            issued_at=self.clock.now(),
        )
        headers = {
            "Authorization": f"Bearer {self.ca.issue_jwt_svid(svid.spiffe_id, [AUDIENCE])}",
            "Ztgate-Warrant": warrant,
            "Ztgate-Proof": proof,
        }
        return await self.client.post("/v1/warrants/delegate", json=body, headers=headers)


def chain_der(svid: X509Svid) -> list[bytes]:
    return [_hazmat.certificate_der(c) for c in svid.chain]


async def open_world(directory: Path) -> AsyncIterator[World]:
    settings = load_settings(directory / "ztgate.toml")
    clock = FrozenClock(time.time())
    gateway = Gateway.from_settings(settings, clock=clock)
    await gateway.start()
    try:
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
        keys = orjson.loads((directory / "keys.json").read_bytes())
        mtls = WithClientCertificate(create_asgi(gateway))
        transport = httpx.ASGITransport(app=mtls, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield World(gateway, client, ca, clock, keys, mtls)
    finally:
        await gateway.stop()


@pytest.fixture
async def world(template: Path, tmp_path: Path) -> AsyncIterator[World]:
    directory = tmp_path / "gateway"
    shutil.copytree(template, directory)
    async for opened in open_world(directory):
        yield opened


@pytest.fixture
def agent(world: World) -> X509Svid:
    return world.ca.issue_x509_svid(AGENT)


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:ztgate:problem:{slug}"
    assert "Traceback" not in response.text
    return body


def denied_by(response: httpx.Response, check: str, *fragments: str) -> str:
    body = problem(response, 403, "call-denied")
    reasons = {r["check"]: r["reason"] for r in body["reasons"]}
    assert check in reasons, body["reasons"]
    for fragment in fragments:
        assert fragment in reasons[check], reasons[check]
    return reasons[check]


def audit_bodies(gateway: Gateway) -> list[dict[str, Any]]:
    return [
        orjson.loads(record.body)
        for record in AuditReader(gateway.database).records(gateway.audit.chain)
    ]


# -- bind, then call -----------------------------------------------------------------------------


async def test_bind_with_x5c_then_an_allowed_call(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    response = await world.bind(agent, task["id"])
    assert response.status_code == 200, response.text
    bound = response.json()
    assert bound["agent"] == AGENT and bound["task_id"] == task["id"]
    assert bound["expires_at"] == task["expires_at"]
    assert bound["warrant_id"]
    warrant = bound["warrant"]
    response = await world.proven_call(agent, warrant, task["id"])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["outcome"] == "allow"
    assert answer["result"] == {"echo": ARGS}
    checks = [v["check"] for v in answer["verdicts"]]
    assert checks[:6] == ["authenticate", "warrant", "halt", "proof", "limits", "scope"]
    assert all(v["outcome"] == "allow" for v in answer["verdicts"])
    # The record names the agent the SVID proved and the task the warrant did.
    # A write: one record before the tool runs, one after. Each names the agent the SVID
    # proved and the task the warrant did.
    records = [b for b in audit_bodies(world.gateway) if b.get("call_id") == answer["call_id"]]
    assert len(records) == 2
    for record in records:
        assert record["agent"] == AGENT and record["task_id"] == task["id"]
        assert record["outcome"] == "allow"


async def test_bind_over_mtls_without_x5c(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    world.mtls.chain = [c.public_bytes(serialization.Encoding.PEM).decode() for c in agent.chain]
    response = await world.bind(agent, task["id"], x5c=False)
    assert response.status_code == 200, response.text
    warrant = response.json()["warrant"]
    world.mtls.chain = []
    assert (await world.proven_call(agent, warrant, task["id"])).status_code == 200


async def test_every_call_needs_its_own_proof(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    for amount in (1, 2, 3):
        response = await world.proven_call(agent, warrant, task["id"], arguments={"amount": amount})
        assert response.status_code == 200, response.text


async def test_a_rebound_warrant_after_svid_rotation(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    old = await world.bound(agent, task["id"])
    rotated = world.ca.issue_x509_svid(AGENT)
    new = await world.bound(rotated, task["id"])
    assert (await world.proven_call(rotated, new, task["id"])).status_code == 200
    # The old warrant still names the old key: a proof by the new key does not fit it.
    proof = world.proof(rotated, old, task["id"], "send", ARGS)
    denied_by(await world.call(rotated, old, proof), "proof", "not bound")


# -- refused calls -------------------------------------------------------------------------------


async def test_a_replayed_proof(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    proof = world.proof(agent, warrant, task["id"], "send", ARGS)
    assert (await world.call(agent, warrant, proof)).status_code == 200
    denied_by(await world.call(agent, warrant, proof), "proof", "proof: already used (replay)")


async def test_a_proof_for_other_arguments(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    proof = world.proof(agent, warrant, task["id"], "send", {"to": "bob@acme.example", "amount": 1})
    response = await world.call(
        agent, warrant, proof, arguments={"to": "bob@acme.example", "amount": 99}
    )
    denied_by(response, "proof", "made for other arguments")


async def test_a_proof_for_another_tool(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    proof = world.proof(agent, warrant, task["id"], "search", ARGS)
    denied_by(await world.call(agent, warrant, proof), "proof", "made for another tool")


async def test_arguments_in_another_spelling_are_the_same_call(
    world: World, agent: X509Svid
) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    proof = world.proof(
        agent, warrant, task["id"], "send", {"amount": 5.0, "to": "bob@acme.example"}
    )
    response = await world.call(
        agent, warrant, proof, arguments={"to": "bob@acme.example", "amount": 5}
    )
    assert response.status_code == 200, response.text


async def test_a_cross_task_warrant(world: World, agent: X509Svid) -> None:
    first = await world.create_task()
    second = await world.create_task(scope={"tools": {"search": {}}})
    first_warrant = await world.bound(agent, first["id"])
    second_warrant = await world.bound(agent, second["id"])
    # A proof claiming the second task, with the first task's warrant.
    proof = world.proof(agent, first_warrant, second["id"], "send", ARGS)
    denied_by(await world.call(agent, first_warrant, proof), "proof", "made for another task")
    # A proof made for the second warrant, sent with the first.
    proof = world.proof(agent, second_warrant, first["id"], "send", ARGS)
    denied_by(await world.call(agent, first_warrant, proof), "proof", "another warrant (ath)")
    # The second task does not allow "send", whatever the proof says.
    denied_by(
        await world.proven_call(agent, second_warrant, second["id"]),
        "scope",
        "tool 'send' is not in the task's scope",
    )


async def test_another_agents_warrant(world: World, agent: X509Svid) -> None:
    other = world.ca.issue_x509_svid(OTHER)
    task = await world.create_task(agent=OTHER)
    warrant = await world.bound(other, task["id"])
    # The agent got hold of the token; its own SVID authenticates it, not as the warrant's agent.
    proof = world.proof(agent, warrant, task["id"], "send", ARGS)
    denied_by(
        await world.call(agent, warrant, proof), "warrant", f"is for {OTHER}, not for {AGENT}"
    )
    # Nor can it bind the other agent's task to itself.
    problem(await world.bind(agent, task["id"]), 403, "forbidden")


async def test_a_call_after_the_task_is_completed(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    assert (await world.proven_call(agent, warrant, task["id"])).status_code == 200
    response = await world.manage(f"/v1/tasks/{task['id']}/complete")
    assert response.status_code == 200, response.text
    denied_by(
        await world.proven_call(agent, warrant, task["id"]),
        "warrant",
        f"task {task['id']} is completed",
    )


async def test_a_call_after_the_task_is_revoked_or_expired(world: World, agent: X509Svid) -> None:
    revoked = await world.create_task()
    warrant = await world.bound(agent, revoked["id"])
    await world.manage(f"/v1/tasks/{revoked['id']}/revoke", {"reason": "stop"})
    denied_by(await world.proven_call(agent, warrant, revoked["id"]), "warrant", "is revoked")
    expiring = await world.create_task(expires_in_seconds=60)
    warrant = await world.bound(agent, expiring["id"])
    world.clock.advance(60)
    denied_by(await world.proven_call(agent, warrant, expiring["id"]), "warrant", "expired")


async def test_a_call_with_a_revoked_warrant(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    response = await world.bind(agent, task["id"])
    warrant, warrant_id = response.json()["warrant"], response.json()["warrant_id"]
    assert (await world.manage(f"/v1/warrants/{warrant_id}/revoke")).status_code == 200
    denied_by(await world.proven_call(agent, warrant, task["id"]), "warrant", "is revoked")


async def test_an_out_of_scope_tool_and_arguments(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    denied_by(
        await world.proven_call(agent, warrant, task["id"], tool="delete", arguments={}),
        "scope",
        "tool 'delete' is not in the task's scope",
    )
    denied_by(
        await world.proven_call(
            agent, warrant, task["id"], arguments={"to": "eve@evil.example", "amount": 5}
        ),
        "scope",
        "argument /to names a host outside the scope's domains",
    )
    denied_by(
        await world.proven_call(
            agent, warrant, task["id"], arguments={"to": "bob@acme.example", "amount": 500}
        ),
        "scope",
        "argument /amount is above the scope's maximum 100",
    )
    response = await world.proven_call(agent, warrant, task["id"], tool="search", arguments={})
    assert response.status_code == 200


async def test_a_call_without_warrant_or_proof(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    denied_by(await world.call(agent, None, None), "warrant", "no warrant")
    denied_by(await world.call(agent, warrant, None), "proof", "no proof")
    denied_by(await world.call(agent, "garbage", "x.y.z"), "warrant", "warrant: not a JWT")


async def test_a_call_without_credentials_is_unauthenticated(world: World) -> None:
    response = await world.client.post(
        "/v1/calls",
        content=orjson.dumps({"tool": "send", "arguments": ARGS}),
        headers={"Content-Type": "application/json"},
    )
    problem(response, 401, "unauthenticated")


# -- bind refusals -------------------------------------------------------------------------------


async def test_bind_proof_by_another_key(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    thief = ec.generate_private_key(ec.SECP256R1())
    refused = problem(await world.bind(agent, task["id"], signer=thief), 403, "forbidden")
    assert "not bound" in refused["detail"]
    assert refused["call_id"]
    [record] = [b for b in audit_bodies(world.gateway) if b.get("call_id") == refused["call_id"]]
    assert record["kind"] == "rejected" and record["status"] == 403


async def test_bind_proof_replayed(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    body = {
        "task_id": task["id"],
        "x5c": [base64.b64encode(der).decode() for der in chain_der(agent)],
    }
    proof = proofs.sign(
        agent.private_key,
        audience=AUDIENCE,
        task_id=task["id"],
        warrant="",
        canonical=canonical_json(body),
        op="bind",
        issued_at=world.clock.now(),
    )
    assert (await world.bind(agent, task["id"], proof=proof)).status_code == 200
    refused = problem(await world.bind(agent, task["id"], proof=proof), 403, "forbidden")
    assert "already used (replay)" in refused["detail"]


async def test_bind_refusals(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    problem(await world.bind(agent, "no-such-task"), 404, "not-found")
    problem(await world.bind(agent, task["id"], warrant_id="nope"), 404, "not-found")
    refused = problem(await world.bind(agent, task["id"], proof=""), 403, "forbidden")
    assert "no proof" in refused["detail"]
    stranger = world.ca.issue_x509_svid(f"spiffe://{DOMAIN}/agent/stranger")
    problem(await world.bind(stranger, task["id"]), 401, "unauthenticated")
    refused = problem(await world.bind(agent, task["id"], x5c=False), 401, "unauthenticated")
    assert "x5c" in refused["detail"]


MALFORMED_BINDS: list[tuple[bytes, int, str]] = [
    (b'{"task_id": "t", "x5c": ["not base64!"]}', 422, "invalid-request"),
    (b'{"task_id": "t", "x5c": []}', 422, "invalid-request"),
    (b'{"task_id": "t", "x5c": "abc"}', 422, "invalid-request"),
    (
        b'{"task_id": "t", "x5c": ["AA==", "AA==", "AA==", "AA==", "AA==", "AA=="]}',
        422,
        "invalid-request",
    ),
    (b'{"task_id": "t", "extra": 1}', 422, "invalid-request"),
    (b'{"task_id": 5}', 422, "invalid-request"),
    (b'{"task_id": "t", "warrant_id": 5}', 422, "invalid-request"),
    (b"{}", 422, "invalid-request"),
    (b"[1, 2]", 422, "invalid-request"),
    (b'{"task_id": ', 400, "malformed-json"),
    (b'{"task_id": "t", "x5c": ["AAAA"]}', 401, "unauthenticated"),
]


async def test_malformed_bind_requests(world: World) -> None:
    for content, status, slug in MALFORMED_BINDS:
        response = await world.client.post(
            "/v1/warrants/bind",
            content=content,
            headers={"Content-Type": "application/json", "Ztgate-Proof": "x.y.z"},
        )
        problem(response, status, slug)


async def test_a_revoked_agent_cannot_bind(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    response = await world.manage(
        "/v1/revocations", {"kind": "spiffe_id", "value": AGENT}, who="root"
    )
    assert response.status_code == 201, response.text
    refused = problem(await world.bind(agent, task["id"]), 401, "unauthenticated")
    assert f"{AGENT} is revoked" in refused["detail"]


# -- delegate ------------------------------------------------------------------------------------


async def test_delegate_then_the_helper_binds_and_calls(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    body = {"agent": HELPER, "scope": {"tools": {"send": {"limits": {"amount": {"maximum": 10}}}}}}
    response = await world.delegate(agent, warrant, task["id"], body)
    assert response.status_code == 201, response.text
    delegated = response.json()
    assert delegated["agent"] == HELPER and delegated["depth"] == 1
    assert delegated["task_id"] == task["id"]
    assert delegated["warrant"] is None
    assert delegated["scope"]["tools"]["send"]["limits"]["/amount"] == {"maximum": 10}
    helper = world.ca.issue_x509_svid(HELPER)
    child = await world.bound(helper, task["id"], warrant_id=delegated["warrant_id"])
    response = await world.proven_call(helper, child, task["id"])
    assert response.status_code == 200, response.text
    denied_by(
        await world.proven_call(
            helper, child, task["id"], arguments={"to": "bob@acme.example", "amount": 50}
        ),
        "scope",
        "above the scope's maximum 10",
    )
    denied_by(
        await world.proven_call(helper, child, task["id"], tool="search", arguments={}),
        "scope",
        "tool 'search' is not in the task's scope",
    )
    # Revoking the parent ends the child too.
    await world.manage(f"/v1/warrants/{delegated['parent_id']}/revoke")
    denied_by(await world.proven_call(helper, child, task["id"]), "warrant", "is revoked")


async def test_delegate_with_the_helpers_key(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    helper = world.ca.issue_x509_svid(HELPER)
    body = {"agent": HELPER, "jkt": key_thumbprint(helper.leaf.public_key())}
    response = await world.delegate(agent, warrant, task["id"], body)
    assert response.status_code == 201, response.text
    child = response.json()["warrant"]
    assert (await world.proven_call(helper, child, task["id"])).status_code == 200


async def test_a_widened_delegation(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    for scope, fragment in (
        ({"tools": {"delete": {}}}, "delegation adds tool 'delete'"),
        (
            {"tools": {"send": {"limits": {"amount": {"maximum": 1000}}}}},
            "maximum is above the parent's 100",
        ),
    ):
        response = await world.delegate(
            agent, warrant, task["id"], {"agent": HELPER, "scope": scope}
        )
        refused = problem(response, 403, "forbidden")
        assert fragment in refused["detail"]
    response = await world.delegate(
        agent, warrant, task["id"], {"agent": HELPER, "expires_in_seconds": 10**7}
    )
    assert "outlive" in problem(response, 403, "forbidden")["detail"]


async def test_the_delegation_depth_limit(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    helper = world.ca.issue_x509_svid(HELPER)
    body = {"agent": HELPER, "jkt": key_thumbprint(helper.leaf.public_key())}
    child = (await world.delegate(agent, warrant, task["id"], body)).json()["warrant"]
    response = await world.delegate(helper, child, task["id"], {"agent": OTHER})
    assert "beyond the limit of 1" in problem(response, 403, "forbidden")["detail"]


async def test_delegate_refusals(world: World, agent: X509Svid) -> None:
    task = await world.create_task()
    warrant = await world.bound(agent, task["id"])
    response = await world.delegate(agent, warrant, task["id"], {"agent": HELPER, "extra": 1})
    problem(response, 422, "invalid-request")
    response = await world.delegate(agent, warrant, task["id"], {"scope": {}})
    problem(response, 422, "invalid-request")
    response = await world.client.post(
        "/v1/warrants/delegate", json={"agent": HELPER}, headers={"Ztgate-Warrant": warrant}
    )
    problem(response, 401, "unauthenticated")
    response = await world.client.post(
        "/v1/warrants/delegate", json={"agent": HELPER}, headers={"Authorization": "Basic x"}
    )
    problem(response, 401, "unauthenticated")
    await world.manage(f"/v1/tasks/{task['id']}/complete")
    response = await world.delegate(agent, warrant, task["id"], {"agent": HELPER})
    assert "completed" in problem(response, 403, "forbidden")["detail"]


# -- without authentication ----------------------------------------------------------------------


async def test_warrant_routes_need_authentication_turned_on(
    template: Path, tmp_path: Path, upstream: str
) -> None:  # the same directory, with authentication off
    directory = tmp_path / "gateway"
    shutil.copytree(template, directory)
    (directory / "ztgate.toml").write_text(config(upstream, "off"), encoding="utf-8")
    async for world in open_world(directory):
        for path in ("/v1/warrants/bind", "/v1/warrants/delegate"):
            response = await world.client.post(path, json={"task_id": "t", "agent": HELPER})
            problem(response, 409, "tasks-disabled")
