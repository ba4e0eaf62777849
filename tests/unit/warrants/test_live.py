"""The live task view: task states and revoked warrants, reloaded from the store."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from ztgate.errors import StoreError
from ztgate.store.database import Database
from ztgate.tasks.registry import TaskRegistry, issuer_for
from ztgate.tasks.scope import parse_scope
from ztgate.testing import FrozenClock
from ztgate.warrants import token as tokens
from ztgate.warrants.keys import WarrantKey, load_or_create
from ztgate.warrants.live import LiveTasks, TaskSnapshot
from ztgate.warrants.token import Warrant

AGENT = "spiffe://acme.example/agent/mailer"
HELPER = "spiffe://acme.example/agent/helper"
ISSUER = issuer_for("acme.example")
JKT = "A" * 43
SCOPE = {"tools": {"send": {}}}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> WarrantKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "warrant.pem")


@pytest.fixture
def registry(database: Database, clock: FrozenClock, key: WarrantKey) -> TaskRegistry:
    return TaskRegistry(database, clock, key=key, issuer=ISSUER, audience="ztgate")


@pytest.fixture
def live(database: Database, clock: FrozenClock) -> LiveTasks:
    return LiveTasks(database, clock)


def bound(registry: TaskRegistry, clock: FrozenClock, ttl: float = 600) -> Warrant:
    _, _, token = registry.create(
        principal="alice", agent=AGENT, intent="do it", scope=SCOPE, ttl=ttl, agent_jkt=JKT
    )
    assert token is not None
    return tokens.verify(
        token,
        {registry.key.kid: registry.key.public_key},
        issuer=ISSUER,
        audience="ztgate",
        now=clock.now(),
    )


def delegated(registry: TaskRegistry, clock: FrozenClock, parent: Warrant) -> Warrant:
    _, token = registry.delegate(parent, agent=HELPER, jkt=JKT)
    assert token is not None
    return tokens.verify(
        token,
        {registry.key.kid: registry.key.public_key},
        issuer=ISSUER,
        audience="ztgate",
        now=clock.now(),
    )


def fake_warrant(task_id: str = "t", warrant_id: str = "w", chain: tuple[str, ...] = ()) -> Warrant:
    return Warrant(
        id=warrant_id,
        task_id=task_id,
        agent=AGENT,
        scope=parse_scope(SCOPE),
        jkt=JKT,
        issued_at=0,
        expires_at=10**10,
        chain=chain,
        actors=tuple(AGENT for _ in chain),
    )


# -- the snapshot alone --------------------------------------------------------------------------


def test_an_empty_snapshot_refuses_everything() -> None:
    assert TaskSnapshot().refusal(fake_warrant(), 0) == "task t is unknown or has expired"


def test_snapshot_refusals_in_order() -> None:
    snapshot = TaskSnapshot(
        MappingProxyType({"t": ("active", 100.0), "done": ("completed", 100.0)}),
        frozenset({"revoked-root"}),
    )
    assert snapshot.refusal(fake_warrant(), 50) is None
    assert snapshot.refusal(fake_warrant("done"), 50) == "task done is completed"
    assert snapshot.refusal(fake_warrant(), 100) == "task t has expired"
    assert snapshot.refusal(fake_warrant(), 150) == "task t has expired"
    assert snapshot.refusal(fake_warrant(warrant_id="revoked-root"), 50) == (
        "this warrant (revoked-root) is revoked"
    )
    below = fake_warrant(warrant_id="w2", chain=("revoked-root", "w1"))
    assert snapshot.refusal(below, 50) == "a warrant above it (revoked-root) is revoked"


# -- reloaded from the store ---------------------------------------------------------------------


def test_nothing_is_read_before_reload(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    warrant = bound(registry, clock)
    assert live.snapshot.refusal(warrant, clock.now()) is not None
    snapshot = live.reload()
    assert live.snapshot is snapshot
    assert snapshot.refusal(warrant, clock.now()) is None


def test_reload_sees_active_completed_and_revoked_tasks(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    active = bound(registry, clock)
    completed = bound(registry, clock)
    revoked = bound(registry, clock)
    registry.complete(completed.task_id, actor="alice")
    registry.revoke(revoked.task_id, actor="alice")
    snapshot = live.reload()
    assert snapshot.states[active.task_id][0] == "active"
    assert snapshot.refusal(active, clock.now()) is None
    assert snapshot.refusal(completed, clock.now()) == f"task {completed.task_id} is completed"
    assert snapshot.refusal(revoked, clock.now()) == f"task {revoked.task_id} is revoked"


def test_a_change_is_seen_only_after_the_next_reload(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    warrant = bound(registry, clock)
    live.reload()
    registry.complete(warrant.task_id, actor="alice")
    assert live.snapshot.refusal(warrant, clock.now()) is None  # stale until reloaded
    live.reload()
    assert live.snapshot.refusal(warrant, clock.now()) == f"task {warrant.task_id} is completed"


def test_expired_tasks_are_left_out(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    short = bound(registry, clock, ttl=60)
    long = bound(registry, clock, ttl=600)
    snapshot = live.reload()
    clock.advance(60)
    # The old snapshot still knows the task, and refuses it by its expiry.
    assert snapshot.refusal(short, clock.now()) == f"task {short.task_id} has expired"
    again = live.reload()
    assert short.task_id not in again.states
    assert again.refusal(short, clock.now()) == f"task {short.task_id} is unknown or has expired"
    assert again.refusal(long, clock.now()) is None


def test_revoked_warrants_and_their_descendants(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    root = bound(registry, clock)
    child = delegated(registry, clock, root)
    other = bound(registry, clock)
    registry.revoke_warrant(root.id, actor="alice")
    snapshot = live.reload()
    assert snapshot.revoked == {root.id, child.id}
    assert snapshot.refusal(root, clock.now()) == f"this warrant ({root.id}) is revoked"
    # Caught twice over: its own revocation comes first in the lineage order.
    assert "is revoked" in (snapshot.refusal(child, clock.now()) or "")
    assert snapshot.refusal(other, clock.now()) is None


def test_a_revoked_ancestor_alone_refuses_a_descendant(
    registry: TaskRegistry, clock: FrozenClock, live: LiveTasks
) -> None:
    root = bound(registry, clock)
    child = delegated(registry, clock, root)
    snapshot = live.reload()
    forged = TaskSnapshot(snapshot.states, frozenset({root.id}))
    assert forged.refusal(child, clock.now()) == f"a warrant above it ({root.id}) is revoked"


def test_revoked_warrants_past_their_expiry_are_forgotten(
    live: LiveTasks, registry: TaskRegistry, clock: FrozenClock
) -> None:
    warrant = bound(registry, clock, ttl=60)
    registry.revoke_warrant(warrant.id, actor="alice")
    assert live.reload().revoked == {warrant.id}
    clock.advance(60)
    assert live.reload().revoked == frozenset()


def test_an_unreadable_store_raises(
    live: LiveTasks, database: Database, request: pytest.FixtureRequest
) -> None:
    database.dispose()
    path = database.engine.url.database
    assert path is not None
    if database.is_sqlite:
        import os

        os.remove(path)
        os.makedirs(path)  # a directory where the database file was
    else:
        request.getfixturevalue("postgres_server").drop_database(path)
    with pytest.raises(StoreError):
        live.reload()
