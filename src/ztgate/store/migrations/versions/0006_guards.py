"""Guards: tools' information-flow settings and their pinned fingerprints.

Tools registered before pinning existed are pinned to what they are now:
they were approved when they were registered.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import hashlib
import json

import rfc8785
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fingerprint(description: str, input_schema: str, output_schema: str | None) -> str:
    # As tools/pins.py computes it (frozen here: a migration never changes).
    document = {
        "description": description,
        "input_schema": json.loads(input_schema),
        "output_schema": None if output_schema is None else json.loads(output_schema),
    }
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def upgrade() -> None:
    op.add_column("tools", sa.Column("flow", sa.Text(), nullable=True))
    op.add_column("tools", sa.Column("pin_sha256", sa.String(64), nullable=True))
    tools = sa.table(
        "tools",
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("input_schema", sa.Text),
        sa.column("output_schema", sa.Text),
        sa.column("pin_sha256", sa.String),
    )
    if op.get_context().as_sql:
        # Rendered as SQL, there is nothing to read: such tools need `ztgate tools approve`.
        return
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(tools.c.name, tools.c.description, tools.c.input_schema, tools.c.output_schema)
    ).all()
    for name, description, input_schema, output_schema in rows:
        conn.execute(
            sa.update(tools)
            .where(tools.c.name == name)
            .values(pin_sha256=_fingerprint(description, input_schema, output_schema))
        )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN: SQLite 3.35 or newer, PostgreSQL.
    op.drop_column("tools", "pin_sha256")
    op.drop_column("tools", "flow")
