"""Principals and API keys: validated, audited, and authenticated only while usable."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from ztgate.audit import AuditLog
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.principals.registry import (
    ADMIN,
    APPROVER,
    KEY_PREFIX,
    ROLES,
    TASKS,
    ApiKey,
    Principal,
    PrincipalRegistry,
    parse_name,
    parse_roles,
)
from ztgate.store.database import Database
from ztgate.store.tables import api_keys, audit_records
from ztgate.testing import FrozenClock


@pytest.fixture
def audit(database: Database, clock: FrozenClock) -> AuditLog:
    return AuditLog(database, clock)


@pytest.fixture
def registry(database: Database, clock: FrozenClock, audit: AuditLog) -> PrincipalRegistry:
    return PrincipalRegistry(database, clock, audit=audit)


def _audit(database: Database) -> list[dict[str, Any]]:
    with database.read() as conn:
        bodies = conn.execute(select(audit_records.c.body).order_by(audit_records.c.seq)).all()
    return [orjson.loads(body) for (body,) in bodies]


def _details(database: Database) -> list[dict[str, Any]]:
    return [body["detail"] for body in _audit(database)]


def _split(key: str) -> tuple[str, str]:
    assert key.startswith(KEY_PREFIX)
    key_id, secret = key[len(KEY_PREFIX) :].split("_", 1)
    return key_id, secret


# -- names and roles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["alice", "a", "ci-bot", "alice@acme.example", "svc_1.prod", "0day", "a" * 64]
)
def test_valid_names(name: str) -> None:
    assert parse_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Alice", "-alice", ".alice", "_a", "a" * 65, "al ice", "alïce", "a/b", None, 5]
)
def test_invalid_names(name: Any) -> None:
    with pytest.raises(InvalidInputError, match="a principal name is 1-64 lower-case letters"):
        parse_name(name)


def test_roles_are_validated_deduplicated_and_sorted() -> None:
    assert parse_roles(["tasks", "admin", "tasks"]) == ("admin", "tasks")
    assert parse_roles([]) == ()
    assert set(ROLES) == {ADMIN, TASKS, APPROVER}
    with pytest.raises(InvalidInputError, match="unknown role 'root': use admin, tasks, approver"):
        parse_roles(["tasks", "root"])


def test_admin_implies_every_role_and_a_disabled_principal_has_none() -> None:
    admin = Principal("root", "human", (ADMIN,), 0.0)
    assert all(admin.has(role) for role in ROLES)
    tasks = Principal("bot", "system", (TASKS,), 0.0)
    assert tasks.has(TASKS) and not tasks.has(ADMIN) and not tasks.has(APPROVER)
    assert not Principal("x", "human", (), 0.0).has(TASKS)
    disabled = Principal("root", "human", (ADMIN,), 0.0, disabled_at=1.0)
    assert not any(disabled.has(role) for role in ROLES)


# -- principals ----------------------------------------------------------------------------------


def test_add_get_find_and_list(registry: PrincipalRegistry, clock: FrozenClock) -> None:
    bob = registry.add("bob", roles=["tasks"], kind="system")
    assert bob == Principal("bob", "system", ("tasks",), clock.now())
    alice = registry.add("alice", roles=["admin", "approver"])
    assert alice.kind == "human" and alice.roles == ("admin", "approver")
    assert registry.get("bob") == bob
    assert registry.find("alice") == alice
    assert registry.find("nobody") is None
    assert registry.list() == [alice, bob]
    with pytest.raises(NotFoundError, match="principal 'nobody' not found"):
        registry.get("nobody")


def test_describe(registry: PrincipalRegistry, clock: FrozenClock) -> None:
    principal = registry.add("bob", roles=["tasks"])
    assert principal.describe() == {
        "name": "bob",
        "kind": "human",
        "roles": ["tasks"],
        "created_at": clock.now(),
        "disabled_at": None,
    }


def test_add_refuses_a_taken_name_a_bad_kind_or_role(
    registry: PrincipalRegistry, database: Database
) -> None:
    registry.add("bob")
    with pytest.raises(ConflictError, match="principal 'bob' already exists"):
        registry.add("bob", roles=["admin"])
    with pytest.raises(InvalidInputError, match="unknown principal kind 'robot'"):
        registry.add("carol", kind="robot")
    with pytest.raises(InvalidInputError, match="unknown role"):
        registry.add("carol", roles=["superuser"])
    with pytest.raises(InvalidInputError):
        registry.add("Carol")
    assert [p.name for p in registry.list()] == ["bob"]
    assert registry.get("bob").roles == ()
    assert len(_audit(database)) == 1


def test_ensure_adds_once(registry: PrincipalRegistry) -> None:
    first = registry.ensure("admin", roles=["admin"])
    again = registry.ensure("admin", roles=["tasks"])
    assert first == again
    assert again.roles == ("admin",)


def test_disable_and_enable(registry: PrincipalRegistry, clock: FrozenClock) -> None:
    registry.add("bob", roles=["tasks"])
    clock.advance(5)
    disabled = registry.set_disabled("bob", True, actor="admin")
    assert disabled.disabled_at == clock.now()
    assert not disabled.has(TASKS)
    assert registry.get("bob").disabled_at == clock.now()
    enabled = registry.set_disabled("bob", False, actor="admin")
    assert enabled.disabled_at is None and enabled.has(TASKS)
    with pytest.raises(NotFoundError):
        registry.set_disabled("nobody", True)


def test_every_change_is_audited(
    registry: PrincipalRegistry, database: Database, clock: FrozenClock
) -> None:
    registry.add("bob", roles=["tasks"], actor="admin")
    record, _ = registry.create_key("bob", ttl=60, actor="admin")
    registry.revoke_key(record.id, actor="admin")
    registry.set_disabled("bob", True, actor="admin")
    registry.set_disabled("bob", False, actor="admin")
    bodies = _audit(database)
    assert all(b["kind"] == "admin" and b["outcome"] == "allow" for b in bodies)
    details = [b["detail"] for b in bodies]
    assert [d["action"] for d in details] == [
        "principal.add",
        "api_key.create",
        "api_key.revoke",
        "principal.disable",
        "principal.enable",
    ]
    assert all(d["principal"] == "admin" for d in details)
    assert details[0]["name"] == "bob" and details[0]["roles"] == ["tasks"]
    # "principal" is who acted; the key's principal is its "owner".
    assert details[1] == {
        "action": "api_key.create",
        "principal": "admin",
        "owner": "bob",
        "id": record.id,
        "created_at": clock.now(),
        "expires_at": clock.now() + 60,
        "revoked_at": None,
    }
    assert details[2] == {
        "action": "api_key.revoke",
        "principal": "admin",
        "owner": "bob",
        "id": record.id,
    }
    assert details[3] == {"action": "principal.disable", "principal": "admin", "name": "bob"}


def test_the_audit_never_holds_a_secret(registry: PrincipalRegistry, database: Database) -> None:
    registry.add("bob")
    _, key = registry.create_key("bob")
    _, secret = _split(key)
    with database.read() as conn:
        bodies = conn.execute(select(audit_records.c.body)).scalars().all()
    assert not any(secret in body for body in bodies)
    assert not any(hashlib.sha256(secret.encode()).hexdigest() in body for body in bodies)


def test_without_an_audit_log_nothing_is_audited(database: Database, clock: FrozenClock) -> None:
    registry = PrincipalRegistry(database, clock)
    registry.add("bob")
    registry.create_key("bob")
    assert _audit(database) == []


# -- API keys ------------------------------------------------------------------------------------


def test_create_key_shows_the_whole_key_once_and_stores_only_its_hash(
    registry: PrincipalRegistry, database: Database, clock: FrozenClock
) -> None:
    registry.add("bob", roles=["tasks"])
    record, key = registry.create_key("bob")
    assert record == ApiKey(record.id, "bob", clock.now(), None, None)
    key_id, secret = _split(key)
    assert key_id == record.id and len(key_id) == 16
    assert len(secret) == 43
    with database.read() as conn:
        row = conn.execute(select(api_keys)).mappings().one()
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row))
    assert registry.keys() == [record]
    assert record.describe() == {
        "id": record.id,
        "principal": "bob",
        "created_at": clock.now(),
        "expires_at": None,
        "revoked_at": None,
    }


def test_create_key_refusals(registry: PrincipalRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.create_key("nobody")
    registry.add("bob")
    for ttl in (0, -1.0):
        with pytest.raises(InvalidInputError, match="lifetime must be positive"):
            registry.create_key("bob", ttl=ttl)
    assert registry.keys() == []


def test_keys_are_listed_oldest_first_per_principal(
    registry: PrincipalRegistry, clock: FrozenClock
) -> None:
    registry.add("bob")
    registry.add("carol")
    first, _ = registry.create_key("bob")
    clock.advance(1)
    second, _ = registry.create_key("carol")
    clock.advance(1)
    third, _ = registry.create_key("bob")
    assert registry.keys() == [first, second, third]
    assert registry.keys("bob") == [first, third]
    assert registry.keys("nobody") == []


def test_every_key_is_different(registry: PrincipalRegistry) -> None:
    registry.add("bob")
    keys = {registry.create_key("bob")[1] for _ in range(10)}
    assert len(keys) == 10


def test_authenticate(registry: PrincipalRegistry) -> None:
    bob = registry.add("bob", roles=["tasks"])
    _, key = registry.create_key("bob")
    assert registry.authenticate(key) == bob
    # Several keys of one principal work side by side.
    _, other = registry.create_key("bob")
    assert registry.authenticate(other) == bob
    assert registry.authenticate(key) == bob


def test_a_wrong_secret_fails(registry: PrincipalRegistry) -> None:
    registry.add("bob")
    _, key = registry.create_key("bob")
    key_id, secret = _split(key)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    assert registry.authenticate(f"{KEY_PREFIX}{key_id}_{flipped}") is None
    # Another key's secret under this key's id.
    _, other = registry.create_key("bob")
    assert registry.authenticate(f"{KEY_PREFIX}{key_id}_{_split(other)[1]}") is None
    # This secret under an id that does not exist.
    assert registry.authenticate(f"{KEY_PREFIX}{'0' * 16}_{secret}") is None


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "ztg_",
        "ztg_0123456789abcdef",
        "ztg_0123456789abcdef_",
        "ztg_0123456789ABCDEF_" + "a" * 43,
        "ztg_0123456789abcde_" + "a" * 43,
        "ztg_0123456789abcdef_" + "a" * 42,
        "ztg_0123456789abcdef_" + "a" * 44,
        "ztg_0123456789abcdef_" + "a" * 42 + "=",
        "ztg_0123456789abcdef_" + "a" * 42 + "+",
        "xyz_0123456789abcdef_" + "a" * 43,
        " ztg_0123456789abcdef_" + "a" * 43,
        "ztg_0123456789abcdef_" + "a" * 43 + "\n",
        "Bearer ztg_0123456789abcdef_" + "a" * 43,
        None,
        5,
        b"ztg_0123456789abcdef_" + b"a" * 43,
    ],
)
def test_malformed_keys_fail(registry: PrincipalRegistry, presented: Any) -> None:
    assert registry.authenticate(presented) is None


def test_a_revoked_key_fails(registry: PrincipalRegistry, clock: FrozenClock) -> None:
    registry.add("bob")
    record, key = registry.create_key("bob")
    _, other = registry.create_key("bob")
    clock.advance(3)
    revoked = registry.revoke_key(record.id)
    assert revoked.revoked_at == clock.now()
    assert registry.authenticate(key) is None
    assert registry.authenticate(other) is not None  # only that key
    # Revoking again keeps the first revocation time.
    clock.advance(3)
    assert registry.revoke_key(record.id).revoked_at == clock.now() - 3


@pytest.mark.parametrize("key_id", ["0123456789abcdef", "nope", "0123456789ABCDEF", ""])
def test_revoke_an_unknown_key(registry: PrincipalRegistry, key_id: str) -> None:
    with pytest.raises(NotFoundError):
        registry.revoke_key(key_id)


def test_an_expired_key_fails(registry: PrincipalRegistry, clock: FrozenClock) -> None:
    registry.add("bob")
    record, key = registry.create_key("bob", ttl=60)
    assert record.expires_at == clock.now() + 60
    clock.advance(59.9)
    assert registry.authenticate(key) is not None
    clock.advance(0.1)
    assert registry.authenticate(key) is None


def test_a_disabled_principals_keys_fail_until_enabled(registry: PrincipalRegistry) -> None:
    registry.add("bob", roles=["tasks"])
    _, key = registry.create_key("bob")
    registry.set_disabled("bob", True)
    assert registry.authenticate(key) is None
    registry.set_disabled("bob", False)
    authenticated = registry.authenticate(key)
    assert authenticated is not None and authenticated.has(TASKS)


def test_the_principal_is_read_fresh_on_each_authentication(
    registry: PrincipalRegistry, database: Database
) -> None:
    from sqlalchemy import update

    from ztgate.store.tables import principals

    registry.add("bob", roles=["tasks"])
    _, key = registry.create_key("bob")
    with database.write() as conn:
        conn.execute(update(principals).where(principals.c.name == "bob").values(roles='["admin"]'))
    authenticated = registry.authenticate(key)
    assert authenticated is not None and authenticated.roles == ("admin",)


def test_a_password_is_stored_hashed_audited_and_checked(
    registry: PrincipalRegistry, database: Database
) -> None:
    from ztgate.store.tables import principals as principals_table

    registry.add("alice", roles=[APPROVER])
    assert registry.check_password("alice", "correct horse battery") is None  # none set yet
    registry.set_password("alice", "correct horse battery")
    with database.read() as conn:
        stored = conn.execute(select(principals_table.c.password_hash)).scalar_one()
        bodies = [row[0] for row in conn.execute(select(audit_records.c.body))]
    assert stored.startswith("$argon2id$")
    assert any('"principal.password"' in body for body in bodies)
    assert not any("correct horse" in body or "argon2" in body for body in bodies)
    found = registry.check_password("alice", "correct horse battery")
    assert found is not None and found.name == "alice"
    assert registry.check_password("alice", "wrong horse battery") is None
    assert registry.check_password("nobody", "correct horse battery") is None
    assert registry.check_password("Not A Name", "correct horse battery") is None
    registry.set_disabled("alice", True)
    assert registry.check_password("alice", "correct horse battery") is None


def test_setting_a_password_validates_and_ends_the_sessions(
    registry: PrincipalRegistry, database: Database
) -> None:
    from sqlalchemy import insert

    from ztgate.store.tables import console_sessions

    registry.add("alice", roles=[APPROVER])
    with pytest.raises(InvalidInputError, match="at least 12"):
        registry.set_password("alice", "short")
    with pytest.raises(NotFoundError):
        registry.set_password("nobody", "correct horse battery")
    with database.write() as conn:
        conn.execute(
            insert(console_sessions).values(
                token_sha256="a" * 64,
                id="s1",
                principal="alice",
                key_thumbprint="k",
                public_jwk="{}",
                created_at=0.0,
                last_seen_at=0.0,
                expires_at=1e12,
            )
        )
    registry.set_password("alice", "correct horse battery")
    with database.read() as conn:
        assert conn.execute(select(console_sessions)).all() == []


def test_an_approver_scope_limits_agents_and_tools(
    registry: PrincipalRegistry, database: Database
) -> None:
    from ztgate.principals.registry import ApproverScope, parse_scope

    billing = "spiffe://acme.example/agent/billing/*"
    scope = parse_scope([billing], ["payments.*"])
    alice = registry.add("alice", roles=[APPROVER], scope=scope)
    assert alice.describe()["approver_scope"] == {"agents": [billing], "tools": ["payments.*"]}
    found = registry.get("alice")
    assert found.approver_scope == scope
    assert found.may_approve("spiffe://acme.example/agent/billing/eu", "payments.send")
    assert not found.may_approve("spiffe://acme.example/agent/mailer", "payments.send")
    assert not found.may_approve("spiffe://acme.example/agent/billing/eu", "email.send")
    widened = registry.set_scope("alice", parse_scope(tools=["email.*"]))
    assert widened.may_approve("spiffe://acme.example/agent/mailer", "email.send")
    assert not widened.may_approve("spiffe://acme.example/agent/mailer", "payments.send")
    cleared = registry.set_scope("alice", ApproverScope())
    assert cleared.may_approve("spiffe://x.example/a", "anything")
    assert "approver_scope" not in cleared.describe()
    root = registry.add("root", roles=[ADMIN], scope=parse_scope(tools=["none"]))
    assert root.may_approve("spiffe://x.example/a", "anything")  # admins are not scoped
    assert not registry.add("bob", roles=[TASKS]).may_approve("spiffe://x.example/a", "t")
    with database.read() as conn:
        bodies = [row[0] for row in conn.execute(select(audit_records.c.body))]
    assert sum('"principal.scope"' in body for body in bodies) == 2
    with pytest.raises(NotFoundError):
        registry.set_scope("nobody", ApproverScope())


@pytest.mark.parametrize(
    ("agents", "tools"),
    [(["acme/agent"], []), (["spiffe://UPPER/x"], []), ([], ["bad tool"]), ([], ["x" * 200])],
)
def test_bad_scope_patterns_are_refused(agents: list[str], tools: list[str]) -> None:
    from ztgate.principals.registry import parse_scope

    with pytest.raises(InvalidInputError):
        parse_scope(agents, tools)
