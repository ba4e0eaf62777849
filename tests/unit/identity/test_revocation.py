"""Revocations: durable, audited with the change, generation-bumped, snapshotted in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from ztgate.audit import AuditLog
from ztgate.errors import InvalidInputError, NotFoundError
from ztgate.identity.entries import EntryRegistry
from ztgate.identity.revocation import (
    ENTRY,
    GENERATION,
    SERIAL,
    SPIFFE_ID,
    LiveRevocations,
    RevocationRegistry,
    RevocationSet,
    parse_serial,
    retention_for,
    serial_text,
)
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import audit_records, revocations
from ztgate.testing import FrozenClock, make_settings

AGENT = "spiffe://ztgate.local/agent/mailer"
OTHER = "spiffe://ztgate.local/agent/other"
RETENTION = 630.0


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind)


@pytest.fixture
def audit(database: Database, clock: FrozenClock) -> AuditLog:
    return AuditLog(database, clock)


@pytest.fixture
def registry(database: Database, clock: FrozenClock, audit: AuditLog) -> RevocationRegistry:
    return RevocationRegistry(database, clock, retention=RETENTION, audit=audit)


@pytest.fixture
def entries(database: Database, clock: FrozenClock) -> EntryRegistry:
    return EntryRegistry(database, clock, "ztgate.local")


@pytest.fixture
def live(database: Database, clock: FrozenClock) -> Iterator[LiveRevocations]:
    provider = LiveRevocations(database, clock)
    yield provider
    provider.close()


def _generation(database: Database) -> int:
    with database.read() as conn:
        return generations.read_all(conn).get(GENERATION, 0)


def _audit_details(database: Database) -> list[dict[str, Any]]:
    import orjson

    with database.read() as conn:
        bodies = conn.execute(select(audit_records.c.body).order_by(audit_records.c.seq)).all()
    return [orjson.loads(body)["detail"] for (body,) in bodies]


def test_revoke_agent_is_stored_until_the_longest_svid_has_expired(
    registry: RevocationRegistry, database: Database, clock: FrozenClock
) -> None:
    [row] = registry.revoke_agent(AGENT, reason="key leaked")
    assert (row.kind, row.value, row.reason) == (SPIFFE_ID, AGENT, "key leaked")
    assert row.created_at == clock.now()
    assert row.expires_at == clock.now() + RETENTION
    assert registry.list() == [row]
    assert registry.is_revoked(AGENT)
    assert not registry.is_revoked(OTHER)
    with database.read() as conn:
        assert conn.execute(select(revocations.c.value)).scalars().all() == [AGENT]


def test_every_revocation_bumps_the_generation_and_is_audited_in_the_same_transaction(
    registry: RevocationRegistry, database: Database
) -> None:
    before = _generation(database)
    registry.revoke_agent(AGENT, reason="why")
    registry.revoke_serial("0xabc")
    assert _generation(database) == before + 2
    details = _audit_details(database)
    assert [d["action"] for d in details] == ["revocation.revoke", "revocation.revoke"]
    assert details[0]["value"] == AGENT and details[0]["reason"] == "why"
    assert details[1]["revoked_kind"] == SERIAL and details[1]["value"] == "abc"


def test_a_failed_revocation_writes_nothing(
    registry: RevocationRegistry, database: Database
) -> None:
    with pytest.raises(NotFoundError):
        registry.revoke_entry("0123456789abcdef")
    assert registry.list(include_expired=True) == []
    assert _generation(database) == 0
    assert _audit_details(database) == []


def test_revoking_an_entry_also_revokes_its_spiffe_id(
    registry: RevocationRegistry, entries: EntryRegistry
) -> None:
    entry = entries.register(AGENT, ["unix:uid:1000"])
    rows = registry.revoke_entry(entry.id, reason="decommissioned")
    assert [(r.kind, r.value) for r in rows] == [(ENTRY, entry.id), (SPIFFE_ID, AGENT)]
    assert "decommissioned" in rows[1].reason
    snapshot = registry.snapshot()
    assert entry.id in snapshot.entries
    assert snapshot.is_revoked(AGENT)


def test_serials_are_stored_as_hex_and_matched_as_numbers(registry: RevocationRegistry) -> None:
    [row] = registry.revoke_serial("3A:4F")
    assert row.value == "3a4f"
    assert registry.is_revoked(OTHER, 0x3A4F)
    assert not registry.is_revoked(OTHER, 0x3A4E)
    assert not registry.is_revoked(OTHER)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1234", 1234),
        ("0x1234", 0x1234),
        ("ab12", 0xAB12),
        ("AB:12", 0xAB12),
        (" 0XFF ", 255),
        (77, 77),
        ("1" * 48, int("1" * 48)),
    ],
)
def test_parse_serial(text: str | int, value: int) -> None:
    assert parse_serial(text) == value
    assert int(serial_text(value), 16) == value


@pytest.mark.parametrize("text", ["", "0", "-5", "0xzz", "12g", "0x", "f" * 41, True, 1.5])
def test_parse_serial_refuses(text: Any) -> None:
    with pytest.raises(InvalidInputError):
        parse_serial(text)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (SPIFFE_ID, "spiffe://ZTGATE.local/agent"),
        (SPIFFE_ID, "not a spiffe id"),
        (SERIAL, "nope"),
        ("agent", AGENT),
    ],
)
def test_bad_input_is_refused(registry: RevocationRegistry, kind: str, value: str) -> None:
    with pytest.raises(InvalidInputError):
        registry.revoke(kind, value)


def test_entry_ids_that_cannot_exist_are_not_found(registry: RevocationRegistry) -> None:
    with pytest.raises(NotFoundError):
        registry.revoke_entry("'; drop table revocations; --")


def test_a_given_expiry_is_kept_and_must_be_in_the_future(
    registry: RevocationRegistry, clock: FrozenClock
) -> None:
    [row] = registry.revoke(SPIFFE_ID, AGENT, expires_at=clock.now() + 5)
    assert row.expires_at == clock.now() + 5
    with pytest.raises(InvalidInputError):
        registry.revoke(SPIFFE_ID, AGENT, expires_at=clock.now())
    with pytest.raises(InvalidInputError):
        registry.revoke(SPIFFE_ID, AGENT, reason="x" * 1001)


def test_retention_must_be_positive(database: Database, clock: FrozenClock) -> None:
    with pytest.raises(InvalidInputError):
        RevocationRegistry(database, clock, retention=0)


def test_expired_revocations_are_hidden_then_purged(
    registry: RevocationRegistry, database: Database, clock: FrozenClock
) -> None:
    registry.revoke_agent(AGENT)
    clock.advance(RETENTION / 2)
    registry.revoke_agent(OTHER)
    assert registry.purge_expired() == 0
    clock.advance(RETENTION / 2)
    assert [r.value for r in registry.list()] == [OTHER]
    assert [r.value for r in registry.list(include_expired=True)] == [AGENT, OTHER]
    assert not registry.is_revoked(AGENT)
    before = _generation(database)
    assert registry.purge_expired() == 1
    assert _generation(database) == before + 1
    assert [r.value for r in registry.list(include_expired=True)] == [OTHER]
    assert _audit_details(database)[-1]["action"] == "revocation.purge"


def test_retention_is_the_longest_svid_lifetime_plus_the_skew(tmp_path: Any) -> None:
    identity = make_settings(tmp_path).identity
    expected = max(identity.x509_svid_ttl_seconds, identity.jwt_svid_ttl_seconds)
    assert retention_for(identity) == expected + identity.clock_skew_seconds


def test_revocation_set() -> None:
    empty = RevocationSet()
    assert not empty.is_revoked(AGENT, 5) and len(empty) == 0
    assert empty.why(AGENT, 5) is None
    revoked = RevocationSet(frozenset({AGENT}), frozenset({0xAB}), frozenset({"e1"}))
    assert len(revoked) == 3
    assert revoked.is_revoked(AGENT) and revoked.is_revoked(OTHER, 0xAB)
    assert not revoked.is_revoked(OTHER, 0xAC)
    assert revoked.why(AGENT) == f"{AGENT} is revoked"
    assert "serial ab" in (revoked.why(OTHER, 0xAB) or "")


def test_live_revocations_reload_only_when_the_generation_moves(
    live: LiveRevocations, database: Database, clock: FrozenClock
) -> None:
    first = live()
    assert len(first) == 0
    assert live() is first  # unchanged: the same object
    # Written through another registry (as the CLI does, in another process).
    RevocationRegistry(database, clock, retention=RETENTION).revoke_agent(AGENT)
    second = live()
    assert second is not first
    assert second.is_revoked(AGENT)
    assert live() is second
    assert live.reload() is not second
