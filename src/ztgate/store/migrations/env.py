"""Alembic environment: runs on the connection ztgate hands it."""

from __future__ import annotations

from alembic import context

from ztgate.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - ztgate always passes a connection
    raise RuntimeError("ztgate migrations run through `ztgate.store.migrate.upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
