"""Approval requests: stored with what approvers need, decided by approvers, bound, used once."""

from __future__ import annotations

import asyncio

import pytest

from ztgate.approvals.registry import (
    APPROVED,
    EXPIRED,
    PENDING,
    REJECTED,
    USED,
    Approval,
    ApprovalRegistry,
    ForbiddenError,
)
from ztgate.audit import AuditLog
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.principals.registry import Principal
from ztgate.store.database import Database
from ztgate.store.generations import read_all
from ztgate.testing import FrozenClock

from .conftest import OTHER, TASK, audit_bodies, make_call

ALICE = Principal("alice", "human", ("approver",), 0.0)
BOB = Principal("bob", "human", ("admin",), 0.0)
CAROL = Principal("carol", "human", ("tasks",), 0.0)
REASONS = [{"check": "policy", "outcome": "ask", "reason": "critical tools need a human"}]


@pytest.fixture
def registry(database: Database, clock: FrozenClock, audit: AuditLog) -> ApprovalRegistry:
    return ApprovalRegistry(database, clock, audit=audit)


def request(
    registry: ApprovalRegistry, *, risk: str = "critical", second_person: bool = False
) -> Approval:
    return registry.create(
        make_call(),
        risk=risk,
        principal="alice",
        intent="pay the acme invoice",
        reasons=REASONS,
        ttl=600,
        second_person=second_person,
    )


def test_a_request_holds_who_what_why_and_the_intent_with_secrets_redacted(
    registry: ApprovalRegistry, clock: FrozenClock
) -> None:
    made = request(registry)
    assert made.state == PENDING and made.expires_at == clock.now() + 600
    found = registry.get(made.id)
    assert found == made
    shown = found.request
    assert (shown["agent"], shown["task_id"], shown["principal"]) == (made.agent, TASK, "alice")
    assert (shown["tool"], shown["risk"]) == ("payments.send", "critical")
    assert shown["intent"] == "pay the acme invoice"
    assert shown["justification"] == "the invoice is due"
    assert shown["reasons"] == REASONS
    assert shown["arguments_sha256"] == make_call().arguments_sha256
    assert "acme" in shown["arguments_preview"]
    assert "sk-live-123" not in shown["arguments_preview"]
    assert len(made.request_sha256) == 64
    assert registry.list("pending") == [made]


def test_a_call_without_agent_or_task_cannot_wait(registry: ApprovalRegistry) -> None:
    with pytest.raises(InvalidInputError):
        registry.create(
            make_call(task_id=None), risk="write", principal="a", intent="", reasons=[], ttl=1
        )


def test_approving_is_audited_naming_principal_key_comment_and_request_hash(
    registry: ApprovalRegistry, database: Database
) -> None:
    made = request(registry)
    decided = registry.decide(made.id, True, principal=ALICE, key_id="k" * 16, comment="ok")
    assert (decided.state, decided.decided_by, decided.decided_key) == (APPROVED, "alice", "k" * 16)
    (record,) = audit_bodies(database)
    assert record["kind"] == "approval" and record["outcome"] == "allow"
    assert record["tool"] == "payments.send" and record["task_id"] == TASK
    detail = record["detail"]
    assert detail["action"] == "approval.approve" and detail["approval"] == made.id
    assert (detail["principal"], detail["api_key"], detail["comment"]) == ("alice", "k" * 16, "ok")
    assert detail["request_sha256"] == made.request_sha256


def test_a_rejection_says_who_and_why(registry: ApprovalRegistry, database: Database) -> None:
    made = request(registry)
    rejected = registry.decide(made.id, False, principal=BOB, comment="not this vendor")
    assert rejected.state == REJECTED
    assert rejected.refusal(0) == f"approval {made.id} was rejected by bob: not this vendor"
    assert audit_bodies(database)[0]["detail"]["action"] == "approval.reject"
    used, why = registry.consume(made.id, make_call())
    assert used is None and "rejected by bob" in why


def test_only_approvers_decide_and_only_once(registry: ApprovalRegistry) -> None:
    made = request(registry)
    with pytest.raises(ForbiddenError):
        registry.decide(made.id, True, principal=CAROL)
    disabled = Principal("dave", "human", ("approver",), 0.0, disabled_at=1.0)
    with pytest.raises(ForbiddenError):
        registry.decide(made.id, True, principal=disabled)
    registry.decide(made.id, True, principal=ALICE)
    with pytest.raises(ConflictError):
        registry.decide(made.id, False, principal=BOB)
    with pytest.raises(NotFoundError):
        registry.decide("nope", True, principal=ALICE)
    with pytest.raises(InvalidInputError):
        registry.decide(made.id, True, principal=ALICE, comment="x" * 1001)


def test_four_eyes_the_tasks_principal_cannot_approve_its_own_critical_call(
    registry: ApprovalRegistry,
) -> None:
    made = request(registry, second_person=True)
    assert made.second_person
    with pytest.raises(ForbiddenError, match="second person"):
        registry.decide(made.id, True, principal=ALICE)
    assert registry.decide(made.id, True, principal=BOB).state == APPROVED
    # Only critical calls need a second person.
    assert not request(registry, risk="write", second_person=True).second_person


def test_an_approval_is_used_once_for_the_very_call(registry: ApprovalRegistry) -> None:
    made = request(registry)
    used, why = registry.consume(made.id, make_call())
    assert used is None and "pending" in why
    registry.decide(made.id, True, principal=ALICE)
    changed = make_call({"to": "acme", "amount": 10_000, "api_key": "sk-live-123"})
    assert registry.consume(made.id, changed) == (
        None,
        f"approval {made.id} does not match this call: the arguments changed",
    )
    assert "another tool" in registry.consume(made.id, make_call(tool="x"))[1]
    assert "another task" in registry.consume(made.id, make_call(task_id="u" * 26))[1]
    assert "another agent" in registry.consume(made.id, make_call(agent=OTHER))[1]
    used, why = registry.consume(made.id, make_call(call_id="c2"))
    assert used is not None and why == ""
    assert (used.state, used.used_call_id) == (USED, "c2")
    replay, why = registry.consume(made.id, make_call(call_id="c3"))
    assert replay is None and "is used" in why
    assert registry.consume("missing", make_call())[1] == "approval 'missing' not found"


def test_a_request_expires_undecided_or_unused(
    registry: ApprovalRegistry, clock: FrozenClock
) -> None:
    late = request(registry)
    unused = request(registry)
    registry.decide(unused.id, True, principal=ALICE)
    clock.advance(601)
    assert registry.get(late.id).status(clock.now()) == EXPIRED
    with pytest.raises(ConflictError, match="expired"):
        registry.decide(late.id, True, principal=ALICE)
    used, why = registry.consume(unused.id, make_call())
    assert used is None and "expired" in why
    assert {a.id for a in registry.list("expired")} == {late.id, unused.id}
    assert registry.list("pending") == []
    with pytest.raises(InvalidInputError):
        registry.list("bogus")


async def test_wait_returns_once_decided_or_at_the_timeout(
    registry: ApprovalRegistry, clock: FrozenClock
) -> None:
    made = request(registry)
    assert (await registry.wait(made.id, 0)).state == PENDING

    async def approve_soon() -> None:
        await asyncio.sleep(0.05)
        await asyncio.to_thread(registry.decide, made.id, True, principal=ALICE)

    waiter = asyncio.create_task(registry.wait(made.id, 5))
    await approve_soon()
    assert (await asyncio.wait_for(waiter, 2)).state == APPROVED
    with pytest.raises(NotFoundError):
        await registry.wait("missing", 0)


def test_the_same_call_asked_again_gets_its_pending_request(
    registry: ApprovalRegistry, clock: FrozenClock
) -> None:
    first = request(registry)
    again = registry.create(
        make_call(call_id="c9"), risk="critical", principal="alice", intent="", reasons=[], ttl=600
    )
    assert again.id == first.id and again.request["call_id"] == "c1"
    other = registry.create(
        make_call({"to": "x"}), risk="critical", principal="alice", intent="", reasons=[], ttl=600
    )
    assert other.id != first.id
    clock.advance(601)
    assert request(registry).id != first.id  # expired: a new request


def test_an_approval_given_late_stays_usable_for_a_minute(
    registry: ApprovalRegistry, clock: FrozenClock
) -> None:
    made = request(registry)
    clock.advance(590)
    approved = registry.decide(made.id, True, principal=ALICE)
    assert approved.expires_at == clock.now() + 60
    clock.advance(30)
    used, why = registry.consume(made.id, make_call())
    assert used is not None, why


def test_a_console_attestation_is_recorded_but_overrides_nothing(
    registry: ApprovalRegistry, database: Database
) -> None:
    made = request(registry)
    attestation = {"signature": "sig", "session_key_thumbprint": "kt", "principal": "mallory"}
    registry.decide(made.id, False, principal=ALICE, comment="no", attestation=attestation)
    (record,) = audit_bodies(database)
    detail = record["detail"]
    assert (detail["signature"], detail["session_key_thumbprint"]) == ("sig", "kt")
    assert detail["principal"] == "alice"


def test_a_scoped_approver_decides_only_within_its_scope(registry: ApprovalRegistry) -> None:
    from ztgate.principals.registry import parse_scope

    made = request(registry)
    elsewhere = Principal(
        "erin", "human", ("approver",), 0.0, approver_scope=parse_scope(tools=["email.*"])
    )
    with pytest.raises(ForbiddenError, match="outside its approver scope"):
        registry.decide(made.id, True, principal=elsewhere)
    assert registry.get(made.id).state == PENDING
    payments = Principal(
        "erin", "human", ("approver",), 0.0, approver_scope=parse_scope(tools=["payments.*"])
    )
    assert registry.decide(made.id, True, principal=payments).state == APPROVED


async def test_wait_pauses_with_its_pause_and_a_decision_moves_the_generation(
    registry: ApprovalRegistry, database: Database
) -> None:
    """With change broadcasts the pause is "until the next message"; decisions publish one."""
    made = request(registry)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.to_thread(registry.decide, made.id, True, principal=ALICE)

    registry.pause = pause
    assert (await asyncio.wait_for(registry.wait(made.id, 5), 2)).state == APPROVED
    assert len(pauses) == 1 and 0 < pauses[0] <= 0.2
    with database.read() as conn:
        assert read_all(conn)["approvals"] == 1
