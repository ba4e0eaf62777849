"""Principals and their API keys.

A principal is a human or a system on whose behalf tasks run: it creates
tasks, revokes credentials and (later) approves calls. For now principals
authenticate with API keys; OIDC comes later.

An API key reads `ztg_<id>_<secret>`: the id finds the row, the 256-bit
secret is kept only as its SHA-256 (a fast hash is enough for a random
secret of that size) and compared in constant time. The whole key is shown
once, at creation.

Roles:

    admin     everything: principals, revocations, any task
    tasks     create tasks, and complete or revoke its own
    approver  approve or reject asked calls (docs/approvals.md), optionally
              only those of some agents (SPIFFE ID patterns) or tools: the
              principal's `ApproverScope`

Every change bumps nothing on the hot path (calls never read principals) but
is recorded in the audit log in the same transaction.
"""

from __future__ import annotations

import builtins
import fnmatch
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
from ztgate.principals.passwords import hash_password, verify_password
from ztgate.store.database import Database
from ztgate.store.tables import api_keys as keys_table
from ztgate.store.tables import console_sessions as sessions_table
from ztgate.store.tables import principals as principals_table

ADMIN = "admin"
TASKS = "tasks"
APPROVER = "approver"
ROLES = (ADMIN, TASKS, APPROVER)
KINDS = ("human", "system")
KEY_PREFIX = "ztg_"

_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_KEY = re.compile(r"ztg_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_ID = re.compile(r"[0-9a-f]{16}")
_AGENT_PATTERN = re.compile(r"spiffe://[a-z0-9._*?-]{1,255}(/[A-Za-z0-9._*?-]+)*/?\*?")
_TOOL_PATTERN = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")
_MAX_PATTERNS = 64


@dataclass(frozen=True, slots=True)
class ApproverScope:
    """The calls an approver may decide: of these agents and these tools (empty: any).

    Patterns are shell-style (`fnmatch`, case-sensitive): `*` matches any
    run of characters, slashes included, so
    `spiffe://acme.example/agent/billing/*` covers every agent below
    `billing/`; `payments.*` covers every tool named `payments.` something.
    """

    agents: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    @property
    def unlimited(self) -> bool:
        """True when the scope limits nothing."""
        return not self.agents and not self.tools

    def covers(self, agent: str, tool: str) -> bool:
        """True if a call of `agent` to `tool` is within the scope."""
        return _matches(self.agents, agent) and _matches(self.tools, tool)

    def describe(self) -> dict[str, list[str]]:
        """A JSON-ready description."""
        return {"agents": list(self.agents), "tools": list(self.tools)}


def _matches(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


UNLIMITED = ApproverScope()


@dataclass(frozen=True, slots=True)
class Principal:
    """A human or system that can act through the management API."""

    name: str
    kind: str
    roles: tuple[str, ...]
    created_at: float
    disabled_at: float | None = None
    approver_scope: ApproverScope = UNLIMITED

    def has(self, role: str) -> bool:
        """True if the principal holds `role` (admins hold every role)."""
        return self.disabled_at is None and (role in self.roles or ADMIN in self.roles)

    def may_approve(self, agent: str, tool: str) -> bool:
        """True if the principal may decide a call of `agent` to `tool` (admins: any)."""
        if not self.has(APPROVER):
            return False
        return ADMIN in self.roles or self.approver_scope.covers(agent, tool)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (`approver_scope` only when it limits something)."""
        described: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "roles": list(self.roles),
            "created_at": self.created_at,
            "disabled_at": self.disabled_at,
        }
        if not self.approver_scope.unlimited:
            described["approver_scope"] = self.approver_scope.describe()
        return described


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key's record (never its secret)."""

    id: str
    principal: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "id": self.id,
            "principal": self.principal,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


def parse_name(name: str) -> str:
    """Validate a principal name.

    Raises:
        InvalidInputError: not 1-64 of lower-case letters, digits and `._@-`.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInputError(
            "a principal name is 1-64 lower-case letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_scope(agents: Iterable[str] = (), tools: Iterable[str] = ()) -> ApproverScope:
    """Validate an approver scope: SPIFFE ID patterns and tool name patterns.

    Raises:
        InvalidInputError: a pattern that is not a SPIFFE ID pattern or a
            tool name pattern, or too many of them.
    """
    agent_patterns = tuple(sorted(set(agents)))
    tool_patterns = tuple(sorted(set(tools)))
    if len(agent_patterns) > _MAX_PATTERNS or len(tool_patterns) > _MAX_PATTERNS:
        raise InvalidInputError(f"an approver scope has at most {_MAX_PATTERNS} patterns of each")
    for pattern in agent_patterns:
        if not _AGENT_PATTERN.fullmatch(pattern):
            raise InvalidInputError(
                f"{pattern[:80]!r} is not a SPIFFE ID pattern (spiffe://domain/path, '*' and '?')"
            )
    for pattern in tool_patterns:
        if not _TOOL_PATTERN.fullmatch(pattern):
            raise InvalidInputError(f"{pattern[:80]!r} is not a tool name pattern")
    return ApproverScope(agent_patterns, tool_patterns)


def parse_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """Validate and sort a set of role names.

    Raises:
        InvalidInputError: an unknown role.
    """
    chosen = set(roles)
    unknown = chosen - set(ROLES)
    if unknown:
        raise InvalidInputError(f"unknown role {sorted(unknown)[0]!r}: use {', '.join(ROLES)}")
    return tuple(sorted(chosen))


class PrincipalRegistry:
    """The principals and API keys tables, behind methods that validate and audit."""

    def __init__(self, database: Database, clock: Clock, *, audit: AuditLog | None = None) -> None:
        """Changes are audited to `audit` when one is given."""
        self._database = database
        self._clock = clock
        self._audit = audit

    # -- principals --------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        roles: Sequence[str] = (),
        kind: str = "human",
        actor: str = "local",
        scope: ApproverScope = UNLIMITED,
    ) -> Principal:
        """Add a principal (an approver limited to `scope`, if given).

        Raises:
            InvalidInputError: a bad name, kind or role.
            ConflictError: the name is taken.
        """
        principal = Principal(
            parse_name(name), _kind(kind), parse_roles(roles), self._now(), approver_scope=scope
        )
        with self._database.write() as conn:
            if self._find(conn, principal.name) is not None:
                raise ConflictError(f"principal {principal.name!r} already exists")
            conn.execute(
                insert(principals_table).values(
                    name=principal.name,
                    kind=principal.kind,
                    roles=orjson.dumps(list(principal.roles)).decode(),
                    created_at=principal.created_at,
                    disabled_at=None,
                    approver_scope=_scope_json(scope),
                )
            )
            self._record(conn, "principal.add", actor, principal.describe())
        return principal

    def ensure(self, name: str, *, roles: Sequence[str], kind: str = "human") -> Principal:
        """The principal `name`, added with `roles` if it does not exist yet."""
        existing = self.find(name)
        if existing is not None:
            return existing
        try:
            return self.add(name, roles=roles, kind=kind, actor="init")
        except ConflictError:
            return self.get(name)

    def find(self, name: str) -> Principal | None:
        """The principal `name`, or None."""
        with self._database.read() as conn:
            return self._find(conn, name)

    def get(self, name: str) -> Principal:
        """The principal `name`.

        Raises:
            NotFoundError: no such principal.
        """
        found = self.find(name)
        if found is None:
            raise NotFoundError("principal", name[:80])
        return found

    def list(self) -> builtins.list[Principal]:
        """Every principal, by name."""
        with self._database.read() as conn:
            rows = conn.execute(select(principals_table).order_by(principals_table.c.name))
            return [_principal(row) for row in rows.mappings()]

    def set_disabled(self, name: str, disabled: bool, *, actor: str = "local") -> Principal:
        """Disable a principal (its keys stop working at once) or enable it again.

        Raises:
            NotFoundError: no such principal.
        """
        with self._database.write() as conn:
            found = self._find(conn, name)
            if found is None:
                raise NotFoundError("principal", name[:80])
            value = self._now() if disabled else None
            conn.execute(
                update(principals_table)
                .where(principals_table.c.name == name)
                .values(disabled_at=value)
            )
            action = "principal.disable" if disabled else "principal.enable"
            self._record(conn, action, actor, {"name": name})
            found = self._find(conn, name)
        assert found is not None  # noqa: S101 - updated inside this transaction
        return found

    def set_scope(self, name: str, scope: ApproverScope, *, actor: str = "local") -> Principal:
        """Limit the principal's approver role to `scope` (`UNLIMITED`: any call).

        Raises:
            NotFoundError: no such principal.
        """
        with self._database.write() as conn:
            if self._find(conn, name) is None:
                raise NotFoundError("principal", name[:80])
            conn.execute(
                update(principals_table)
                .where(principals_table.c.name == name)
                .values(approver_scope=_scope_json(scope))
            )
            self._record(conn, "principal.scope", actor, {"name": name, **scope.describe()})
            found = self._find(conn, name)
        assert found is not None  # noqa: S101 - updated inside this transaction
        return found

    # -- console passwords ---------------------------------------------------------

    def set_password(self, name: str, password: str, *, actor: str = "local") -> None:
        """Set the principal's console password (argon2id; only the hash is stored).

        Every console session of the principal ends: a new password locks out
        whoever knew the old one.

        Raises:
            NotFoundError: no such principal.
            InvalidInputError: shorter than 12 or longer than 1024 characters.
        """
        hashed = hash_password(password)
        with self._database.write() as conn:
            if self._find(conn, name) is None:
                raise NotFoundError("principal", name[:80])
            conn.execute(
                update(principals_table)
                .where(principals_table.c.name == name)
                .values(password_hash=hashed)
            )
            conn.execute(delete(sessions_table).where(sessions_table.c.principal == name))
            self._record(conn, "principal.password", actor, {"name": name})

    def check_password(self, name: str, password: str) -> Principal | None:
        """The enabled principal `name` if `password` is its console password, else None.

        An unknown name, or one without a password, costs one argon2
        verification too (against a dummy hash).
        """
        stored = None
        found = None
        if isinstance(name, str) and _NAME.fullmatch(name):
            with self._database.read() as conn:
                row = conn.execute(
                    select(principals_table).where(principals_table.c.name == name)
                ).mappings()
                first = row.first()
            if first is not None:
                found, stored = _principal(first), first["password_hash"]
        if not verify_password(stored, password) or found is None:
            return None
        return found if found.disabled_at is None else None

    # -- API keys ----------------------------------------------------------------

    def create_key(
        self, principal: str, *, ttl: float | None = None, actor: str = "local"
    ) -> tuple[ApiKey, str]:
        """A new API key for `principal`: its record and the whole key (shown once).

        Raises:
            NotFoundError: no such principal.
            InvalidInputError: a TTL that is not positive.
        """
        if ttl is not None and not ttl > 0:
            raise InvalidInputError("an API key's lifetime must be positive")
        now = self._now()
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKey(key_id, principal, now, None if ttl is None else now + ttl, None)
        with self._database.write() as conn:
            if self._find(conn, principal) is None:
                raise NotFoundError("principal", principal[:80])
            conn.execute(
                insert(keys_table).values(
                    id=key_id,
                    principal=principal,
                    secret_sha256=_digest(secret),
                    created_at=now,
                    expires_at=record.expires_at,
                    revoked_at=None,
                )
            )
            self._record(conn, "api_key.create", actor, {**record.describe(), "owner": principal})
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def keys(self, principal: str | None = None) -> builtins.list[ApiKey]:
        """The API keys (of one principal, or all), oldest first."""
        query = select(keys_table).order_by(keys_table.c.created_at)
        if principal is not None:
            query = query.where(keys_table.c.principal == principal)
        with self._database.read() as conn:
            return [_key(row) for row in conn.execute(query).mappings()]

    def revoke_key(self, key_id: str, *, actor: str = "local") -> ApiKey:
        """Revoke an API key; it fails on its next use.

        Raises:
            NotFoundError: no such key.
        """
        if not _ID.fullmatch(key_id):
            raise NotFoundError("API key", key_id[:80])
        with self._database.write() as conn:
            row = conn.execute(select(keys_table).where(keys_table.c.id == key_id)).mappings()
            found = row.first()
            if found is None:
                raise NotFoundError("API key", key_id)
            conn.execute(
                update(keys_table)
                .where(keys_table.c.id == key_id, keys_table.c.revoked_at.is_(None))
                .values(revoked_at=self._now())
            )
            self._record(conn, "api_key.revoke", actor, {"id": key_id, "owner": found["principal"]})
            after = conn.execute(select(keys_table).where(keys_table.c.id == key_id)).mappings()
            return _key(after.one())

    def authenticate(self, presented: str) -> Principal | None:
        """The enabled principal whose unexpired, unrevoked API key `presented` is, or None."""
        match = _KEY.fullmatch(presented) if isinstance(presented, str) else None
        if match is None:
            return None
        key_id, secret = match.groups()
        now = self._now()
        with self._database.read() as conn:
            row = conn.execute(select(keys_table).where(keys_table.c.id == key_id)).mappings()
            found = row.first()
            if found is None or not hmac.compare_digest(found["secret_sha256"], _digest(secret)):
                return None
            if found["revoked_at"] is not None:
                return None
            if found["expires_at"] is not None and found["expires_at"] <= now:
                return None
            principal = self._find(conn, found["principal"])
        if principal is None or principal.disabled_at is not None:
            return None
        return principal

    # -- internals -----------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now()

    @staticmethod
    def _find(conn: Connection, name: str) -> Principal | None:
        row = conn.execute(select(principals_table).where(principals_table.c.name == name))
        found = row.mappings().first()
        return None if found is None else _principal(found)

    def _record(self, conn: Connection, action: str, actor: str, detail: dict[str, Any]) -> None:
        if self._audit is None:
            return
        entry = AuditEntry(
            kind="admin",
            outcome="allow",
            detail={"action": action, **detail, "principal": actor},  # who acted, never overridden
        )
        self._audit.append_within(conn, [entry])


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInputError(f"unknown principal kind {kind!r}: use {' or '.join(KINDS)}")
    return kind


def _principal(row: RowMapping) -> Principal:
    scope = UNLIMITED
    if row["approver_scope"]:
        stored = orjson.loads(row["approver_scope"])
        scope = ApproverScope(tuple(stored.get("agents", ())), tuple(stored.get("tools", ())))
    return Principal(
        name=row["name"],
        kind=row["kind"],
        roles=tuple(orjson.loads(row["roles"])),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
        approver_scope=scope,
    )


def _scope_json(scope: ApproverScope) -> str | None:
    if scope.unlimited:
        return None
    return orjson.dumps(scope.describe(), option=orjson.OPT_SORT_KEYS).decode()


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        principal=row["principal"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )
