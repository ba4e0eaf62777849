"""Running the Alembic migrations that ship inside the package."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", "ztgate.store:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema on `connection` to `revision`."""
    # Alembic announces every plugin at INFO; the gateway's log is for decisions.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    command.upgrade(alembic_config(connection), revision)
