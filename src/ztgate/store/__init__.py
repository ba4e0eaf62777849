"""Durable state (SQLAlchemy, migrated by Alembic) and hot ephemeral state."""
