"""Revocations: refuse an agent, a certificate or a registration entry from the next call on.

Three kinds, each stored as one row of the `revocations` table:

    spiffe_id   every SVID naming this SPIFFE ID (any trust domain)
    serial      one X.509-SVID, by its serial number (lower-case hex, no leading zeros)
    entry       a registration entry; revoking one also revokes its SPIFFE ID
                (a second row, in the same transaction)

A revocation is kept until every credential it covers has expired: by default
`expires_at = now + retention`, where `retention` is the longest SVID lifetime
plus the allowed clock skew (`retention_for`). Past that, no credential issued
before the revocation can still verify, and `purge_expired` deletes the row.
Note what this means for a SPIFFE ID whose registration entry still exists:
SVIDs issued to it *after* the revocation expires verify again. To bar an
agent for good, remove its entry (`ztgate agents remove`) too.

Every change bumps the "revocations" generation and, when an audit log is
given, appends an admin record in the same transaction: both commit or neither
does. The hot path reads an in-memory `RevocationSet` snapshot, which
`LiveRevocations` reloads when the generation moves.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.engine import RowMapping

from ztgate.audit import AuditEntry, AuditLog
from ztgate.clock import Clock
from ztgate.errors import InvalidInputError, NotFoundError
from ztgate.identity.spiffe_id import parse_spiffe_id
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.generations import GenerationWatcher
from ztgate.store.tables import registration_entries as entries_table
from ztgate.store.tables import revocations as revocations_table

if TYPE_CHECKING:
    from ztgate.config import IdentitySettings

GENERATION = "revocations"
SPIFFE_ID = "spiffe_id"
SERIAL = "serial"
ENTRY = "entry"
KINDS = (SPIFFE_ID, SERIAL, ENTRY)

_MAX_SERIAL = (1 << 160) - 1  # RFC 5280, 4.1.2.2: at most 20 octets
_HEX = re.compile(r"[0-9a-f]+")
_DECIMAL = re.compile(r"[0-9]+")
_ENTRY_ID = re.compile(r"[0-9A-Za-z_-]{1,32}")
_MAX_REASON = 1000


@dataclass(frozen=True, slots=True)
class Revocation:
    """One stored revocation."""

    id: str
    kind: str  # SPIFFE_ID, SERIAL or ENTRY
    value: str
    reason: str
    created_at: float
    expires_at: float

    def describe(self) -> dict[str, Any]:
        """The revocation as plain JSON."""
        return {
            "id": self.id,
            "kind": self.kind,
            "value": self.value,
            "reason": self.reason,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
        }


def retention_for(identity: IdentitySettings) -> float:
    """How long a revocation must be kept: the longest SVID lifetime plus the clock skew."""
    return float(
        max(identity.x509_svid_ttl_seconds, identity.jwt_svid_ttl_seconds)
        + identity.clock_skew_seconds
    )


def parse_serial(text: str | int) -> int:
    """A certificate serial number from decimal or hex.

    Hex is recognised by a `0x` prefix, by `:` separators (`3a:4f:...`, as
    openssl prints it) or by any of the letters a-f; a string of digits only
    is read as decimal, so write an all-digit hex serial with `0x`.

    Raises:
        InvalidInputError: not a positive serial number of at most 20 octets.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str):
        cleaned = text.strip().lower()
        digits = cleaned.removeprefix("0x").replace(":", "")
        is_hex = cleaned.startswith("0x") or ":" in cleaned or not _DECIMAL.fullmatch(digits)
        if is_hex and _HEX.fullmatch(digits) and len(digits) <= 64:
            value = int(digits, 16)
        elif not is_hex and len(digits) <= 64:
            value = int(digits)
        else:
            raise InvalidInputError(
                f"invalid serial {text[:80]!r}: use decimal digits, or hex (0x..., aa:bb:...)"
            )
    else:
        raise InvalidInputError("a serial number must be a string or an integer")
    if not 0 < value <= _MAX_SERIAL:
        raise InvalidInputError("a certificate serial number is positive and at most 20 octets")
    return value


def serial_text(serial: int) -> str:
    """The stored form of a serial number: lower-case hex without leading zeros."""
    return format(serial, "x")


@dataclass(frozen=True, slots=True)
class RevocationSet:
    """An in-memory snapshot of the active revocations, for the hot path.

    Immutable: a change produces a new set, so a holder can tell by identity
    (`is`) that the revocations changed.
    """

    spiffe_ids: frozenset[str] = frozenset()
    serials: frozenset[int] = frozenset()
    entries: frozenset[str] = frozenset()
    loaded_at: float = 0.0

    @classmethod
    def of(cls, revocations: Iterable[Revocation], *, loaded_at: float = 0.0) -> RevocationSet:
        """The set holding `revocations` (expired or not: pass only the active ones)."""
        ids: set[str] = set()
        serials: set[int] = set()
        entries: set[str] = set()
        for revocation in revocations:
            if revocation.kind == SPIFFE_ID:
                ids.add(revocation.value)
            elif revocation.kind == SERIAL:
                serials.add(int(revocation.value, 16))
            elif revocation.kind == ENTRY:
                entries.add(revocation.value)
        return cls(frozenset(ids), frozenset(serials), frozenset(entries), loaded_at)

    def is_revoked(self, spiffe_id: str, serial: int | None = None) -> bool:
        """True if `spiffe_id`, or the certificate with `serial`, is revoked."""
        return spiffe_id in self.spiffe_ids or (serial is not None and serial in self.serials)

    def why(self, spiffe_id: str, serial: int | None = None) -> str | None:
        """A short reason for the caller if revoked (never the operator's note), else None."""
        if spiffe_id in self.spiffe_ids:
            return f"{spiffe_id} is revoked"
        if serial is not None and serial in self.serials:
            return f"the certificate with serial {serial_text(serial)} is revoked"
        return None

    def __len__(self) -> int:
        return len(self.spiffe_ids) + len(self.serials) + len(self.entries)


class RevocationRegistry:
    """The revocations table, behind methods that validate, audit and bump."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        *,
        retention: float,
        audit: AuditLog | None = None,
    ) -> None:
        """`retention`: seconds a revocation is kept by default (see `retention_for`)."""
        if not retention > 0:
            raise InvalidInputError("revocation retention must be positive")
        self._database = database
        self._clock = clock
        self._retention = retention
        self._audit = audit

    # -- writes ------------------------------------------------------------------

    def revoke(
        self,
        kind: str,
        value: str | int,
        *,
        reason: str = "",
        expires_at: float | None = None,
        actor: str = "local",
    ) -> builtins.list[Revocation]:
        """Revoke a SPIFFE ID, a serial or an entry; returns the rows written.

        `actor` is the principal doing it (the local operator on the command line).

        Revoking an entry writes two rows: the entry's and its SPIFFE ID's.

        Raises:
            InvalidInputError: an unknown kind, a malformed value, a reason too
                long, or an expiry not in the future.
            NotFoundError: the entry does not exist.
        """
        now = self._clock.now()
        if len(reason) > _MAX_REASON:
            raise InvalidInputError(f"a reason has at most {_MAX_REASON} characters")
        until = now + self._retention if expires_at is None else float(expires_at)
        if not until > now:
            raise InvalidInputError("a revocation must expire in the future")
        if kind == SPIFFE_ID:
            canonical = str(parse_spiffe_id(str(value)))
        elif kind == SERIAL:
            canonical = serial_text(parse_serial(value))
        elif kind == ENTRY:
            canonical = str(value)
            if not _ENTRY_ID.fullmatch(canonical):
                raise NotFoundError("registration entry", canonical[:80])
        else:
            raise InvalidInputError(f"unknown revocation kind {kind!r}: use one of {KINDS}")
        with self._database.write() as conn:
            rows = [self._row(kind, canonical, reason, now, until)]
            if kind == ENTRY:
                found = conn.execute(
                    select(entries_table.c.spiffe_id).where(entries_table.c.id == canonical)
                ).first()
                if found is None:
                    raise NotFoundError("registration entry", canonical)
                note = f"entry {canonical} revoked" + (f": {reason}" if reason else "")
                rows.append(self._row(SPIFFE_ID, found[0], note[:_MAX_REASON], now, until))
            for row in rows:
                conn.execute(insert(revocations_table).values(**row.describe()))
            generations.bump(conn, GENERATION)
            self._record(conn, "revoke", rows, actor)
        return rows

    def revoke_agent(self, spiffe_id: str, *, reason: str = "") -> builtins.list[Revocation]:
        """Revoke every SVID naming `spiffe_id`."""
        return self.revoke(SPIFFE_ID, spiffe_id, reason=reason)

    def revoke_serial(self, serial: str | int, *, reason: str = "") -> builtins.list[Revocation]:
        """Revoke one X.509-SVID by its serial number (int, decimal or hex text)."""
        return self.revoke(SERIAL, serial, reason=reason)

    def revoke_entry(self, entry_id: str, *, reason: str = "") -> builtins.list[Revocation]:
        """Revoke a registration entry and its SPIFFE ID."""
        return self.revoke(ENTRY, entry_id, reason=reason)

    def purge_expired(self) -> int:
        """Delete the revocations whose credentials have all expired; how many were."""
        now = self._clock.now()
        with self._database.write() as conn:
            expired = _select(conn, revocations_table.c.expires_at <= now)
            if not expired:
                return 0
            conn.execute(delete(revocations_table).where(revocations_table.c.expires_at <= now))
            generations.bump(conn, GENERATION)
            self._record(conn, "purge", expired, "ztgate")
        return len(expired)

    # -- reads -------------------------------------------------------------------

    def list(self, *, include_expired: bool = False) -> builtins.list[Revocation]:
        """The revocations, oldest first (only the active ones unless asked)."""
        where = None if include_expired else revocations_table.c.expires_at > self._clock.now()
        with self._database.read() as conn:
            return _select(conn, where)

    def is_revoked(self, spiffe_id: str, serial: int | None = None) -> bool:
        """True if `spiffe_id`, or the certificate with `serial`, is revoked now (reads the DB)."""
        return self.snapshot().is_revoked(spiffe_id, serial)

    def snapshot(self) -> RevocationSet:
        """The active revocations, in memory."""
        return RevocationSet.of(self.list(), loaded_at=self._clock.now())

    # -- internals ---------------------------------------------------------------

    @staticmethod
    def _row(kind: str, value: str, reason: str, now: float, until: float) -> Revocation:
        return Revocation(secrets.token_hex(8), kind, value, reason, now, until)

    def _record(
        self, conn: Connection, action: str, rows: Sequence[Revocation], actor: str
    ) -> None:
        if self._audit is None:
            return
        entries = [
            AuditEntry(
                kind="admin",
                outcome="allow",
                agent=row.value if row.kind == SPIFFE_ID else None,
                detail={
                    "action": f"revocation.{action}",
                    "principal": actor,
                    "revocation": row.id,
                    "revoked_kind": row.kind,
                    "value": row.value,
                    "reason": row.reason,
                    "expires_at": row.expires_at,
                },
            )
            for row in rows
        ]
        self._audit.append_within(conn, entries)


class LiveRevocations:
    """A provider of the current `RevocationSet`: reloads it when the generation moves.

    Call it (no arguments) before each decision; on SQLite the usual cost is
    one `PRAGMA data_version` on its own connection. The set it returns is the
    same object until something changed, so a cache keyed on it can tell.
    """

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock
        self._watcher = GenerationWatcher(database)
        self._watcher.prime()
        self._current = self._load()

    def __call__(self) -> RevocationSet:
        """The current revocations (reloaded if they changed since the last call)."""
        if GENERATION in self._watcher.changed():
            self._current = self._load()
        return self._current

    def reload(self) -> RevocationSet:
        """Reload unconditionally."""
        self._current = self._load()
        return self._current

    def close(self) -> None:
        """Close the watcher's connection."""
        self._watcher.close()

    def _load(self) -> RevocationSet:
        now = self._clock.now()
        with self._database.read() as conn:
            active = _select(conn, revocations_table.c.expires_at > now)
        return RevocationSet.of(active, loaded_at=now)


def _select(conn: Connection, where: Any) -> builtins.list[Revocation]:
    query = select(revocations_table).order_by(
        revocations_table.c.created_at, revocations_table.c.id
    )
    if where is not None:
        query = query.where(where)
    return [_from_row(row) for row in conn.execute(query).mappings()]


def _from_row(row: RowMapping) -> Revocation:
    return Revocation(
        id=row["id"],
        kind=row["kind"],
        value=row["value"],
        reason=row["reason"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )
