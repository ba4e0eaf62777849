"""The warrant service: bind and delegate through a real gateway, CA and store."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.canonical import canonical_json
from ztgate.config import load_settings
from ztgate.gateway import Gateway
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority, X509Svid
from ztgate.identity.check import AuthenticationCheck
from ztgate.identity.entries import EntryRegistry
from ztgate.models import Credentials, Outcome
from ztgate.tasks.registry import Task, TaskRegistry
from ztgate.testing import FrozenClock, make_settings
from ztgate.warrants import proof as proofs
from ztgate.warrants import token as tokens
from ztgate.warrants.jwk import key_thumbprint
from ztgate.warrants.service import (
    UNBOUND_ATH,
    BindRequest,
    OperationRefused,
    WarrantService,
)

DOMAIN = "ztgate.local"
AGENT = f"spiffe://{DOMAIN}/agent/mailer"
HELPER = f"spiffe://{DOMAIN}/agent/helper"
WORKER = f"spiffe://{DOMAIN}/agent/worker"
STRANGER = f"spiffe://{DOMAIN}/agent/stranger"  # never registered
AUDIENCE = "ztgate"
SCOPE = {
    "tools": {
        "send": {"limits": {"to": {"domains": ["acme.example"]}, "amount": {"maximum": 100}}},
        "search": {},
    }
}


@dataclass
class World:
    gateway: Gateway
    service: WarrantService
    authenticate: AuthenticationCheck
    registry: TaskRegistry
    ca: CertificateAuthority
    clock: FrozenClock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised gateway directory with the agents registered, copied for each test."""
    directory = tmp_path_factory.mktemp("template")
    settings = make_settings(
        directory,
        '[gateway]\nauthentication = "required"\n[warrants]\nmax_delegation_depth = 2\n',
    )
    database = settings.open_database()
    database.migrate()
    entries = EntryRegistry(database, FrozenClock(time.time()), DOMAIN)
    for number, agent in enumerate((AGENT, HELPER, WORKER)):
        entries.register(agent, [f"unix:uid:{1000 + number}"])
    database.dispose()
    return directory


@pytest.fixture
async def world(template: Path, tmp_path: Path) -> AsyncIterator[World]:
    shutil.copytree(template, tmp_path / "gateway")
    settings = load_settings(tmp_path / "gateway" / "ztgate.toml")
    clock = FrozenClock(time.time())  # the CA's authority is active from its creation on
    gateway = Gateway.from_settings(settings, clock=clock)
    await gateway.start()
    try:
        assert gateway.identity is not None and gateway.warrants is not None
        ca = CertificateAuthority.load(settings.path(settings.identity.ca_dir), clock)
        yield World(
            gateway,
            gateway.warrants,
            gateway.identity.check,
            gateway.warrants.registry,
            ca,
            clock,
        )
    finally:
        await gateway.stop()


def der(svid: X509Svid) -> bytes:
    return b"".join(_hazmat.certificate_der(c) for c in svid.chain)


def new_task(world: World, agent: str = AGENT, **overrides: Any) -> Task:
    fields: dict[str, Any] = {
        "principal": "alice",
        "agent": agent,
        "intent": "Email Bob the invoice",
        "scope": SCOPE,
    }
    fields.update(overrides)
    task, _, _ = world.registry.create(**fields)
    world.service.changed()
    return task


def bind_proof(
    world: World, private: Any, body: dict[str, Any], *, task_id: str | None = None, **extra: Any
) -> str:
    fields: dict[str, Any] = {
        "audience": AUDIENCE,
        "task_id": task_id or body["task_id"],
        "warrant": "",
        "canonical": canonical_json(body),
        "op": "bind",
        "issued_at": world.clock.now(),
    }
    fields.update(extra)
    return proofs.sign(private, **fields)


async def bind(
    world: World,
    svid: X509Svid,
    task_id: str,
    *,
    warrant_id: str | None = None,
    signer: Any = None,
    proof: str | None = None,
) -> tuple[str, Any]:
    body: dict[str, Any] = {"task_id": task_id}
    if warrant_id is not None:
        body["warrant_id"] = warrant_id
    if proof is None:
        proof = bind_proof(world, signer or svid.private_key, body)
    request = BindRequest(task_id, warrant_id, der(svid), canonical_json(body))
    return await world.service.bind(world.authenticate, request, proof)


async def refused(awaitable: Any, status: int, *fragments: str) -> str:
    with pytest.raises(OperationRefused) as caught:
        await awaitable
    assert caught.value.status == status, caught.value.message
    for fragment in fragments:
        assert fragment in caught.value.message, caught.value.message
    return caught.value.message


def verified(world: World, token: str) -> tokens.Warrant:
    key = world.registry.key
    return tokens.verify(
        token,
        {key.kid: key.public_key},
        issuer=world.registry.issuer,
        audience=world.registry.audience,
        now=world.clock.now(),
    )


async def delegate(
    world: World,
    svid: X509Svid,
    warrant: str,
    body: dict[str, Any],
    *,
    proof: str | None = None,
    bearer: bool = False,
) -> tuple[tokens.Warrant, Any, str | None]:
    canonical = canonical_json(body)
    if proof is None:
        parent = verified(world, warrant)
        proof = proofs.sign(
            svid.private_key,
            audience=AUDIENCE,
            task_id=parent.task_id,
            warrant=warrant,
            canonical=canonical,
            op="delegate",
            issued_at=world.clock.now(),
        )
    if bearer:
        credentials = Credentials(
            bearer=world.ca.issue_jwt_svid(svid.spiffe_id, [AUDIENCE]), warrant=warrant, proof=proof
        )
    else:
        credentials = Credentials(client_certificate=der(svid), warrant=warrant, proof=proof)
    return await world.service.delegate(world.authenticate, credentials, body, canonical)


# -- the service's parts -------------------------------------------------------------------------


def test_the_checks_come_in_order(world: World) -> None:
    assert [check.name for check in world.service.checks()] == ["warrant", "proof", "scope"]
    names = [check.name for check in world.gateway.pipeline.checks]
    ours = [name for name in names if name in ("authenticate", "warrant", "proof", "scope")]
    assert names[0] == "authenticate" and ours == ["authenticate", "warrant", "proof", "scope"]


def test_unbound_ath_is_the_hash_of_no_warrant() -> None:
    assert tokens.warrant_hash("") == UNBOUND_ATH


def test_changed_reloads_the_task_view(world: World) -> None:
    task, _, _ = world.registry.create(
        principal="alice", agent=AGENT, intent="x", scope=SCOPE, agent_jkt="A" * 43
    )
    assert task.id not in world.service.live.snapshot.states
    world.service.changed()
    assert world.service.live.snapshot.states[task.id][0] == "active"


# -- bind ----------------------------------------------------------------------------------------


async def test_bind_with_an_x5c_chain(world: World) -> None:
    task = new_task(world)
    svid = world.ca.issue_x509_svid(AGENT)
    agent, issued = await bind(world, svid, task.id)
    assert agent == AGENT
    assert issued.record.task_id == task.id and issued.record.depth == 0
    warrant = verified(world, issued.token)
    assert warrant.agent == AGENT
    assert warrant.jkt == key_thumbprint(svid.leaf.public_key())
    assert warrant.scope == task.scope


async def test_bind_by_warrant_id_and_rebind_after_rotation(world: World) -> None:
    task = new_task(world)
    first = world.ca.issue_x509_svid(AGENT)
    _, issued = await bind(world, first, task.id)
    rotated = world.ca.issue_x509_svid(AGENT)
    _, again = await bind(world, rotated, task.id, warrant_id=issued.record.id)
    assert again.record.id == issued.record.id
    assert verified(world, again.token).jkt == key_thumbprint(rotated.leaf.public_key())


async def test_a_bind_proof_by_another_key_is_refused(world: World) -> None:
    task = new_task(world)
    svid = world.ca.issue_x509_svid(AGENT)
    # A stolen SVID certificate without its key: the attacker signs with theirs.
    attacker = ec.generate_private_key(ec.SECP256R1())
    await refused(
        bind(world, svid, task.id, signer=attacker),
        403,
        "proof: signed by a key the warrant is not bound to",
    )
    assert world.registry.warrants(task.id)[0].jkt is None


async def test_a_replayed_bind_proof_is_refused(world: World) -> None:
    task = new_task(world)
    svid = world.ca.issue_x509_svid(AGENT)
    proof = bind_proof(world, svid.private_key, {"task_id": task.id})
    await bind(world, svid, task.id, proof=proof)
    await refused(bind(world, svid, task.id, proof=proof), 403, "proof: already used (replay)")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"op": "delegate"}, "not made for the 'bind' operation"),
        ({"op": None, "tool": "send"}, "not made for the 'bind' operation"),
        ({"warrant": "some.warrant.token"}, "made for another warrant (ath)"),
        ({"audience": "elsewhere"}, "aud is not this gateway"),
        ({"task_id": "another-task"}, "made for another task"),
        ({"canonical": b'{"task_id":"x"}'}, "made for other arguments"),
        ({"issued_at": 0.0}, "outside the +-30 s window"),
    ],
)
async def test_a_bind_proof_for_something_else_is_refused(
    world: World, extra: dict[str, Any], fragment: str
) -> None:
    task = new_task(world)
    svid = world.ca.issue_x509_svid(AGENT)
    proof = bind_proof(world, svid.private_key, {"task_id": task.id}, **extra)
    await refused(bind(world, svid, task.id, proof=proof), 403, "proof: ", fragment)


async def test_a_bind_without_a_proof_is_refused(world: World) -> None:
    task = new_task(world)
    svid = world.ca.issue_x509_svid(AGENT)
    await refused(bind(world, svid, task.id, proof=""), 403, "no proof: sign the request")


async def test_bind_for_another_agents_task_is_refused(world: World) -> None:
    task = new_task(world, agent=HELPER)
    svid = world.ca.issue_x509_svid(AGENT)
    await refused(bind(world, svid, task.id), 403, f"is not for {AGENT}")


async def test_bind_an_unknown_task_or_warrant(world: World) -> None:
    svid = world.ca.issue_x509_svid(AGENT)
    await refused(bind(world, svid, "no-such-task"), 404, "task 'no-such-task' not found")
    task = new_task(world)
    await refused(bind(world, svid, task.id, warrant_id="nope"), 404, "not found")


async def test_bind_an_ended_task_is_refused(world: World) -> None:
    task = new_task(world)
    world.registry.complete(task.id, actor="alice")
    svid = world.ca.issue_x509_svid(AGENT)
    await refused(bind(world, svid, task.id), 403, "is completed, not active")


async def test_bind_needs_an_authenticated_svid(world: World) -> None:
    task = new_task(world, agent=STRANGER)
    stranger = world.ca.issue_x509_svid(STRANGER)  # valid, but not registered
    await refused(bind(world, stranger, task.id), 401)
    outsider_ca = CertificateAuthority.create(
        world.gateway.settings.base_dir / "other-ca", DOMAIN, world.clock
    )
    forged = outsider_ca.issue_x509_svid(AGENT)  # our trust domain, another CA
    await refused(bind(world, forged, new_task(world).id), 401)


async def test_bind_with_a_malformed_chain(world: World) -> None:
    task = new_task(world)
    body = {"task_id": task.id}
    request = BindRequest(task.id, None, b"not DER at all", canonical_json(body))
    with pytest.raises(OperationRefused) as caught:
        await world.service.bind(world.authenticate, request, "x.y.z")
    assert caught.value.status == 401


async def test_bind_an_expired_svid_is_refused(world: World) -> None:
    task = new_task(world, ttl=7200)
    svid = world.ca.issue_x509_svid(AGENT, ttl=60)
    world.clock.advance(120)
    await refused(bind(world, svid, task.id), 401)


# -- delegate ------------------------------------------------------------------------------------


async def bound_root(world: World, agent: str = AGENT) -> tuple[X509Svid, str, Task]:
    task = new_task(world, agent=agent)
    svid = world.ca.issue_x509_svid(agent)
    _, issued = await bind(world, svid, task.id)
    return svid, issued.token, task


async def test_delegate_a_narrower_warrant(world: World) -> None:
    svid, token, task = await bound_root(world)
    helper = world.ca.issue_x509_svid(HELPER)
    body = {
        "agent": HELPER,
        "scope": {"tools": {"send": {"limits": {"amount": {"maximum": 10}}}}},
        "expires_in_seconds": 600,
        "jkt": key_thumbprint(helper.leaf.public_key()),
    }
    parent, record, child_token = await delegate(world, svid, token, body)
    assert parent.agent == AGENT and parent.task_id == task.id
    assert (record.agent, record.parent_id, record.depth) == (HELPER, parent.id, 1)
    assert record.expires_at == world.clock.now() + 600
    assert child_token is not None
    child = verified(world, child_token)
    assert child.actors == (AGENT,) and child.chain == (parent.id,)
    assert child.scope.tools["send"].limits["/amount"].maximum == 10
    assert "search" not in child.scope.tools


async def test_delegate_without_a_key_and_then_bind(world: World) -> None:
    svid, token, task = await bound_root(world)
    _, record, child_token = await delegate(world, svid, token, {"agent": HELPER}, bearer=True)
    assert child_token is None
    helper = world.ca.issue_x509_svid(HELPER)
    agent, issued = await bind(world, helper, task.id, warrant_id=record.id)
    assert agent == HELPER
    child = verified(world, issued.token)
    assert child.scope == task.scope  # nothing asked: the parent's scope
    assert child.jkt == key_thumbprint(helper.leaf.public_key())


@pytest.mark.parametrize(
    ("scope", "fragment"),
    [
        ({"tools": {"delete": {}}}, "delegation adds tool 'delete', which the parent may not call"),
        (
            {"tools": {"send": {"limits": {"amount": {"maximum": 1000}}}}},
            "maximum is above the parent's 100",
        ),
        (
            {"tools": {"send": {"limits": {"to": {"domains": ["evil.example"]}}}}},
            "domain 'evil.example' is outside the parent's",
        ),
        ({"tools": {}}, "a scope names at least one tool"),
    ],
)
async def test_delegate_widening_is_refused_with_the_reason(
    world: World, scope: dict[str, Any], fragment: str
) -> None:
    svid, token, task = await bound_root(world)
    await refused(delegate(world, svid, token, {"agent": HELPER, "scope": scope}), 403, fragment)
    assert len(world.registry.warrants(task.id)) == 1


async def test_delegate_cannot_outlive_the_parent(world: World) -> None:
    svid, token, _ = await bound_root(world)
    body = {"agent": HELPER, "expires_in_seconds": 10**6}
    await refused(delegate(world, svid, token, body), 403, "would outlive the parent warrant")


async def test_the_depth_limit(world: World) -> None:
    svid, token, _ = await bound_root(world)
    helper = world.ca.issue_x509_svid(HELPER)
    worker = world.ca.issue_x509_svid(WORKER)
    body = {"agent": HELPER, "jkt": key_thumbprint(helper.leaf.public_key())}
    _, _, first = await delegate(world, svid, token, body)
    assert first is not None
    body = {"agent": WORKER, "jkt": key_thumbprint(worker.leaf.public_key())}
    _, record, second = await delegate(world, helper, first, body)
    assert second is not None and record.depth == 2
    await refused(
        delegate(world, worker, second, {"agent": AGENT}),
        403,
        "delegation depth 3 is beyond the limit of 2",
    )


async def test_delegate_after_the_parent_is_revoked(world: World) -> None:
    svid, token, _ = await bound_root(world)
    parent = verified(world, token)
    world.registry.revoke_warrant(parent.id, actor="alice")
    # Refused by the store even before the task view is reloaded...
    await refused(delegate(world, svid, token, {"agent": HELPER}), 403, "is revoked")
    # ...and by the warrant check once it is.
    world.service.changed()
    await refused(delegate(world, svid, token, {"agent": HELPER}), 403, "warrant: ", "is revoked")


async def test_delegate_after_the_task_is_completed(world: World) -> None:
    svid, token, task = await bound_root(world)
    world.registry.complete(task.id, actor="alice")
    await refused(delegate(world, svid, token, {"agent": HELPER}), 403, "is completed")
    world.service.changed()
    await refused(delegate(world, svid, token, {"agent": HELPER}), 403, "warrant: task")


async def test_delegate_another_agents_warrant_is_refused(world: World) -> None:
    _, token, _ = await bound_root(world)
    helper = world.ca.issue_x509_svid(HELPER)
    await refused(
        delegate(world, helper, token, {"agent": WORKER}, proof="x.y.z"),
        403,
        f"the warrant is for {AGENT}, not for {HELPER}",
    )


async def test_delegate_needs_authentication(world: World) -> None:
    _, token, _ = await bound_root(world)
    credentials = Credentials(warrant=token, proof="x.y.z")
    body = {"agent": HELPER}
    with pytest.raises(OperationRefused) as caught:
        await world.service.delegate(world.authenticate, credentials, body, canonical_json(body))
    assert caught.value.status == 401


async def test_delegate_proof_refusals(world: World) -> None:
    svid, token, task = await bound_root(world)
    body = {"agent": HELPER}
    canonical = canonical_json(body)

    def proof(**extra: Any) -> str:
        fields: dict[str, Any] = {
            "audience": AUDIENCE,
            "task_id": task.id,
            "warrant": token,
            "canonical": canonical,
            "op": "delegate",
            "issued_at": world.clock.now(),
        }
        fields.update(extra)
        return proofs.sign(svid.private_key, **fields)

    await refused(delegate(world, svid, token, body, proof=""), 403, "no proof")
    await refused(
        delegate(world, svid, token, body, proof=proof(op="bind")),
        403,
        "not made for the 'delegate' operation",
    )
    await refused(
        delegate(world, svid, token, body, proof=proof(canonical=b"{}")),
        403,
        "made for other arguments",
    )
    await refused(
        delegate(world, svid, token, body, proof=proof(warrant="")),
        403,
        "made for another warrant",
    )
    other = ec.generate_private_key(ec.SECP256R1())
    forged = proofs.sign(
        other,
        audience=AUDIENCE,
        task_id=task.id,
        warrant=token,
        canonical=canonical,
        op="delegate",
        issued_at=world.clock.now(),
    )
    await refused(delegate(world, svid, token, body, proof=forged), 403, "not bound")
    once = proof()
    await delegate(world, svid, token, body, proof=once)
    await refused(delegate(world, svid, token, body, proof=once), 403, "already used (replay)")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "agent: the sub-agent's SPIFFE ID is required"),
        ({"agent": 5}, "agent: the sub-agent's SPIFFE ID is required"),
        ({"agent": HELPER, "extra": 1}, "unknown field 'extra' in the body"),
        ({"agent": HELPER, "expires_in_seconds": "60"}, "expires_in_seconds: a number"),
        ({"agent": HELPER, "expires_in_seconds": True}, "expires_in_seconds: a number"),
        ({"agent": HELPER, "jkt": 5}, "jkt: the sub-agent's key thumbprint"),
    ],
)
async def test_a_malformed_delegation_body(
    world: World, body: dict[str, Any], fragment: str
) -> None:
    svid, token, _ = await bound_root(world)
    await refused(delegate(world, svid, token, body), 422, fragment)


async def test_a_delegation_body_with_bad_values(world: World) -> None:
    svid, token, _ = await bound_root(world)
    await refused(delegate(world, svid, token, {"agent": "helper"}), 403)
    await refused(
        delegate(world, svid, token, {"agent": HELPER, "jkt": "short"}), 403, "key thumbprint"
    )
    await refused(
        delegate(world, svid, token, {"agent": HELPER, "expires_in_seconds": -5}),
        403,
        "lifetime must be positive",
    )


async def test_the_delegated_warrant_works_in_the_pipeline(world: World) -> None:
    svid, token, task = await bound_root(world)
    helper = world.ca.issue_x509_svid(HELPER)
    body = {
        "agent": HELPER,
        "scope": {"tools": {"send": {"limits": {"amount": {"maximum": 10}}}}},
        "jkt": key_thumbprint(helper.leaf.public_key()),
    }
    _, _, child_token = await delegate(world, svid, token, body)
    assert child_token is not None
    world.service.changed()
    from ztgate.pipeline import CallContext
    from ztgate.testing import make_call

    for amount, allowed in ((5, True), (50, False)):
        arguments = {"to": "bob@acme.example", "amount": amount}
        call = make_call("send", arguments)
        proof = proofs.sign(
            helper.private_key,
            audience=AUDIENCE,
            task_id=task.id,
            warrant=child_token,
            canonical=call.canonical_arguments,
            tool="send",
            issued_at=world.clock.now(),
        )
        call = make_call(
            "send",
            arguments,
            credentials=Credentials(
                client_certificate=der(helper), warrant=child_token, proof=proof
            ),
        )
        ctx = CallContext(world.clock)
        outcomes = []
        for check in world.service.checks():
            if not outcomes:
                verdict = await world.authenticate(call, ctx)
                ctx.facts.update(verdict.facts)
                outcomes.append(verdict.outcome)
            verdict = await check(call, ctx)
            ctx.facts.update(verdict.facts)
            outcomes.append(verdict.outcome)
        assert (outcomes[-1] is Outcome.ALLOW) is allowed, outcomes
        assert outcomes[:-1] == [Outcome.ALLOW] * 3


# -- what a warrant allows (an MCP tools/list) -----------------------------------------------


async def test_warrant_of_an_authenticated_agent_needs_no_proof(world: World) -> None:
    svid, token, task = await bound_root(world)
    found = await world.service.warrant_of(
        world.authenticate, Credentials(client_certificate=der(svid), warrant=token)
    )
    assert found.task_id == task.id and found.agent == AGENT
    assert set(found.scope.tools) == set(task.scope.tools)


async def test_warrant_of_refuses_the_unauthenticated_and_another_agents_warrant(
    world: World,
) -> None:
    _, token, _ = await bound_root(world)
    await refused(world.service.warrant_of(world.authenticate, Credentials(warrant=token)), 401)
    other = world.ca.issue_x509_svid(HELPER)
    await refused(
        world.service.warrant_of(
            world.authenticate, Credentials(client_certificate=der(other), warrant=token)
        ),
        403,
        "warrant:",
    )
