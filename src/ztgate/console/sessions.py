"""Console sessions: a random token in a cookie, only its SHA-256 in the database.

A session is made at login for one principal and one browser key (the
public JWK of a non-extractable ECDSA P-256 key the login page generated;
decisions are signed with it, see `signatures.py`). It ends at its absolute
expiry, after an idle timeout, or at logout (the row is deleted). The CSRF
token of a session is derived from its secret token, so nothing more is
stored: HMAC-SHA256(token, "ztgate console csrf").
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from ztgate.clock import Clock
from ztgate.ids import time_ordered_id
from ztgate.store.database import Database
from ztgate.store.tables import console_sessions as table
from ztgate.warrants.jwk import b64url

COOKIE = "ztgate_console"
# How stale `last_seen_at` may get before a request writes it again: the
# idle timeout is this much coarser, and most requests write nothing.
TOUCH_SECONDS = 30.0
_TOKEN_CHARS = 43  # base64url of 32 random bytes


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in browser."""

    id: str
    principal: str
    key_thumbprint: str
    public_jwk: Mapping[str, Any]
    created_at: float
    last_seen_at: float
    expires_at: float


def token_digest(token: str) -> str:
    """The SHA-256 (hex) a session's token is stored as."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose cookie token is `token`."""
    mac = hmac.new(token.encode(), b"ztgate console csrf", hashlib.sha256).digest()
    return b64url(mac)


def csrf_matches(token: str, presented: str | None) -> bool:
    """True if `presented` is the session's CSRF token (compared in constant time)."""
    if not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(csrf_token(token).encode(), presented.encode())


class SessionStore:
    """The console_sessions table."""

    def __init__(self, database: Database, clock: Clock, *, lifetime: float, idle: float) -> None:
        """Sessions live `lifetime` seconds at most and end after `idle` seconds unused."""
        self._database = database
        self._clock = clock
        self.lifetime = lifetime
        self.idle = idle

    def create(
        self, principal: str, jwk: Mapping[str, str], thumbprint: str
    ) -> tuple[Session, str]:
        """A new session for `principal` bound to the browser key `jwk`: it and its cookie token."""
        now = self._clock.now()
        token = secrets.token_urlsafe(32)
        session = Session(
            id=time_ordered_id(),
            principal=principal,
            key_thumbprint=thumbprint,
            public_jwk=dict(jwk),
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
        )
        with self._database.write() as conn:
            # Sessions that ended are removed as new ones begin.
            conn.execute(delete(table).where(table.c.expires_at <= now))
            conn.execute(delete(table).where(table.c.last_seen_at <= now - self.idle))
            conn.execute(
                insert(table).values(
                    token_sha256=token_digest(token),
                    id=session.id,
                    principal=principal,
                    key_thumbprint=thumbprint,
                    public_jwk=orjson.dumps(session.public_jwk).decode(),
                    created_at=now,
                    last_seen_at=now,
                    expires_at=session.expires_at,
                )
            )
        return session, token

    def find(self, token: str | None) -> Session | None:
        """The live session whose cookie token is `token`, or None (expired or idle: deleted)."""
        if not isinstance(token, str) or len(token) != _TOKEN_CHARS or not token.isascii():
            return None
        digest = token_digest(token)
        now = self._clock.now()
        with self._database.read() as conn:
            row = conn.execute(select(table).where(table.c.token_sha256 == digest)).mappings()
            found = row.first()
        if found is None:
            return None
        if now >= found["expires_at"] or now - found["last_seen_at"] >= self.idle:
            self.end(token)
            return None
        if now - found["last_seen_at"] >= TOUCH_SECONDS:
            with self._database.write() as conn:
                conn.execute(
                    update(table).where(table.c.token_sha256 == digest).values(last_seen_at=now)
                )
        return Session(
            id=found["id"],
            principal=found["principal"],
            key_thumbprint=found["key_thumbprint"],
            public_jwk=orjson.loads(found["public_jwk"]),
            created_at=found["created_at"],
            last_seen_at=max(found["last_seen_at"], now),
            expires_at=found["expires_at"],
        )

    def end(self, token: str) -> None:
        """Delete the session of `token` (logout)."""
        with self._database.write() as conn:
            conn.execute(delete(table).where(table.c.token_sha256 == token_digest(token)))
