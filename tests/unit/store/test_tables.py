"""The schema: portable SQLAlchemy Core, every table keyed."""

from __future__ import annotations

import pytest
from sqlalchemy import String, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import sqltypes

from ztgate.store.tables import SCHEMA_TABLES, audit_records, metadata

TABLES = sorted(metadata.tables.values(), key=lambda t: t.name)
DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


def test_schema_tables_are_exactly_the_metadatas() -> None:
    assert {t.name for t in SCHEMA_TABLES} == set(metadata.tables)
    assert len(SCHEMA_TABLES) == len(metadata.tables)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_table_has_a_named_primary_key(table: Table) -> None:
    assert list(table.primary_key.columns), table.name
    assert table.primary_key.name == f"pk_{table.name}"
    assert all(not c.nullable for c in table.primary_key.columns)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_column_types_are_generic_sqlalchemy_types(table: Table) -> None:
    for column in table.columns:
        kind = type(column.type)
        assert kind.__module__ == sqltypes.__name__, f"{table.name}.{column.name}: {kind}"
        if isinstance(column.type, String) and kind is String:
            assert column.type.length, f"{table.name}.{column.name}: String without a length"


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_create_table_compiles_on_each_dialect(table: Table, dialect: str) -> None:
    compiled: Dialect = DIALECTS[dialect]
    ddl = str(CreateTable(table).compile(dialect=compiled))
    assert ddl.strip().startswith(f"CREATE TABLE {table.name}")
    assert f"CONSTRAINT pk_{table.name} PRIMARY KEY" in ddl
    for column in table.columns:
        assert column.name in ddl
    for index in table.indexes:
        index_ddl = str(CreateIndex(index).compile(dialect=compiled))
        assert index_ddl.startswith(f"CREATE INDEX {index.name} ON {table.name}")


def test_indexes_follow_the_naming_convention() -> None:
    for table in TABLES:
        for index in table.indexes:
            assert index.name is not None and index.name.startswith(f"ix_{table.name}_")


def test_the_audit_log_is_keyed_by_chain_and_sequence() -> None:
    assert [c.name for c in audit_records.primary_key.columns] == ["chain", "seq"]
    assert "ix_audit_records_call_id" in {i.name for i in audit_records.indexes}
