"""Containment: holds (kill switch, burst suspensions), task usage, and tools' own limits.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "suspensions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suspensions"),
    )
    op.create_table(
        "task_usage",
        sa.Column("task_id", sa.String(32), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_task_usage"),
    )
    op.add_column("tools", sa.Column("limits", sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN: SQLite 3.35 or newer, PostgreSQL.
    op.drop_column("tools", "limits")
    op.drop_table("task_usage")
    op.drop_table("suspensions")
