"""Registration entries: validation, matching, join tokens, generations and audit records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from ztgate.audit.log import AuditLog
from ztgate.audit.reader import AuditReader
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.identity.entries import (
    JOIN_TOKEN,
    EntryRegistry,
    hash_token,
    matching,
    parse_selector,
)
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import registration_entries
from ztgate.testing import FrozenClock

DOMAIN = "acme.example"
AGENT = "spiffe://acme.example/agent/mailer"
HASH = "ab" * 32


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind)


@pytest.fixture
def registry(database: Database, clock: FrozenClock) -> EntryRegistry:
    return EntryRegistry(database, clock, DOMAIN, audit=AuditLog(database, clock))


def _admin(database: Database) -> list[dict[str, Any]]:
    bodies = [orjson.loads(r.body) for r in AuditReader(database).records("main")]
    return [b for b in bodies if b["kind"] == "admin"]


def _generation(database: Database) -> int:
    with database.read() as conn:
        return generations.read_all(conn).get("entries", 0)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("unix:uid:1000", "unix:uid:1000"),
        ("unix:gid:0", "unix:gid:0"),
        ("unix:path:/usr/bin/python3", "unix:path:/usr/bin/python3"),
        ("unix:sha256:" + HASH.upper(), "unix:sha256:" + HASH),
    ],
)
def test_selectors_parse_to_a_canonical_form(text: str, canonical: str) -> None:
    assert parse_selector(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "uid:1000",
        "unix:uid:",
        "unix:uid:-1",
        "unix:uid:01",
        "unix:uid:99999999999",
        "unix:path:relative/bin",
        "unix:sha256:abc",
        "unix:pid:12",
        "k8s:ns:default",
    ],
)
def test_bad_selectors_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_selector(text)


def test_register_list_get_remove_bumps_and_audits(
    registry: EntryRegistry, database: Database
) -> None:
    entry = registry.register(AGENT, ["unix:uid:1000", "unix:path:/bin/agent"], owner="alice")
    assert entry.selectors == ("unix:path:/bin/agent", "unix:uid:1000")
    assert registry.list() == [entry]
    assert registry.get(entry.id) == entry
    assert _generation(database) == 1
    registry.remove(entry.id)
    assert registry.list() == []
    assert _generation(database) == 2
    actions = [(r["detail"]["action"], r["agent"], r["detail"]["entry"]) for r in _admin(database)]
    assert actions == [("agent.register", AGENT, entry.id), ("agent.remove", AGENT, entry.id)]
    with pytest.raises(NotFoundError):
        registry.get(entry.id)
    with pytest.raises(NotFoundError):
        registry.remove(entry.id)


@pytest.mark.parametrize(
    "spiffe_id",
    [
        "spiffe://other.example/agent/mailer",
        "spiffe://acme.example",
        "spiffe://ACME.example/agent",
        "not a spiffe id",
    ],
)
def test_spiffe_ids_outside_the_domain_or_without_a_path_are_refused(
    registry: EntryRegistry, spiffe_id: str
) -> None:
    with pytest.raises(InvalidInputError):
        registry.register(spiffe_id, ["unix:uid:1"])


def test_an_entry_needs_selectors_and_duplicates_conflict(registry: EntryRegistry) -> None:
    with pytest.raises(InvalidInputError):
        registry.register(AGENT, [])
    registry.register(AGENT, ["unix:uid:1", "unix:gid:2"])
    with pytest.raises(ConflictError):
        registry.register(AGENT, ["unix:gid:2", "unix:uid:1"])
    registry.register(AGENT, ["unix:uid:1"])  # a different set is a different entry


def test_match_requires_every_selector(registry: EntryRegistry, clock: FrozenClock) -> None:
    both = registry.register(AGENT, ["unix:uid:1000", "unix:sha256:" + HASH])
    clock.advance(1)  # matches are listed oldest first: the first is the default SVID
    uid_only = registry.register("spiffe://acme.example/agent/any", ["unix:uid:1000"])
    registry.register("spiffe://acme.example/agent/root", ["unix:uid:0"])
    presented = {"unix:uid:1000", "unix:gid:1000", "unix:sha256:" + HASH, "unix:path:/x"}
    assert registry.match(presented) == [both, uid_only]
    assert registry.match({"unix:uid:1000", "unix:sha256:" + "cd" * 32}) == [uid_only]
    assert registry.match(set()) == []


def test_join_tokens_never_match_selectors(registry: EntryRegistry) -> None:
    entry, _ = registry.register_join_token(AGENT)
    assert entry.kind == JOIN_TOKEN
    assert matching([entry], {"unix:uid:0"}) == []


def test_join_token_is_stored_hashed_and_consumed_once(
    registry: EntryRegistry, database: Database
) -> None:
    entry, token = registry.register_join_token(AGENT, owner="ops")
    with database.read() as conn:
        rows = conn.execute(registration_entries.select()).mappings().all()
    assert token not in repr(rows)
    assert rows[0]["token_sha256"] == hash_token(token)
    used = registry.consume_join_token(token)
    assert used is not None
    assert used.id == entry.id
    assert used.consumed_at is not None
    assert registry.consume_join_token(token) is None  # a reused token is refused
    assert registry.get(entry.id).consumed_at == used.consumed_at
    outcomes = [(r["detail"]["action"], r["outcome"]) for r in _admin(database)]
    assert outcomes == [
        ("agent.register", "allow"),
        ("agent.join", "allow"),
        ("agent.join", "deny"),
    ]
    assert token not in repr(_admin(database))


def test_unknown_and_expired_join_tokens_are_refused(
    registry: EntryRegistry, clock: FrozenClock
) -> None:
    _, token = registry.register_join_token(AGENT, ttl=60)
    assert registry.consume_join_token("not-the-token") is None
    clock.advance(61)
    assert registry.consume_join_token(token) is None
    with pytest.raises(InvalidInputError):
        registry.register_join_token(AGENT, ttl=0)


def test_without_an_audit_log_nothing_is_recorded(database: Database, clock: FrozenClock) -> None:
    registry = EntryRegistry(database, clock, DOMAIN)
    registry.register(AGENT, ["unix:uid:1"])
    assert _admin(database) == []
