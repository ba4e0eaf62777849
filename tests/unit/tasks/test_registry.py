"""The task registry: tasks and warrants in the store, validated, audited and generation-bumped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from ztgate.audit import AuditLog
from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import audit_records, tasks
from ztgate.tasks.registry import (
    ACTIVE,
    COMPLETED,
    EXPIRED,
    GENERATION,
    MAX_INTENT_CHARS,
    MAX_REASON_CHARS,
    REVOKED,
    Issued,
    Task,
    TaskRegistry,
    WarrantRecord,
    issuer_for,
)
from ztgate.tasks.scope import Scope, parse_scope
from ztgate.testing import FrozenClock
from ztgate.warrants import token as tokens
from ztgate.warrants.keys import WarrantKey, load_or_create

AGENT = "spiffe://acme.example/agent/mailer"
HELPER = "spiffe://acme.example/agent/helper"
WORKER = "spiffe://acme.example/agent/worker"
ISSUER = issuer_for("acme.example")
AUDIENCE = "ztgate"
JKT = "A" * 43
JKT2 = "B" * 43
JKT3 = "C" * 43
SCOPE = {
    "tools": {
        "send": {"limits": {"to": {"domains": ["acme.example"]}, "amount": {"maximum": 100}}},
        "search": {},
    }
}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> WarrantKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "warrant.pem")


@pytest.fixture
def audit(database: Database, clock: FrozenClock) -> AuditLog:
    return AuditLog(database, clock)


@pytest.fixture
def registry(
    database: Database, clock: FrozenClock, key: WarrantKey, audit: AuditLog
) -> TaskRegistry:
    return TaskRegistry(
        database,
        clock,
        key=key,
        issuer=ISSUER,
        audience=AUDIENCE,
        max_depth=2,
        default_ttl=3600,
        max_ttl=86400,
        audit=audit,
    )


def new_task(registry: TaskRegistry, **overrides: Any) -> tuple[Task, WarrantRecord, str | None]:
    fields: dict[str, Any] = {
        "principal": "alice",
        "agent": AGENT,
        "intent": "Email Bob the invoice",
        "scope": SCOPE,
    }
    fields.update(overrides)
    return registry.create(**fields)


def verified(registry: TaskRegistry, token: str, now: float) -> tokens.Warrant:
    return tokens.verify(
        token,
        {registry.key.kid: registry.key.public_key},
        issuer=ISSUER,
        audience=AUDIENCE,
        now=now,
    )


def _generation(database: Database) -> int:
    with database.read() as conn:
        return generations.read_all(conn).get(GENERATION, 0)


def _audit(database: Database) -> list[dict[str, Any]]:
    with database.read() as conn:
        bodies = conn.execute(select(audit_records.c.body).order_by(audit_records.c.seq)).all()
    return [orjson.loads(body) for (body,) in bodies]


def _actions(database: Database) -> list[str]:
    return [body["detail"]["action"] for body in _audit(database)]


# -- create --------------------------------------------------------------------------------------


def test_create_stores_the_task_and_its_root_warrant(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    task, record, token = new_task(registry, budget_calls=10, budget_spend=2.5, ttl=600)
    assert token is None  # no key named yet: the agent binds one
    assert task.principal == "alice" and task.agent == AGENT
    assert task.intent == "Email Bob the invoice"
    assert task.scope == parse_scope(SCOPE)
    assert (task.budget_calls, task.budget_spend) == (10, 2.5)
    assert task.state == ACTIVE
    assert (task.created_at, task.expires_at) == (clock.now(), clock.now() + 600)
    assert registry.get(task.id) == task
    assert record == WarrantRecord(
        record.id, task.id, None, AGENT, None, task.scope, 0, clock.now(), task.expires_at
    )
    assert registry.warrants(task.id) == [record]
    assert registry.warrant(record.id) == record


def test_create_with_the_agents_key_signs_the_root_warrant(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    task, record, token = new_task(registry, agent_jkt=JKT)
    assert token is not None and record.jkt == JKT
    warrant = verified(registry, token, clock.now())
    assert (warrant.id, warrant.task_id, warrant.agent, warrant.jkt) == (
        record.id,
        task.id,
        AGENT,
        JKT,
    )
    assert warrant.scope == task.scope
    assert warrant.expires_at == task.expires_at
    assert warrant.depth == 0


def test_create_accepts_a_parsed_scope(registry: TaskRegistry) -> None:
    scope = parse_scope(SCOPE)
    task, _, _ = new_task(registry, scope=scope)
    assert task.scope == scope


def test_create_refuses_an_agent_id_not_in_canonical_form(registry: TaskRegistry) -> None:
    with pytest.raises(InvalidInputError, match="not in canonical form"):
        new_task(registry, agent="spiffe://ACME.example/agent/mailer")


def test_the_default_lifetime_applies(registry: TaskRegistry, clock: FrozenClock) -> None:
    task, _, _ = new_task(registry)
    assert task.expires_at == clock.now() + 3600
    task, _, _ = new_task(registry, ttl=86400)
    assert task.expires_at == clock.now() + 86400


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"agent": "mailer"}, ""),
        ({"agent": "https://acme.example/agent"}, ""),
        ({"intent": ""}, "a task needs an intent"),
        ({"intent": "   \n"}, "a task needs an intent"),
        ({"intent": None}, "a task needs an intent"),
        ({"intent": "x" * (MAX_INTENT_CHARS + 1)}, f"at most {MAX_INTENT_CHARS} characters"),
        ({"scope": {"tools": {}}}, "a scope names at least one tool"),
        ({"scope": {"tools": {"a": {"limits": {"x": {"max": 1}}}}}}, "unknown limit 'max'"),
        ({"budget_calls": 0}, "a call budget is a positive whole number"),
        ({"budget_calls": -3}, "a call budget is a positive whole number"),
        ({"budget_calls": True}, "a call budget is a positive whole number"),
        ({"budget_spend": 0}, "a spend budget is a positive number"),
        ({"budget_spend": -1.5}, "a spend budget is a positive number"),
        ({"budget_spend": float("nan")}, "a spend budget is a positive number"),
        ({"ttl": 0}, "a task's lifetime is more than 0 and at most 86400 seconds"),
        ({"ttl": -5}, "a task's lifetime is more than 0"),
        ({"ttl": 86401}, "at most 86400 seconds"),
        ({"ttl": float("nan")}, "a task's lifetime"),
        ({"agent_jkt": "short"}, "a key thumbprint (jkt) is 43 base64url characters"),
        ({"agent_jkt": "A" * 42 + "="}, "a key thumbprint (jkt) is 43 base64url"),
        ({"agent_jkt": "A" * 42 + "+"}, "a key thumbprint (jkt) is 43 base64url"),
        ({"agent_jkt": "A" * 42 + "é"}, "a key thumbprint (jkt) is 43 base64url"),
        ({"agent_jkt": 5}, "a key thumbprint (jkt) is 43 base64url"),
    ],
)
def test_create_validates_and_writes_nothing_when_refused(
    registry: TaskRegistry, database: Database, overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        new_task(registry, **overrides)
    assert fragment in caught.value.message
    assert registry.list() == []
    assert _generation(database) == 0
    assert _audit(database) == []


def test_create_is_audited_and_bumps_the_generation(
    registry: TaskRegistry, database: Database
) -> None:
    before = _generation(database)
    task, record, _ = new_task(registry)
    assert _generation(database) == before + 1
    [body] = _audit(database)
    assert body["kind"] == "admin" and body["outcome"] == "allow"
    assert body["agent"] == AGENT and body["task_id"] == task.id
    assert body["detail"] == {
        "action": "task.create",
        "principal": "alice",
        "warrant": record.id,
        "scope": task.scope.to_json(),
        "expires_at": task.expires_at,
    }


def test_without_an_audit_log_nothing_is_audited(
    database: Database, clock: FrozenClock, key: WarrantKey
) -> None:
    registry = TaskRegistry(database, clock, key=key, issuer=ISSUER, audience=AUDIENCE)
    task, _, _ = new_task(registry)
    registry.complete(task.id, actor="alice")
    assert _audit(database) == []
    assert _generation(database) == 2


def test_the_scope_is_stored_in_canonical_form(registry: TaskRegistry, database: Database) -> None:
    task, _, _ = new_task(registry)
    with database.read() as conn:
        stored = conn.execute(select(tasks.c.scope).where(tasks.c.id == task.id)).scalar_one()
    assert orjson.loads(stored) == task.scope.to_json()
    assert list(orjson.loads(stored)["tools"]) == ["search", "send"]


def test_get_an_unknown_task(registry: TaskRegistry) -> None:
    with pytest.raises(NotFoundError, match="task 'nope' not found"):
        registry.get("nope")
    with pytest.raises(NotFoundError):
        registry.warrant("nope")
    assert registry.warrants("nope") == []


# -- describe ------------------------------------------------------------------------------------


def test_describe_a_task_and_a_warrant(registry: TaskRegistry, clock: FrozenClock) -> None:
    task, record, _ = new_task(registry, budget_calls=3, ttl=100)
    assert task.describe(clock.now()) == {
        "id": task.id,
        "principal": "alice",
        "agent": AGENT,
        "intent": "Email Bob the invoice",
        "scope": task.scope.to_json(),
        "budget": {"calls": 3, "spend": None},
        "state": "active",
        "created_at": clock.now(),
        "expires_at": clock.now() + 100,
        "ended_at": None,
        "end_reason": None,
    }
    assert task.describe(clock.now() + 100)["state"] == "expired"
    assert record.describe() == {
        "id": record.id,
        "task_id": task.id,
        "parent_id": None,
        "agent": AGENT,
        "jkt": None,
        "scope": task.scope.to_json(),
        "depth": 0,
        "issued_at": clock.now(),
        "expires_at": task.expires_at,
        "revoked_at": None,
    }


def test_status_reads_an_active_task_past_its_expiry_as_expired(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    task, _, _ = new_task(registry, ttl=100)
    assert task.status(clock.now() + 99.9) == ACTIVE
    assert task.status(clock.now() + 100) == EXPIRED
    done = registry.complete(task.id, actor="alice")
    assert done.status(clock.now() + 1000) == COMPLETED


# -- list ----------------------------------------------------------------------------------------


def test_list_newest_first_with_filters(registry: TaskRegistry, clock: FrozenClock) -> None:
    first, _, _ = new_task(registry, ttl=100)
    clock.advance(1)
    second, _, _ = new_task(registry, principal="bob", agent=HELPER)
    clock.advance(1)
    third, _, _ = new_task(registry)
    clock.advance(1)
    fourth, _, _ = new_task(registry)
    registry.complete(third.id, actor="alice")
    registry.revoke(fourth.id, actor="alice", reason="no longer needed")
    clock.advance(100)  # the first has expired

    def ids(**filters: Any) -> list[str]:
        return [task.id for task in registry.list(**filters)]

    assert ids() == [fourth.id, third.id, second.id, first.id]
    assert ids(principal="alice") == [fourth.id, third.id, first.id]
    assert ids(principal="bob") == [second.id]
    assert ids(agent=HELPER) == [second.id]
    assert ids(agent=AGENT, principal="bob") == []
    assert ids(state=ACTIVE) == [second.id]
    assert ids(state=EXPIRED) == [first.id]
    assert ids(state=COMPLETED) == [third.id]
    assert ids(state=REVOKED) == [fourth.id]
    assert ids(limit=2) == [fourth.id, third.id]
    assert ids(state="unknown") == []
    states = {task.id: task.status(clock.now()) for task in registry.list()}
    assert states == {
        first.id: EXPIRED,
        second.id: ACTIVE,
        third.id: COMPLETED,
        fourth.id: REVOKED,
    }


# -- complete and revoke -------------------------------------------------------------------------


def test_complete_ends_an_active_task(
    registry: TaskRegistry, clock: FrozenClock, database: Database
) -> None:
    task, _, _ = new_task(registry)
    clock.advance(5)
    before = _generation(database)
    done = registry.complete(task.id, actor="alice")
    assert done.state == COMPLETED
    assert done.ended_at == clock.now()
    assert done.end_reason is None
    assert registry.get(task.id) == done
    assert _generation(database) == before + 1
    assert _actions(database) == ["task.create", "task.complete"]
    assert _audit(database)[-1]["detail"] == {"action": "task.complete", "principal": "alice"}


def test_revoke_ends_an_active_task_with_a_reason(
    registry: TaskRegistry, clock: FrozenClock, database: Database
) -> None:
    task, _, _ = new_task(registry)
    revoked = registry.revoke(task.id, actor="admin", reason="compromised")
    assert revoked.state == REVOKED
    assert revoked.ended_at == clock.now()
    assert revoked.end_reason == "compromised"
    assert _audit(database)[-1]["detail"] == {
        "action": "task.revoke",
        "principal": "admin",
        "reason": "compromised",
    }


@pytest.mark.parametrize(
    ("first", "second", "fragment"),
    [
        ("complete", "complete", "is completed, not active"),
        ("complete", "revoke", "is completed, not active"),
        ("revoke", "revoke", "is revoked, not active"),
        ("revoke", "complete", "is revoked, not active"),
    ],
)
def test_an_ended_task_cannot_end_again(
    registry: TaskRegistry, database: Database, first: str, second: str, fragment: str
) -> None:
    task, _, _ = new_task(registry)
    getattr(registry, first)(task.id, actor="alice")
    audited = len(_audit(database))
    with pytest.raises(ConflictError) as caught:
        getattr(registry, second)(task.id, actor="alice")
    assert fragment in caught.value.message
    assert len(_audit(database)) == audited


def test_an_expired_task_cannot_be_completed_but_can_be_revoked(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    task, _, _ = new_task(registry, ttl=60)
    clock.advance(60)
    with pytest.raises(ConflictError, match="is expired, not active"):
        registry.complete(task.id, actor="alice")
    assert registry.revoke(task.id, actor="alice").state == REVOKED


def test_ending_an_unknown_task(registry: TaskRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.complete("nope", actor="alice")
    with pytest.raises(NotFoundError):
        registry.revoke("nope", actor="alice")


def test_a_reason_has_a_length_limit(registry: TaskRegistry) -> None:
    task, record, _ = new_task(registry)
    with pytest.raises(InvalidInputError, match=f"at most {MAX_REASON_CHARS} characters"):
        registry.revoke(task.id, actor="alice", reason="x" * (MAX_REASON_CHARS + 1))
    with pytest.raises(InvalidInputError, match=f"at most {MAX_REASON_CHARS} characters"):
        registry.revoke_warrant(record.id, actor="alice", reason="x" * (MAX_REASON_CHARS + 1))
    assert registry.get(task.id).state == ACTIVE


# -- bind ----------------------------------------------------------------------------------------


def test_bind_the_root_warrant_by_task_id(
    registry: TaskRegistry, clock: FrozenClock, database: Database
) -> None:
    task, record, _ = new_task(registry)
    issued = registry.bind(agent=AGENT, jkt=JKT, task_id=task.id)
    assert isinstance(issued, Issued)
    assert issued.record.id == record.id and issued.record.jkt == JKT
    warrant = verified(registry, issued.token, clock.now())
    assert (warrant.id, warrant.jkt, warrant.chain, warrant.actors) == (record.id, JKT, (), ())
    assert registry.warrant(record.id).jkt == JKT
    assert _audit(database)[-1]["detail"] == {
        "action": "warrant.bind",
        "principal": AGENT,
        "warrant": record.id,
        "jkt": JKT,
    }


def test_bind_by_warrant_id(registry: TaskRegistry) -> None:
    task, record, _ = new_task(registry)
    issued = registry.bind(agent=AGENT, jkt=JKT, task_id=task.id, warrant_id=record.id)
    assert issued.record.id == record.id


def test_rebinding_changes_the_key_and_keeps_the_id_scope_and_expiry(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    task, record, _ = new_task(registry)
    first = registry.bind(agent=AGENT, jkt=JKT, task_id=task.id)
    clock.advance(30)
    second = registry.bind(agent=AGENT, jkt=JKT2, task_id=task.id)
    assert second.record.id == first.record.id == record.id
    assert second.record.jkt == JKT2
    assert second.token != first.token
    warrant = verified(registry, second.token, clock.now())
    assert warrant.jkt == JKT2
    assert warrant.expires_at == task.expires_at
    assert warrant.scope == task.scope
    assert warrant.issued_at == clock.now()


def test_bind_refusals(registry: TaskRegistry, clock: FrozenClock) -> None:
    task, record, _ = new_task(registry)
    other, other_record, _ = new_task(registry, agent=HELPER)
    with pytest.raises(NotFoundError):
        registry.bind(agent=AGENT, jkt=JKT, task_id="nope")
    with pytest.raises(NotFoundError):
        registry.bind(agent=AGENT, jkt=JKT, task_id=task.id, warrant_id="nope")
    with pytest.raises(NotFoundError, match="of task"):
        registry.bind(agent=HELPER, jkt=JKT, task_id=task.id, warrant_id=other_record.id)
    with pytest.raises(ConflictError, match=f"is not for {HELPER}"):
        registry.bind(agent=HELPER, jkt=JKT, task_id=task.id)
    with pytest.raises(InvalidInputError, match="key thumbprint"):
        registry.bind(agent=AGENT, jkt="nope", task_id=task.id)
    assert registry.warrant(record.id).jkt is None
    assert other.agent == HELPER


def test_bind_needs_an_active_task(registry: TaskRegistry, clock: FrozenClock) -> None:
    completed, _, _ = new_task(registry)
    registry.complete(completed.id, actor="alice")
    with pytest.raises(ConflictError, match="is completed, not active"):
        registry.bind(agent=AGENT, jkt=JKT, task_id=completed.id)
    expiring, _, _ = new_task(registry, ttl=60)
    clock.advance(60)
    with pytest.raises(ConflictError, match="is expired, not active"):
        registry.bind(agent=AGENT, jkt=JKT, task_id=expiring.id)


def test_bind_a_revoked_warrant_is_refused(registry: TaskRegistry) -> None:
    task, record, _ = new_task(registry)
    registry.revoke_warrant(record.id, actor="alice")
    with pytest.raises(ConflictError, match=f"warrant {record.id} is revoked"):
        registry.bind(agent=AGENT, jkt=JKT, task_id=task.id)


# -- delegate ------------------------------------------------------------------------------------


def root_warrant(registry: TaskRegistry, clock: FrozenClock, **overrides: Any) -> tokens.Warrant:
    task, _, _ = new_task(registry, **overrides)
    return verified(
        registry, registry.bind(agent=AGENT, jkt=JKT, task_id=task.id).token, clock.now()
    )


def test_delegate_a_narrower_warrant(
    registry: TaskRegistry, clock: FrozenClock, database: Database
) -> None:
    parent = root_warrant(registry, clock)
    clock.advance(10)
    record, token = registry.delegate(
        parent, agent=HELPER, scope={"tools": {"send": {"limits": {"amount": {"maximum": 10}}}}}
    )
    assert token is None  # the helper binds it with its own SVID
    assert record.parent_id == parent.id
    assert (record.task_id, record.agent, record.depth) == (parent.task_id, HELPER, 1)
    assert record.expires_at == parent.expires_at
    assert record.issued_at == clock.now()
    assert set(record.scope.tools) == {"send"}
    assert record.scope.tools["send"].limits["/amount"].maximum == 10
    assert record.scope.tools["send"].limits["/to"].domains == ("acme.example",)
    assert [w.id for w in registry.warrants(parent.task_id)] == [parent.id, record.id]
    body = _audit(database)[-1]
    assert body["agent"] == AGENT  # the task's agent
    assert body["detail"] == {
        "action": "warrant.delegate",
        "principal": AGENT,
        "warrant": record.id,
        "parent": parent.id,
        "to": HELPER,
        "depth": 1,
        "scope": record.scope.to_json(),
        "expires_at": record.expires_at,
    }
    # The helper binds it and gets a token naming the chain.
    issued = registry.bind(agent=HELPER, jkt=JKT2, task_id=parent.task_id, warrant_id=record.id)
    child = verified(registry, issued.token, clock.now())
    assert (child.chain, child.actors, child.depth) == ((parent.id,), (AGENT,), 1)
    assert child.scope == record.scope


def test_delegate_with_the_sub_agents_key_signs_at_once(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    parent = root_warrant(registry, clock)
    record, token = registry.delegate(parent, agent=HELPER, jkt=JKT2, ttl=60)
    assert token is not None and record.jkt == JKT2
    child = verified(registry, token, clock.now())
    assert child.expires_at == clock.now() + 60
    assert child.scope == parent.scope  # no scope asked: the parent's
    assert child.actors == (AGENT,)
    # And further down: the chain grows root first, the actors nearest first.
    grand_record, grand_token = registry.delegate(child, agent=WORKER, jkt=JKT3)
    assert grand_token is not None
    grand = verified(registry, grand_token, clock.now())
    assert grand.chain == (parent.id, child.id)
    assert grand.actors == (HELPER, AGENT)
    assert grand_record.depth == 2
    rebound = registry.bind(
        agent=WORKER, jkt=JKT, task_id=parent.task_id, warrant_id=grand_record.id
    )
    again = verified(registry, rebound.token, clock.now())
    assert (again.chain, again.actors) == (grand.chain, grand.actors)


def test_a_delegated_warrant_cannot_outlive_its_parent(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    parent = root_warrant(registry, clock, ttl=600)
    clock.advance(100)
    with pytest.raises(InvalidInputError, match="would outlive the parent warrant"):
        registry.delegate(parent, agent=HELPER, ttl=501)
    record, _ = registry.delegate(parent, agent=HELPER, ttl=500)
    assert record.expires_at == parent.expires_at
    for ttl in (0, -1):
        with pytest.raises(InvalidInputError, match="lifetime must be positive"):
            registry.delegate(parent, agent=HELPER, ttl=ttl)


def test_the_depth_limit(registry: TaskRegistry, clock: FrozenClock) -> None:
    parent = root_warrant(registry, clock)
    _, token = registry.delegate(parent, agent=HELPER, jkt=JKT2)
    assert token is not None
    child = verified(registry, token, clock.now())
    _, token = registry.delegate(child, agent=WORKER, jkt=JKT3)
    assert token is not None
    grand = verified(registry, token, clock.now())
    assert grand.depth == registry.max_depth == 2
    with pytest.raises(InvalidInputError, match="delegation depth 3 is beyond the limit of 2"):
        registry.delegate(grand, agent=AGENT)


def test_no_delegation_at_depth_limit_zero(
    database: Database, clock: FrozenClock, key: WarrantKey
) -> None:
    registry = TaskRegistry(database, clock, key=key, issuer=ISSUER, audience=AUDIENCE, max_depth=0)
    parent = root_warrant(registry, clock)
    with pytest.raises(InvalidInputError, match="delegation depth 1 is beyond the limit of 0"):
        registry.delegate(parent, agent=HELPER)


def test_delegation_cannot_widen(registry: TaskRegistry, clock: FrozenClock) -> None:
    parent = root_warrant(registry, clock)
    with pytest.raises(InvalidInputError, match="delegation adds tool 'delete'"):
        registry.delegate(parent, agent=HELPER, scope={"tools": {"delete": {}}})
    with pytest.raises(InvalidInputError, match="maximum is above the parent's 100"):
        registry.delegate(
            parent,
            agent=HELPER,
            scope={"tools": {"send": {"limits": {"amount": {"maximum": 1000}}}}},
        )
    with pytest.raises(InvalidInputError, match="a scope names at least one tool"):
        registry.delegate(parent, agent=HELPER, scope={"tools": {}})
    with pytest.raises(InvalidInputError):
        registry.delegate(parent, agent="helper")
    with pytest.raises(InvalidInputError, match="key thumbprint"):
        registry.delegate(parent, agent=HELPER, jkt="short")
    assert len(registry.warrants(parent.task_id)) == 1


def test_delegate_accepts_a_parsed_scope(registry: TaskRegistry, clock: FrozenClock) -> None:
    parent = root_warrant(registry, clock)
    record, _ = registry.delegate(
        parent, agent=HELPER, scope=parse_scope({"tools": {"search": {}}})
    )
    assert set(record.scope.tools) == {"search"}


def test_delegate_needs_an_active_task_and_an_unrevoked_parent(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    parent = root_warrant(registry, clock)
    registry.revoke_warrant(parent.id, actor="alice")
    with pytest.raises(ConflictError, match=f"warrant {parent.id} is revoked"):
        registry.delegate(parent, agent=HELPER)
    other = root_warrant(registry, clock)
    registry.complete(other.task_id, actor="alice")
    with pytest.raises(ConflictError, match="is completed, not active"):
        registry.delegate(other, agent=HELPER)


def test_delegating_below_a_revoked_ancestor_is_refused(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    parent = root_warrant(registry, clock)
    _, token = registry.delegate(parent, agent=HELPER, jkt=JKT2)
    assert token is not None
    child = verified(registry, token, clock.now())
    registry.revoke_warrant(parent.id, actor="alice")
    with pytest.raises(ConflictError, match="is revoked"):
        registry.delegate(child, agent=WORKER)


def test_an_expired_delegated_warrant_cannot_be_bound(
    registry: TaskRegistry, clock: FrozenClock
) -> None:
    parent = root_warrant(registry, clock)
    record, _ = registry.delegate(parent, agent=HELPER, ttl=10)
    clock.advance(10)
    with pytest.raises(ConflictError, match="has expired"):
        registry.bind(agent=HELPER, jkt=JKT2, task_id=parent.task_id, warrant_id=record.id)


# -- revoke_warrant ------------------------------------------------------------------------------


def test_revoke_warrant_cascades_below_and_nowhere_else(
    registry: TaskRegistry, clock: FrozenClock, database: Database
) -> None:
    root = root_warrant(registry, clock)
    _, token = registry.delegate(root, agent=HELPER, jkt=JKT2)
    assert token is not None
    child = verified(registry, token, clock.now())
    grand, _ = registry.delegate(child, agent=WORKER)
    sibling, _ = registry.delegate(root, agent=WORKER)
    unrelated = root_warrant(registry, clock)
    clock.advance(5)
    before = _generation(database)
    revoked = registry.revoke_warrant(child.id, actor="alice", reason="helper misbehaved")
    assert sorted(revoked) == sorted([child.id, grand.id])
    assert revoked[0] == child.id
    assert _generation(database) == before + 1
    states = {w.id: w.revoked_at for w in registry.warrants(root.task_id)}
    assert states == {root.id: None, child.id: clock.now(), grand.id: clock.now(), sibling.id: None}
    assert registry.warrant(unrelated.id).revoked_at is None
    body = _audit(database)[-1]
    assert body["task_id"] == root.task_id
    assert body["detail"] == {
        "action": "warrant.revoke",
        "principal": "alice",
        "warrants": revoked,
        "reason": "helper misbehaved",
    }
    # Revoking the root now takes the rest, and keeps the earlier revocation time.
    clock.advance(5)
    everything = registry.revoke_warrant(root.id, actor="alice")
    assert set(everything) == {root.id, child.id, grand.id, sibling.id}
    assert registry.warrant(child.id).revoked_at == clock.now() - 5
    assert registry.warrant(sibling.id).revoked_at == clock.now()


def test_revoke_an_unknown_warrant(registry: TaskRegistry, database: Database) -> None:
    with pytest.raises(NotFoundError):
        registry.revoke_warrant("nope", actor="alice")
    assert _audit(database) == []


# -- from_settings -------------------------------------------------------------------------------


def test_from_settings_creates_the_key_and_names_the_issuer(tmp_path: Path) -> None:
    from ztgate.testing import make_settings

    settings: Settings = make_settings(
        tmp_path,
        '[identity]\ntrust_domain = "acme.example"\n'
        "[warrants]\nmax_delegation_depth = 1\ndefault_task_ttl_seconds = 120\n"
        "max_task_ttl_seconds = 240\n",
    )
    database = settings.open_database()
    try:
        database.migrate()
        registry = TaskRegistry.from_settings(settings, database, SystemClock())
        path = settings.path(settings.warrants.signing_key)
        assert path.is_file() and path.stat().st_mode & 0o077 == 0
        assert registry.issuer == "spiffe://acme.example/ztgate" == issuer_for("acme.example")
        assert registry.audience == settings.gateway.audience
        assert (registry.max_depth, registry.default_ttl, registry.max_ttl) == (1, 120, 240)
        assert TaskRegistry.from_settings(settings, database, SystemClock()).key.kid == (
            registry.key.kid
        )
        task, _, _ = new_task(registry)
        assert task.expires_at - task.created_at == 120
    finally:
        database.dispose()


def test_scope_type_is_kept(registry: TaskRegistry) -> None:
    task, _, _ = new_task(registry)
    assert isinstance(registry.get(task.id).scope, Scope)
