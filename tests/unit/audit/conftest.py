"""Fixtures for the audit log tests: keys, a raw database handle for tampering, chains.

Every test that takes `database` runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import make_url

from ztgate.audit.checkpoint import CheckpointSigner, load_public_key, load_signer
from ztgate.audit.log import AuditLog
from ztgate.audit.record import AuditEntry, AuditReceipt
from ztgate.config import Settings
from ztgate.store.database import Database
from ztgate.testing import FrozenClock


def entry(i: int, **changes: Any) -> AuditEntry:
    """A fully populated entry whose fields vary with `i`."""
    fields: dict[str, Any] = {
        "kind": "call",
        "outcome": ("allow", "deny", "ask")[i % 3],
        "call_id": f"call-{i}",
        "agent": "spiffe://acme.example/agent/mailer",
        "task_id": f"task-{i % 4}",
        "tool": ("send_email", "get_weather")[i % 2],
        "status": 200,
        "reasons": ({"check": "schema", "outcome": "allow", "reason": "ok"},),
        "arguments_sha256": f"{i:064x}",
        "arguments_preview": '{"city":"Paris"}',
        "justification": f"step {i}",
        "detail": {"i": i},
    }
    fields.update(changes)
    return AuditEntry(**fields)


@pytest.fixture
def make_entry() -> Callable[..., AuditEntry]:
    """The `entry` factory."""
    return entry


@pytest.fixture
def signer(settings: Settings) -> CheckpointSigner:
    """The checkpoint signer `ztgate init` created."""
    return load_signer(settings.path(settings.audit.signing_key))


@pytest.fixture
def public_key(settings: Settings) -> Ed25519PublicKey:
    """The audit public key `ztgate init` created."""
    return load_public_key(settings.path(settings.audit.public_key))


@pytest.fixture
def database(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """A migrated database of the test's own, of each kind."""
    return make_database(store_kind)


@pytest.fixture
def db_path(database: Database) -> Path:
    """The SQLite file behind `database` (tests of SQLite's own file locks)."""
    if not database.is_sqlite:
        pytest.skip("SQLite's file locks")
    path = make_url(database.url).database
    assert path is not None
    return Path(path)


@pytest.fixture
def sql(database: Database) -> Callable[..., list[tuple[Any, ...]]]:
    """Run one statement (`?` parameters) straight on the database, as an attacker would; commit."""

    def run(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not database.is_sqlite:
            statement = statement.replace("?", "%s")
        raw = database.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(statement, params)
            rows = list(cursor.fetchall()) if cursor.description else []
            raw.commit()
            return rows
        finally:
            raw.close()

    return run


@pytest.fixture
def make_log(
    database: Database, clock: FrozenClock, signer: CheckpointSigner
) -> Callable[..., AuditLog]:
    """An `AuditLog` on the shared database, signed by the init key unless told otherwise."""

    def build(**options: Any) -> AuditLog:
        options.setdefault("signer", signer)
        return AuditLog(database, clock, **options)

    return build


@pytest.fixture
def build_chain(
    make_log: Callable[..., AuditLog], clock: FrozenClock
) -> Callable[..., list[AuditReceipt]]:
    """Append `n` records one transaction each, with a checkpoint every `every` records."""

    def build(n: int = 20, *, every: int = 5, chain: str = "main") -> list[AuditReceipt]:
        log = make_log(chain=chain, checkpoint_every_records=every)
        receipts: list[AuditReceipt] = []
        for i in range(1, n + 1):
            clock.advance(1)
            receipts += log.append_now([entry(i)])
        return receipts

    return build


@pytest.fixture
def other_database(database: Database) -> Iterator[Callable[..., Database]]:
    """Further `Database` objects on the same database (another process's worth), disposed after."""
    opened: list[Database] = []

    def open_(**options: Any) -> Database:
        db = Database(database.url, **options)
        opened.append(db)
        return db

    yield open_
    for db in opened:
        db.dispose()
