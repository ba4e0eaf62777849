"""What every command shares: settings, consoles, JSON output, the store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console

from ztgate.config import Settings, load_settings
from ztgate.store.database import Database

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def settings(ctx: typer.Context) -> Settings:
    """The settings for this invocation (read once, from `--config` or the default)."""
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("config_path"))
    value: Settings = obj["settings"]
    return value


def config_path(ctx: typer.Context) -> Path | None:
    """The `--config` given on the command line, if any."""
    value: Path | None = ctx.ensure_object(dict).get("config_path")
    return value


def database(ctx: typer.Context) -> Database:
    """The migrated database the settings point at (its connections closed with the command)."""
    current = settings(ctx)
    db = current.open_database()
    ctx.call_on_close(db.dispose)
    db.migrate()
    return db


def print_json(value: Any) -> None:
    """Write `value` as indented JSON to standard output."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
