"""Registration entries: which calling processes receive which SPIFFE IDs.

The model is SPIRE's. An entry names a SPIFFE ID in the local trust domain and
the selectors a process must ALL present (as attested from its Unix socket
peer credentials) to receive it:

    unix:uid:<n>          the process's user id
    unix:gid:<n>          its primary group id
    unix:path:<path>      the absolute path of its executable
    unix:sha256:<hex>     the SHA-256 of its executable

Or it is a one-time join token: a random secret shown once at creation, kept
only as its SHA-256, compared in constant time and consumed by its first use.

Every change bumps the "entries" generation and, when an audit log is given,
appends an admin record in the same transaction: both commit or neither does.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import RowMapping

from ztgate.audit import AuditEntry, AuditLog
from ztgate.clock import Clock
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.identity.spiffe_id import parse_spiffe_id, parse_trust_domain
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import registration_entries as entries_table

GENERATION = "entries"
SELECTORS = "selectors"
JOIN_TOKEN = "join_token"  # noqa: S105 - a kind of entry, not a secret
DEFAULT_JOIN_TOKEN_TTL = 3600.0

_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,9})$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_SELECTORS = 32


@dataclass(frozen=True, slots=True)
class RegistrationEntry:
    """One registration: a SPIFFE ID and how its holder is recognised."""

    id: str
    spiffe_id: str
    owner: str
    kind: str  # SELECTORS or JOIN_TOKEN
    selectors: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    consumed_at: float | None = None

    def matches(self, presented: frozenset[str]) -> bool:
        """True if this is a selector entry and `presented` holds every one of its selectors."""
        return self.kind == SELECTORS and bool(self.selectors) and presented >= set(self.selectors)

    def describe(self) -> dict[str, Any]:
        """The entry as plain JSON (never a token: only its hash is stored)."""
        return {
            "id": self.id,
            "spiffe_id": self.spiffe_id,
            "owner": self.owner,
            "kind": self.kind,
            "selectors": list(self.selectors),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "consumed_at": self.consumed_at,
        }


def parse_selector(text: str) -> str:
    """The canonical spelling of a selector.

    Raises:
        InvalidInputError: not one of the supported `unix:` selectors.
    """
    kind, _, value = text.removeprefix("unix:").partition(":")
    if not text.startswith("unix:") or not value:
        raise InvalidInputError(
            f"invalid selector {text!r}: use unix:uid:<n>, unix:gid:<n>, "
            "unix:path:<absolute path> or unix:sha256:<hex>"
        )
    if kind in ("uid", "gid"):
        if not _NUMBER.match(value) or int(value) > 0xFFFFFFFF:
            raise InvalidInputError(f"invalid selector {text!r}: {kind} must be a number")
    elif kind == "path":
        if not value.startswith("/") or "\x00" in value or len(value) > 4096:
            raise InvalidInputError(f"invalid selector {text!r}: the path must be absolute")
    elif kind == "sha256":
        value = value.lower()
        if not _SHA256.match(value):
            raise InvalidInputError(f"invalid selector {text!r}: sha256 needs 64 hex digits")
    else:
        raise InvalidInputError(f"unknown selector type {kind!r} in {text!r}")
    return f"unix:{kind}:{value}"


def matching(
    entries: Iterable[RegistrationEntry], presented: Iterable[str]
) -> list[RegistrationEntry]:
    """The selector entries whose selectors are all in `presented`, oldest first."""
    have = frozenset(presented)
    return sorted((e for e in entries if e.matches(have)), key=lambda e: (e.created_at, e.id))


def hash_token(token: str) -> str:
    """The stored form of a join token."""
    return hashlib.sha256(token.encode()).hexdigest()


class EntryRegistry:
    """The registration entries table, behind methods that validate, audit and bump."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        trust_domain: str,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._trust_domain = parse_trust_domain(trust_domain).name
        self._audit = audit

    # -- writes ------------------------------------------------------------------

    def register(
        self, spiffe_id: str, selectors: Sequence[str], *, owner: str = ""
    ) -> RegistrationEntry:
        """Register `spiffe_id` for processes presenting every one of `selectors`.

        Raises:
            InvalidInputError: a bad SPIFFE ID (foreign, no path) or selector, or none.
            ConflictError: the same SPIFFE ID is already registered with the same selectors.
        """
        self._check_spiffe_id(spiffe_id)
        canonical = tuple(sorted({parse_selector(s) for s in selectors}))
        if not canonical:
            raise InvalidInputError("an entry needs at least one selector (or --join-token)")
        if len(canonical) > _MAX_SELECTORS:
            raise InvalidInputError(f"an entry has at most {_MAX_SELECTORS} selectors")
        entry = RegistrationEntry(
            id=secrets.token_hex(8),
            spiffe_id=spiffe_id,
            owner=owner,
            kind=SELECTORS,
            selectors=canonical,
            created_at=self._clock.now(),
        )
        with self._database.write() as conn:
            for existing in _select(conn, entries_table.c.spiffe_id == spiffe_id):
                if existing.kind == SELECTORS and existing.selectors == canonical:
                    raise ConflictError(
                        f"{spiffe_id} is already registered with these selectors "
                        f"(entry {existing.id})"
                    )
            self._insert(conn, entry, None, "agent.register")
        return entry

    def register_join_token(
        self, spiffe_id: str, *, owner: str = "", ttl: float = DEFAULT_JOIN_TOKEN_TTL
    ) -> tuple[RegistrationEntry, str]:
        """Register `spiffe_id` behind a new one-time join token.

        Returns the entry and the token; the token is not stored and cannot be
        shown again.

        Raises:
            InvalidInputError: a bad SPIFFE ID, or a non-positive `ttl`.
        """
        self._check_spiffe_id(spiffe_id)
        if not ttl > 0:
            raise InvalidInputError("a join token's lifetime must be positive")
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        entry = RegistrationEntry(
            id=secrets.token_hex(8),
            spiffe_id=spiffe_id,
            owner=owner,
            kind=JOIN_TOKEN,
            selectors=(),
            created_at=now,
            expires_at=now + ttl,
        )
        with self._database.write() as conn:
            self._insert(conn, entry, hash_token(token), "agent.register")
        return entry, token

    def remove(self, entry_id: str) -> RegistrationEntry:
        """Delete an entry; processes matching only it get no SVID from the next refresh.

        Raises:
            NotFoundError: no such entry.
        """
        with self._database.write() as conn:
            found = _select(conn, entries_table.c.id == entry_id)
            if not found:
                raise NotFoundError("registration entry", entry_id)
            conn.execute(delete(entries_table).where(entries_table.c.id == entry_id))
            generations.bump(conn, GENERATION)
            self._record(conn, found[0], "agent.remove", "allow")
        return found[0]

    def consume_join_token(self, token: str) -> RegistrationEntry | None:
        """The entry `token` unlocks, marked consumed; None if unknown, expired or used.

        Every pending token's hash is compared (in constant time, with no early
        exit), so the time taken does not tell how close a guess came.
        """
        presented = hash_token(token)
        now = self._clock.now()
        with self._database.write() as conn:
            rows = conn.execute(
                select(entries_table.c.id, entries_table.c.token_sha256).where(
                    entries_table.c.kind == JOIN_TOKEN, entries_table.c.consumed_at.is_(None)
                )
            ).all()
            hit: str | None = None
            for entry_id, stored in rows:
                if hmac.compare_digest(presented, stored or "") and hit is None:
                    hit = entry_id
            entry = None if hit is None else _select(conn, entries_table.c.id == hit)[0]
            if entry is None or entry.expires_at is None or entry.expires_at <= now:
                self._record(conn, entry, "agent.join", "deny")
                return None
            result = conn.execute(
                update(entries_table)
                .where(entries_table.c.id == entry.id, entries_table.c.consumed_at.is_(None))
                .values(consumed_at=now)
            )
            if result.rowcount != 1:  # consumed meanwhile by another writer
                self._record(conn, entry, "agent.join", "deny")
                return None
            generations.bump(conn, GENERATION)
            self._record(conn, entry, "agent.join", "allow")
        return RegistrationEntry(**{**_fields(entry), "consumed_at": now})

    # -- reads -------------------------------------------------------------------

    def list(self) -> list[RegistrationEntry]:
        """Every entry, oldest first."""
        with self._database.read() as conn:
            return _select(conn, None)

    def get(self, entry_id: str) -> RegistrationEntry:
        """The entry with id `entry_id`.

        Raises:
            NotFoundError: no such entry.
        """
        with self._database.read() as conn:
            found = _select(conn, entries_table.c.id == entry_id)
        if not found:
            raise NotFoundError("registration entry", entry_id)
        return found[0]

    def match(self, selectors: Iterable[str]) -> builtins.list[RegistrationEntry]:
        """The selector entries a process presenting `selectors` is entitled to."""
        return matching(self.list(), selectors)

    # -- internals ---------------------------------------------------------------

    def _check_spiffe_id(self, spiffe_id: str) -> None:
        parsed = parse_spiffe_id(spiffe_id)
        if parsed.trust_domain.name != self._trust_domain:
            raise InvalidInputError(
                f"{spiffe_id} is not in the local trust domain {self._trust_domain}"
            )
        if parsed.path in ("", "/"):
            raise InvalidInputError(f"{spiffe_id} names no workload: add a path")

    def _insert(
        self, conn: Connection, entry: RegistrationEntry, token_sha256: str | None, action: str
    ) -> None:
        row = _fields(entry) | {
            "selectors": orjson.dumps(list(entry.selectors)).decode(),
            "token_sha256": token_sha256,
        }
        conn.execute(insert(entries_table).values(**row))
        generations.bump(conn, GENERATION)
        self._record(conn, entry, action, "allow")

    def _record(
        self, conn: Connection, entry: RegistrationEntry | None, action: str, outcome: str
    ) -> None:
        if self._audit is None:
            return
        detail: dict[str, Any] = {"action": action}
        if entry is not None:
            detail |= {"entry": entry.id, "kind": entry.kind, "owner": entry.owner}
            if entry.selectors:
                detail["selectors"] = list(entry.selectors)
        audit_entry = AuditEntry(
            kind="admin",
            outcome=outcome,
            agent=None if entry is None else entry.spiffe_id,
            detail=detail,
        )
        self._audit.append_within(conn, [audit_entry])


def _fields(entry: RegistrationEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "spiffe_id": entry.spiffe_id,
        "owner": entry.owner,
        "kind": entry.kind,
        "selectors": entry.selectors,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "consumed_at": entry.consumed_at,
    }


def _select(conn: Connection, where: Any) -> list[RegistrationEntry]:
    query = select(entries_table).order_by(entries_table.c.created_at, entries_table.c.id)
    if where is not None:
        query = query.where(where)
    return [_from_row(row) for row in conn.execute(query).mappings()]


def _from_row(row: RowMapping) -> RegistrationEntry:
    return RegistrationEntry(
        id=row["id"],
        spiffe_id=row["spiffe_id"],
        owner=row["owner"],
        kind=row["kind"],
        selectors=tuple(orjson.loads(row["selectors"])),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        consumed_at=row["consumed_at"],
    )
