"""Console sessions: only the token's hash stored, absolute and idle expiry, logout, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ztgate.console.sessions import (
    TOUCH_SECONDS,
    SessionStore,
    csrf_matches,
    csrf_token,
    token_digest,
)
from ztgate.store.database import Database
from ztgate.store.tables import console_sessions
from ztgate.testing import FrozenClock

JWK = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'z.db'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(database: Database, clock: FrozenClock) -> SessionStore:
    return SessionStore(database, clock, lifetime=3600, idle=600)


def test_a_session_is_found_by_its_token_which_is_stored_hashed(
    store: SessionStore, database: Database
) -> None:
    session, token = store.create("alice", JWK, "thumb")
    assert len(token) == 43
    found = store.find(token)
    assert found is not None
    assert (found.id, found.principal, found.key_thumbprint) == (session.id, "alice", "thumb")
    assert dict(found.public_jwk) == JWK
    with database.read() as conn:
        (stored,) = conn.execute(select(console_sessions.c.token_sha256)).scalars()
    assert stored == token_digest(token) and token not in stored
    assert store.find(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.find(None) is None and store.find("short") is None


def test_sessions_end_at_expiry_after_idling_and_at_logout(
    store: SessionStore, clock: FrozenClock
) -> None:
    _, token = store.create("alice", JWK, "t")
    for _ in range(10):  # used every 5 minutes: alive until the absolute expiry
        clock.advance(300)
        if clock.now() >= 1_800_000_000.0 + 3600:
            break
        assert store.find(token) is not None
    clock.advance(3600)
    assert store.find(token) is None
    _, idle = store.create("alice", JWK, "t")
    clock.advance(600)
    assert store.find(idle) is None
    _, gone = store.create("alice", JWK, "t")
    store.end(gone)
    assert store.find(gone) is None


def test_last_seen_is_written_only_every_so_often(store: SessionStore, clock: FrozenClock) -> None:
    session, token = store.create("alice", JWK, "t")
    clock.advance(TOUCH_SECONDS / 2)
    assert store.find(token) is not None
    clock.advance(TOUCH_SECONDS)
    found = store.find(token)
    assert found is not None and found.last_seen_at == clock.now()
    assert session.expires_at == session.created_at + 3600


def test_the_csrf_token_is_the_sessions_own() -> None:
    token = "a" * 43
    assert csrf_matches(token, csrf_token(token))
    assert not csrf_matches(token, csrf_token("b" * 43))
    assert not csrf_matches(token, "")
    assert not csrf_matches(token, None)
    assert csrf_token(token) != token
