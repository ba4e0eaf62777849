"""What every command shares: settings read once, the migrated store, JSON output."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
import pytest
import typer
from sqlalchemy import inspect

from ztgate.cli import common
from ztgate.config import Settings
from ztgate.errors import ConfigError


def context(config: Path | None = None) -> typer.Context:
    ctx = typer.Context(click.Command("ztgate"))
    if config is not None:
        ctx.obj = {"config_path": config}
    return ctx


def test_settings_come_from_the_config_given(tmp_path: Path) -> None:
    config = tmp_path / "custom.toml"
    config.write_text("[gateway]\nport = 9123\n")
    loaded = common.settings(context(config))
    assert loaded.gateway.port == 9123
    assert loaded.source == str(config)


def test_settings_are_read_once_per_invocation(tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("[gateway]\nport = 9001\n")
    ctx = context(config)
    first = common.settings(ctx)
    config.write_text("[gateway]\nport = 9002\n")
    assert common.settings(ctx) is first
    assert common.settings(context(config)).gateway.port == 9002


def test_without_a_config_the_default_file_or_defaults_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert common.settings(context()).source == "environment"
    (tmp_path / "ztgate.toml").write_text("[gateway]\nport = 9003\n")
    assert common.settings(context()).gateway.port == 9003


def test_a_missing_or_invalid_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        common.settings(context(tmp_path / "absent.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        common.settings(context(broken))


def test_config_path_is_the_one_given_or_none(tmp_path: Path) -> None:
    assert common.config_path(context()) is None
    assert common.config_path(context(tmp_path / "x.toml")) == tmp_path / "x.toml"


def test_database_is_migrated(tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text('data_dir = "state"\n')
    (tmp_path / "state").mkdir()
    db = common.database(context(config))
    try:
        assert db.url == common.settings(context(config)).database_url
        tables = set(inspect(db.engine).get_table_names())
        assert {"tools", "audit_records", "generations", "alembic_version"} <= tables
    finally:
        db.dispose()
    assert (tmp_path / "state" / "ztgate.db").exists()


def test_database_uses_the_invocations_settings(settings: Settings) -> None:
    ctx = context(settings.base_dir / "ztgate.toml")
    db = common.database(ctx)
    try:
        assert db.url == settings.database_url
    finally:
        db.dispose()


def test_print_json_writes_indented_json_and_a_newline(capsys: pytest.CaptureFixture[str]) -> None:
    common.print_json({"name": "café ☕", "n": [1, 2], "none": None})
    out = capsys.readouterr().out
    assert out.endswith("}\n")
    assert out.splitlines()[1].startswith('  "name"')
    assert "café ☕" in out  # UTF-8, not \u escapes
    assert orjson.loads(out) == {"name": "café ☕", "n": [1, 2], "none": None}


def test_print_json_writes_nothing_else(capsys: pytest.CaptureFixture[str]) -> None:
    common.print_json([])
    captured = capsys.readouterr()
    assert captured.out == "[]\n"
    assert captured.err == ""
