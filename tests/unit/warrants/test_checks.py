"""The warrant, proof and scope checks over real warrants, a real store and hot state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.models import Credentials, Outcome, ToolCall, Verdict
from ztgate.pipeline import CallContext
from ztgate.store.database import Database
from ztgate.store.hot import MemoryHotState
from ztgate.tasks.registry import TaskRegistry, issuer_for
from ztgate.testing import FrozenClock, make_call
from ztgate.warrants import proof as proofs
from ztgate.warrants import token as tokens
from ztgate.warrants.checks import (
    FACT,
    PROOF,
    SCOPE,
    WARRANT,
    ProofCheck,
    ScopeCheck,
    WarrantCheck,
)
from ztgate.warrants.jwk import key_thumbprint
from ztgate.warrants.keys import WarrantKey, load_or_create
from ztgate.warrants.live import LiveTasks
from ztgate.warrants.token import Warrant

AGENT = "spiffe://acme.example/agent/mailer"
HELPER = "spiffe://acme.example/agent/helper"
ISSUER = issuer_for("acme.example")
AUDIENCE = "ztgate"
SCOPE_JSON = {
    "tools": {
        "send": {"limits": {"to": {"domains": ["acme.example"]}, "amount": {"maximum": 100}}},
        "search": {},
    }
}
ARGS = {"to": "bob@acme.example", "amount": 5}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> WarrantKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "warrant.pem")


@pytest.fixture(scope="module")
def agent_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def helper_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def registry(database: Database, clock: FrozenClock, key: WarrantKey) -> TaskRegistry:
    return TaskRegistry(database, clock, key=key, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def live(database: Database, clock: FrozenClock) -> LiveTasks:
    return LiveTasks(database, clock)


@pytest.fixture
def warrant_check(key: WarrantKey, live: LiveTasks) -> WarrantCheck:
    return WarrantCheck(
        keys={key.kid: key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        snapshot=lambda: live.snapshot,
        skew=5,
    )


@pytest.fixture
def hot(clock: FrozenClock) -> MemoryHotState:
    return MemoryHotState(clock)


@pytest.fixture
def proof_check(hot: MemoryHotState) -> ProofCheck:
    return ProofCheck(audience=AUDIENCE, hot=hot, window=30)


@dataclasses.dataclass
class Issued:
    token: str
    warrant: Warrant


def issue(
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
    **overrides: Any,
) -> Issued:
    fields: dict[str, Any] = {
        "principal": "alice",
        "agent": AGENT,
        "intent": "Email Bob the invoice",
        "scope": SCOPE_JSON,
        "agent_jkt": key_thumbprint(agent_key),
    }
    fields.update(overrides)
    _, _, token = registry.create(**fields)
    assert token is not None
    live.reload()
    return Issued(token, verify(registry, token, clock))


def verify(registry: TaskRegistry, token: str, clock: FrozenClock) -> Warrant:
    return tokens.verify(
        token,
        {registry.key.kid: registry.key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        now=clock.now(),
    )


def call_with(
    token: str | None,
    *,
    tool: str = "send",
    arguments: dict[str, Any] | None = None,
    proof: str | None = None,
) -> ToolCall:
    return make_call(
        tool,
        ARGS if arguments is None else arguments,
        credentials=Credentials(warrant=token, proof=proof),
    )


def context(clock: FrozenClock, agent: str | None = AGENT, **facts: Any) -> CallContext:
    ctx = CallContext(clock)
    if agent is not None:
        ctx.facts["principal.spiffe_id"] = agent
    ctx.facts.update(facts)
    return ctx


def denied(verdict: Verdict, check: str, *fragments: str) -> str:
    assert verdict.outcome is Outcome.DENY, verdict
    assert verdict.check == check
    assert not verdict.facts
    for fragment in fragments:
        assert fragment in verdict.reason, verdict.reason
    return verdict.reason


def sign_for(
    private: ec.EllipticCurvePrivateKey,
    issued: Issued,
    call: ToolCall,
    clock: FrozenClock,
    **overrides: Any,
) -> str:
    fields: dict[str, Any] = {
        "audience": AUDIENCE,
        "task_id": issued.warrant.task_id,
        "warrant": issued.token,
        "canonical": call.canonical_arguments,
        "tool": call.tool,
        "issued_at": clock.now(),
    }
    fields.update(overrides)
    return proofs.sign(private, **fields)


# -- warrant -------------------------------------------------------------------------------------


async def test_a_valid_warrant_is_allowed_with_its_facts(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    issued = issue(registry, live, agent_key, clock)
    verdict = await warrant_check(call_with(issued.token), context(clock))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert verdict.check == WARRANT
    assert verdict.reason == f"warrant {issued.warrant.id} of task {issued.warrant.task_id}"
    assert dict(verdict.facts) == {
        FACT: issued.warrant,
        "task.id": issued.warrant.task_id,
        "warrant.id": issued.warrant.id,
        "warrant.depth": 0,
        "warrant.delegated_by": [],
    }


async def test_a_delegated_warrant_names_its_delegators(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    helper_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    parent = issue(registry, live, agent_key, clock)
    _, token = registry.delegate(parent.warrant, agent=HELPER, jkt=key_thumbprint(helper_key))
    assert token is not None
    live.reload()
    verdict = await warrant_check(call_with(token), context(clock, HELPER))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert verdict.facts["warrant.depth"] == 1
    assert verdict.facts["warrant.delegated_by"] == [AGENT]


@pytest.mark.parametrize("token", [None, ""])
async def test_no_warrant(warrant_check: WarrantCheck, clock: FrozenClock, token: Any) -> None:
    verdict = await warrant_check(call_with(token), context(clock))
    denied(verdict, WARRANT, "no warrant: send the task's warrant in the Ztgate-Warrant header")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 40_000])
async def test_a_bad_warrant(warrant_check: WarrantCheck, clock: FrozenClock, token: str) -> None:
    denied(await warrant_check(call_with(token), context(clock)), WARRANT, "warrant: ")


async def test_a_warrant_signed_by_another_key(
    warrant_check: WarrantCheck,
    database: Database,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
    tmp_path: Any,
) -> None:
    rogue = TaskRegistry(
        database,
        clock,
        key=load_or_create(tmp_path / "rogue.pem"),
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    issued = issue(rogue, live, agent_key, clock)
    verdict = await warrant_check(call_with(issued.token), context(clock))
    denied(verdict, WARRANT, "warrant: signed by a key this gateway does not know")


async def test_a_warrant_for_another_agent(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    issued = issue(registry, live, agent_key, clock)
    verdict = await warrant_check(call_with(issued.token), context(clock, HELPER))
    denied(verdict, WARRANT, f"the warrant is for {AGENT}, not for {HELPER}")


async def test_an_unauthenticated_caller(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    issued = issue(registry, live, agent_key, clock)
    verdict = await warrant_check(call_with(issued.token), context(clock, None))
    denied(verdict, WARRANT, "the caller is not authenticated")


@pytest.mark.parametrize(
    ("end", "fragment"), [("complete", "is completed"), ("revoke", "is revoked")]
)
async def test_an_ended_task(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
    end: str,
    fragment: str,
) -> None:
    issued = issue(registry, live, agent_key, clock)
    getattr(registry, end)(issued.warrant.task_id, actor="alice")
    live.reload()
    verdict = await warrant_check(call_with(issued.token), context(clock))
    denied(verdict, WARRANT, f"task {issued.warrant.task_id} {fragment}")


async def test_an_expired_task_and_warrant(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    issued = issue(registry, live, agent_key, clock, ttl=60)
    assert (await warrant_check(call_with(issued.token), context(clock))).outcome is Outcome.ALLOW
    clock.advance(60)
    # Within the skew the token still verifies (from the cache), but the task has expired.
    verdict = await warrant_check(call_with(issued.token), context(clock))
    denied(verdict, WARRANT, f"task {issued.warrant.task_id} has expired")
    clock.advance(6)
    verdict = await warrant_check(call_with(issued.token), context(clock))
    denied(verdict, WARRANT, "warrant: expired")


async def test_a_revoked_warrant_and_a_revoked_ancestor(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    helper_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    parent = issue(registry, live, agent_key, clock)
    _, token = registry.delegate(parent.warrant, agent=HELPER, jkt=key_thumbprint(helper_key))
    assert token is not None
    live.reload()
    assert (await warrant_check(call_with(token), context(clock, HELPER))).outcome is Outcome.ALLOW
    registry.revoke_warrant(parent.warrant.id, actor="alice")
    live.reload()
    denied(
        await warrant_check(call_with(parent.token), context(clock)),
        WARRANT,
        f"this warrant ({parent.warrant.id}) is revoked",
    )
    # The child was revoked with it; even if only the parent were, the child is refused.
    from ztgate.warrants.live import TaskSnapshot

    only_parent = TaskSnapshot(live.snapshot.states, frozenset({parent.warrant.id}))
    check = WarrantCheck(
        keys={registry.key.kid: registry.key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        snapshot=lambda: only_parent,
    )
    denied(
        await check(call_with(token), context(clock, HELPER)),
        WARRANT,
        f"a warrant above it ({parent.warrant.id}) is revoked",
    )


async def test_a_cache_hit_still_checks_the_tasks_state(
    warrant_check: WarrantCheck,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issued = issue(registry, live, agent_key, clock)
    assert (await warrant_check(call_with(issued.token), context(clock))).outcome is Outcome.ALLOW
    verifications = []
    real_verify = tokens.verify
    monkeypatch.setattr(
        tokens, "verify", lambda *a, **k: verifications.append(1) or real_verify(*a, **k)
    )
    assert (await warrant_check(call_with(issued.token), context(clock))).outcome is Outcome.ALLOW
    assert verifications == []  # served from the cache
    registry.complete(issued.warrant.task_id, actor="alice")
    live.reload()
    verdict = await warrant_check(call_with(issued.token), context(clock))
    denied(verdict, WARRANT, "is completed")
    assert verifications == []
    # And the agent check too: a cached warrant is still for its own agent only.
    denied(await warrant_check(call_with(issued.token), context(clock, HELPER)), WARRANT, "not for")


async def test_the_cache_is_bounded(
    key: WarrantKey,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    check = WarrantCheck(
        keys={key.kid: key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        snapshot=lambda: live.snapshot,
        cache_size=2,
    )
    for _ in range(4):
        issued = issue(registry, live, agent_key, clock)
        assert (await check(call_with(issued.token), context(clock))).outcome is Outcome.ALLOW
    assert len(check._cache) == 2


async def test_a_refused_token_is_not_cached(
    warrant_check: WarrantCheck, clock: FrozenClock
) -> None:
    await warrant_check(call_with("garbage"), context(clock))
    assert len(warrant_check._cache) == 0


async def test_a_long_reason_is_cut(
    key: WarrantKey,
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    class Verbose:
        def refusal(self, warrant: Warrant, now: float) -> str:
            return "x" * 2000

    check = WarrantCheck(
        keys={key.kid: key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        snapshot=lambda: Verbose(),  # type: ignore[arg-type,return-value]
    )
    issued = issue(registry, live, agent_key, clock)
    verdict = await check(call_with(issued.token), context(clock))
    assert verdict.outcome is Outcome.DENY and len(verdict.reason) == 500


# -- proof ---------------------------------------------------------------------------------------


@pytest.fixture
def issued(
    registry: TaskRegistry,
    live: LiveTasks,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> Issued:
    return issue(registry, live, agent_key, clock)


def proven(issued: Issued, clock: FrozenClock) -> CallContext:
    return context(clock, **{FACT: issued.warrant})


async def test_a_valid_proof_is_allowed_once(
    proof_check: ProofCheck,
    hot: MemoryHotState,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    call = call_with(issued.token)
    proof = sign_for(agent_key, issued, call, clock, jti="proof-id-0000000001")
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    verdict = await proof_check(call, proven(issued, clock))
    assert verdict.outcome is Outcome.ALLOW, verdict
    assert verdict.check == PROOF
    assert dict(verdict.facts) == {"proof.jti": "proof-id-0000000001"}
    # The very same proof again: a replay.
    denied(await proof_check(call, proven(issued, clock)), PROOF, "proof: already used (replay)")
    assert not await hot.remember_once("proof:proof-id-0000000001", 60)


async def test_the_replay_memory_lasts_twice_the_window(
    proof_check: ProofCheck,
    hot: MemoryHotState,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    call = call_with(issued.token)
    proof = sign_for(agent_key, issued, call, clock, jti="proof-id-0000000002")
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    assert (await proof_check(call, proven(issued, clock))).outcome is Outcome.ALLOW
    clock.advance(59)
    assert not await hot.remember_once("proof:proof-id-0000000002", 1)
    clock.advance(2)
    # Forgotten only once the proof is far outside its window anyway.
    denied(await proof_check(call, proven(issued, clock)), PROOF, "outside the +-30 s window")


async def test_every_call_needs_a_new_proof(
    proof_check: ProofCheck,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    for _ in range(3):
        call = call_with(issued.token)
        proof = sign_for(agent_key, issued, call, clock)
        call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
        assert (await proof_check(call, proven(issued, clock))).outcome is Outcome.ALLOW


async def test_no_verified_warrant_to_check_against(
    proof_check: ProofCheck,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    call = call_with(issued.token)
    proof = sign_for(agent_key, issued, call, clock)
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    denied(await proof_check(call, context(clock)), PROOF, "no verified warrant to check the proof")
    bogus = context(clock, **{FACT: "not a warrant"})
    denied(await proof_check(call, bogus), PROOF, "no verified warrant")


@pytest.mark.parametrize("proof", [None, ""])
async def test_a_missing_proof(
    proof_check: ProofCheck, issued: Issued, clock: FrozenClock, proof: Any
) -> None:
    call = call_with(issued.token, proof=proof)
    denied(
        await proof_check(call, proven(issued, clock)),
        PROOF,
        "no proof: sign each call and send it in the Ztgate-Proof header",
    )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"tool": "search"}, "proof: made for another tool"),
        ({"canonical": b'{"amount":6,"to":"bob@acme.example"}'}, "proof: made for other arguments"),
        ({"task_id": "another-task"}, "proof: made for another task"),
        ({"warrant": "another.warrant.token"}, "proof: made for another warrant (ath)"),
        ({"audience": "another-gateway"}, "proof: aud is not this gateway"),
        ({"issued_at": -31}, "proof: iat is outside the +-30 s window"),  # seconds from now
        ({"issued_at": 31}, "proof: iat is outside the +-30 s window"),
        ({"tool": None, "op": "delegate"}, "proof: made for another tool"),
    ],
)
async def test_a_proof_for_something_else(
    proof_check: ProofCheck,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
    overrides: dict[str, Any],
    fragment: str,
) -> None:
    call = call_with(issued.token)
    if "issued_at" in overrides:
        overrides = {**overrides, "issued_at": clock.now() + overrides["issued_at"]}
    proof = sign_for(agent_key, issued, call, clock, **overrides)
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    denied(await proof_check(call, proven(issued, clock)), PROOF, fragment)


async def test_a_proof_by_another_key(
    proof_check: ProofCheck,
    issued: Issued,
    helper_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    call = call_with(issued.token)
    proof = sign_for(helper_key, issued, call, clock)
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    denied(
        await proof_check(call, proven(issued, clock)),
        PROOF,
        "proof: signed by a key the warrant is not bound to",
    )


async def test_a_refused_proof_does_not_use_up_its_jti(
    proof_check: ProofCheck,
    hot: MemoryHotState,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    call = call_with(issued.token)
    proof = sign_for(agent_key, issued, call, clock, tool="search", jti="proof-id-0000000003")
    call = dataclasses.replace(call, credentials=Credentials(warrant=issued.token, proof=proof))
    denied(await proof_check(call, proven(issued, clock)), PROOF, "another tool")
    assert await hot.remember_once("proof:proof-id-0000000003", 1)


async def test_the_arguments_are_compared_in_canonical_form(
    proof_check: ProofCheck,
    issued: Issued,
    agent_key: ec.EllipticCurvePrivateKey,
    clock: FrozenClock,
) -> None:
    signed_over = call_with(issued.token, arguments={"to": "bob@acme.example", "amount": 5.0})
    sent = call_with(issued.token, arguments={"amount": 5, "to": "bob@acme.example"})
    proof = sign_for(agent_key, issued, signed_over, clock)
    sent = dataclasses.replace(sent, credentials=Credentials(warrant=issued.token, proof=proof))
    assert (await proof_check(sent, proven(issued, clock))).outcome is Outcome.ALLOW


# -- scope ---------------------------------------------------------------------------------------


async def test_scope_allows_a_call_within_it(issued: Issued, clock: FrozenClock) -> None:
    verdict = await ScopeCheck()(call_with(issued.token), proven(issued, clock))
    assert verdict.outcome is Outcome.ALLOW
    assert (verdict.check, verdict.reason) == (SCOPE, "within the task's scope")
    assert verdict.facts == {"scope.within": True}  # for the policy check
    verdict = await ScopeCheck()(
        call_with(issued.token, tool="search", arguments={"q": [1, {}]}), proven(issued, clock)
    )
    assert verdict.outcome is Outcome.ALLOW


async def test_scope_refuses_a_tool_outside_it(issued: Issued, clock: FrozenClock) -> None:
    verdict = await ScopeCheck()(call_with(issued.token, tool="delete"), proven(issued, clock))
    denied(verdict, SCOPE, "tool 'delete' is not in the task's scope")


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"to": "eve@evil.example", "amount": 5}, "argument /to names a host outside"),
        (
            {"to": "bob@acme.example", "amount": 500},
            "argument /amount is above the scope's maximum",
        ),
        ({"to": ["bob@acme.example", "eve@evil.example"]}, "argument /to names a host outside"),
        ({"to": {"host": "acme.example"}}, "argument /to is an object"),
    ],
)
async def test_scope_refuses_arguments_outside_its_limits(
    issued: Issued, clock: FrozenClock, arguments: dict[str, Any], fragment: str
) -> None:
    verdict = await ScopeCheck()(
        call_with(issued.token, arguments=arguments), proven(issued, clock)
    )
    denied(verdict, SCOPE, fragment)


async def test_scope_without_a_verified_warrant(clock: FrozenClock) -> None:
    verdict = await ScopeCheck()(call_with(None), context(clock))
    denied(verdict, SCOPE, "no verified warrant to take the scope from")
