"""Running the packaged Alembic migrations."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import Script, ScriptDirectory
from sqlalchemy import insert, inspect, select

import ztgate.store
from ztgate.store.database import Database
from ztgate.store.migrate import alembic_config, upgrade
from ztgate.store.tables import generations, metadata

SCHEMA = set(metadata.tables)


@pytest.fixture
def fresh(store_kind: str, make_database: Callable[..., Database]) -> Database:
    """An empty database of each kind (SQLite, PostgreSQL)."""
    return make_database(store_kind, migrated=False)


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def rendered(rev: Script, step: str, dialect: str) -> str:
    """The DDL of one revision's upgrade or downgrade, rendered offline (as_sql)."""
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name=dialect, opts={"as_sql": True, "output_buffer": buffer}
    )
    with Operations.context(context):
        getattr(rev.module, step)()
    return buffer.getvalue()


def names(pattern: str, sql: str) -> set[str]:
    return set(re.findall(pattern + r" (\w+)", sql))


def revisions() -> list[Script]:
    """Every revision, oldest first."""
    return list(reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())))


def head() -> str:
    current = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current is not None
    return current


def test_the_config_points_at_the_packaged_migrations() -> None:
    config = alembic_config()
    assert config.get_main_option("script_location") == "ztgate.store:migrations"
    script = ScriptDirectory.from_config(config)
    packaged = Path(ztgate.store.__file__).resolve().parent / "migrations"
    assert Path(script.dir).resolve() == packaged
    assert (packaged / "versions" / "0001_foundation.py").is_file()
    assert [r.revision for r in script.walk_revisions()][-1] == "0001"


def test_the_config_carries_the_connection_only_when_given(fresh: Database) -> None:
    assert "connection" not in alembic_config().attributes
    with fresh.engine.connect() as conn:
        assert alembic_config(conn).attributes["connection"] is conn


def test_upgrade_creates_the_schema_at_head(fresh: Database) -> None:
    assert revision(fresh) is None
    with fresh.engine.begin() as conn:
        upgrade(conn)
    assert tables(fresh) == SCHEMA
    assert revision(fresh) == head()


def test_upgrade_is_idempotent_and_keeps_data(fresh: Database) -> None:
    with fresh.engine.begin() as conn:
        upgrade(conn)
        conn.execute(insert(generations).values(name="tools", value=7))
    for _ in range(2):
        with fresh.engine.begin() as conn:
            upgrade(conn)
    fresh.migrate()
    assert revision(fresh) == head()
    with fresh.engine.connect() as conn:
        assert conn.execute(select(generations.c.value)).scalar_one() == 7


def test_upgrade_to_a_named_revision_stops_there(fresh: Database) -> None:
    first = revisions()[0]
    with fresh.engine.begin() as conn:
        upgrade(conn, first.revision)
    assert revision(fresh) == first.revision
    assert tables(fresh) == names("CREATE TABLE", rendered(first, "upgrade", "sqlite"))
    fresh.migrate()
    assert revision(fresh) == head()
    assert tables(fresh) == SCHEMA


def test_downgrade_to_base_then_upgrade_again(fresh: Database) -> None:
    fresh.migrate()
    with fresh.engine.begin() as conn:
        conn.execute(insert(generations).values(name="tools", value=3))
    with fresh.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert tables(fresh) == set()
    assert revision(fresh) is None
    with fresh.engine.begin() as conn:
        upgrade(conn)
    assert tables(fresh) == SCHEMA
    assert revision(fresh) == head()
    with fresh.engine.begin() as conn:
        assert conn.execute(select(generations)).all() == []  # a new, empty schema
        conn.execute(insert(generations).values(name="tools", value=1))


def test_upgrade_quietens_alembics_info_logging(
    fresh: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.NOTSET)
    with fresh.engine.begin() as conn:
        upgrade(conn)
    assert logging.getLogger("alembic").level == logging.WARNING
    assert not [r for r in caplog.records if r.name.startswith("alembic")]


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_every_revision_renders_as_sql_and_downgrades_what_it_created(dialect: str) -> None:
    """The migrations themselves are portable: their offline DDL renders on both dialects."""
    created: set[str] = set()
    indexed: set[str] = set()
    for rev in revisions():
        up = rendered(rev, "upgrade", dialect)
        down = rendered(rev, "downgrade", dialect)
        assert names("CREATE TABLE", up) == names("DROP TABLE", down), rev.revision
        assert names("CREATE INDEX", up) == names("DROP INDEX", down), rev.revision
        assert not names("CREATE TABLE", up) & created, rev.revision
        created |= names("CREATE TABLE", up)
        indexed |= names("CREATE INDEX", up)
    assert created == SCHEMA
    assert indexed == {index.name for table in metadata.tables.values() for index in table.indexes}
