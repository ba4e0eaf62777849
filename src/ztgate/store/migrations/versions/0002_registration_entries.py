"""Registration entries: which processes receive which SPIFFE IDs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registration_entries",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("spiffe_id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("selectors", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("consumed_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registration_entries"),
    )
    op.create_index("ix_registration_entries_spiffe_id", "registration_entries", ["spiffe_id"])


def downgrade() -> None:
    op.drop_index("ix_registration_entries_spiffe_id", "registration_entries")
    op.drop_table("registration_entries")
