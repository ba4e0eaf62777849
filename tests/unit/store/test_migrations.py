"""The Alembic migrations create exactly the schema of `ztgate.store.tables`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from ztgate.store.database import Database
from ztgate.store.migrate import alembic_config, upgrade
from ztgate.store.tables import SCHEMA_TABLES, metadata


@pytest.fixture
def fresh(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """An empty database of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind, migrated=False)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def _reflected(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    schema: dict[str, Any] = {}
    for name in _tables(engine):
        pk = inspector.get_pk_constraint(name)
        schema[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)
            ],
            "pk": (pk["name"], tuple(pk["constrained_columns"])),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
            ),
            "unique": sorted(u["name"] for u in inspector.get_unique_constraints(name)),
        }
    return schema


# Names PostgreSQL reflects for what it was asked to create under another:
# FLOAT without a precision is its float8, DOUBLE PRECISION.
_REFLECTED_AS = {"postgresql": {"FLOAT": "DOUBLE PRECISION"}}


def _declared(engine: Engine) -> dict[str, Any]:
    dialect = engine.dialect
    synonyms = _REFLECTED_AS.get(dialect.name, {})
    schema: dict[str, Any] = {}
    for table in metadata.sorted_tables:
        schema[table.name] = {
            "columns": [
                (c.name, synonyms.get(t := str(c.type.compile(dialect)), t), c.nullable)
                for c in table.columns
            ],
            "pk": (table.primary_key.name, tuple(c.name for c in table.primary_key.columns)),
            "indexes": sorted(
                (i.name, tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes
            ),
            "unique": [],
        }
    return schema


def test_migrations_create_exactly_the_declared_schema(fresh: Database) -> None:
    fresh.migrate()
    assert _reflected(fresh.engine) == _declared(fresh.engine)


def test_alembic_sees_no_difference_after_migrating(fresh: Database) -> None:
    fresh.migrate()
    with fresh.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_the_schema_has_the_expected_tables(fresh: Database) -> None:
    fresh.migrate()
    expected = {
        "generations",
        "tools",
        "audit_heads",
        "audit_records",
        "audit_checkpoints",
        "registration_entries",
        "revocations",
        "principals",
        "api_keys",
        "tasks",
        "warrants",
        "suspensions",
        "task_usage",
        "approvals",
        "console_sessions",
        "mcp_servers",
    }
    assert _tables(fresh.engine) == expected
    assert {t.name for t in SCHEMA_TABLES} == expected == set(metadata.tables)


def test_migrations_have_one_head(fresh: Database) -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


def test_stamp_is_the_head_revision(fresh: Database) -> None:
    fresh.migrate()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with fresh.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head


def test_downgrade_to_base_removes_every_table(fresh: Database) -> None:
    fresh.migrate()
    with fresh.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert _tables(fresh.engine) == set()
    with fresh.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is None


def test_upgrade_after_downgrade_restores_the_schema(fresh: Database) -> None:
    fresh.migrate()
    with fresh.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with fresh.engine.begin() as conn:
        upgrade(conn)
    assert _reflected(fresh.engine) == _declared(fresh.engine)


def test_every_revision_downgrades_to_its_parent(fresh: Database) -> None:
    """Step down one revision at a time from head, then back up."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())  # head first
    fresh.migrate()
    for revision in revisions:
        with fresh.engine.begin() as conn:
            command.downgrade(alembic_config(conn), revision.down_revision or "base")
        with fresh.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == (
                revision.down_revision
            )
    assert _tables(fresh.engine) == set()


def test_0006_pins_the_tools_registered_before_it(fresh: Database) -> None:
    """Tools registered before pinning existed were approved then: they stay usable."""
    from sqlalchemy import insert, select

    from ztgate.store.tables import tools
    from ztgate.tools.pins import fingerprint

    with fresh.engine.begin() as conn:
        upgrade(conn, "0005")
        conn.execute(
            insert(tools).values(
                name="echo",
                upstream_url="http://127.0.0.1:9/echo",
                description="Echo",
                risk="read",
                input_schema='{"type":"object","properties":{"msg":{"type":"string"}}}',
                output_schema=None,
                timeout_seconds=None,
                enabled=True,
                source="cli",
                created_at=1.0,
                updated_at=1.0,
            )
        )
    fresh.migrate()
    with fresh.engine.connect() as conn:
        pin = conn.execute(select(tools.c.pin_sha256)).scalar_one()
    assert pin == fingerprint(
        "Echo", {"type": "object", "properties": {"msg": {"type": "string"}}}, None
    )
