"""`ztgate init`: config, data directory, keys and database; idempotent; --force; --demo."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ztgate.audit.checkpoint import load_public_key, load_signer, verify_note
from ztgate.cli.init import DEFAULT_CONFIG_TEXT
from ztgate.config import load_settings
from ztgate.store.database import Database

Cli = Callable[..., Result]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _init(cli: Cli, config: Path, *options: str) -> Result:
    result = cli("--config", str(config), "init", *options)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _key_files(directory: Path) -> dict[str, bytes]:
    keys = directory / ".ztgate" / "keys"
    return {path.name: path.read_bytes() for path in sorted(keys.iterdir())}


def test_init_creates_config_data_dir_keys_and_database(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"

    result = _init(cli, config)

    assert config.read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT
    data_dir = tmp_path / ".ztgate"
    assert _mode(data_dir) == 0o700
    private = data_dir / "keys" / "audit-ed25519.pem"
    public = data_dir / "keys" / "audit-ed25519.pub"
    assert _mode(private) == 0o600
    assert _mode(public) == 0o644
    assert _mode(data_dir / "ztgate.db") == 0o600
    assert "wrote" in result.output
    assert "0700" in result.output


def test_init_keys_form_a_working_pair(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    settings = load_settings(config)

    signer = load_signer(settings.path(settings.audit.signing_key))
    note = signer.sign("main", 1, "ab" * 32)

    assert verify_note(note, load_public_key(settings.path(settings.audit.public_key))).seq == 1


def test_init_migrates_the_database(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    database = Database(load_settings(config).database_url)
    try:
        with database.read() as conn:
            tables = {
                row[0]
                for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")
            }
    finally:
        database.dispose()

    assert {"tools", "audit_records", "audit_heads", "audit_checkpoints"} <= tables


def test_init_is_idempotent(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    config.write_text(DEFAULT_CONFIG_TEXT + "\n# my own note\n", encoding="utf-8")
    keys = _key_files(tmp_path)

    result = _init(cli, config)

    assert config.read_text(encoding="utf-8").endswith("# my own note\n")
    assert _key_files(tmp_path) == keys
    assert "wrote" not in result.output
    assert "created" not in result.output
    assert "database ready" in result.output


def test_force_rewrites_the_config_but_never_the_keys(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    config.write_text("[gateway]\nport = 9999\n", encoding="utf-8")
    keys = _key_files(tmp_path)

    result = _init(cli, config, "--force")

    assert config.read_text(encoding="utf-8") == DEFAULT_CONFIG_TEXT
    assert _key_files(tmp_path) == keys
    assert "wrote" in result.output
    assert "signing key" not in result.output


def test_a_missing_key_is_recreated_without_touching_the_config(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    private = tmp_path / ".ztgate" / "keys" / "audit-ed25519.pem"
    old = private.read_bytes()
    private.unlink()

    result = _init(cli, config)

    assert private.read_bytes() != old
    assert _mode(private) == 0o600
    assert "signing key" in result.output
    assert "wrote" not in result.output


def test_demo_declares_the_demo_tools_and_the_config_loads(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"

    _init(cli, config, "--demo")

    settings = load_settings(config)
    assert settings.demo.tools is True
    tools = {tool.name: tool for tool in settings.declared_tools()}
    assert set(tools) == {"get_weather", "send_email", "read_inbox", "pay_invoice", "echo"}
    assert tools["get_weather"].upstream_url == "http://127.0.0.1:8471/weather"
    assert tools["get_weather"].input_schema["required"] == ["city"]
    assert tools["send_email"].risk.value == "write"
    assert all(tool.source == "config" for tool in tools.values())


def test_force_demo_turns_an_existing_config_into_the_demo(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    _init(cli, config)
    assert load_settings(config).declared_tools() == []

    _init(cli, config, "--demo", "--force")

    assert len(load_settings(config).declared_tools()) == 5


def test_paths_are_relative_to_the_config_not_the_working_directory(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = tmp_path / "etc" / "ztgate" / "ztgate.toml"

    _init(cli, config)

    assert (tmp_path / "etc" / "ztgate" / ".ztgate" / "ztgate.db").exists()
    assert list(elsewhere.iterdir()) == []


def test_without_config_option_init_uses_the_working_directory(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = cli("init")

    assert result.exit_code == 0, result.output
    assert (tmp_path / "ztgate.toml").exists()
    assert (tmp_path / ".ztgate" / "keys" / "audit-ed25519.pem").exists()


def test_init_honours_ztgate_config(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "from-env" / "gateway.toml"
    monkeypatch.setenv("ZTGATE_CONFIG", str(config))

    assert cli("init").exit_code == 0

    assert config.exists()
    assert not (tmp_path / "ztgate.toml").exists()


def test_the_written_config_documents_the_console() -> None:
    assert "\n[console]\n" in DEFAULT_CONFIG_TEXT
    assert "# enabled = true" in DEFAULT_CONFIG_TEXT
    assert 'link_base = "https://ztgate.example:8470/console"' in DEFAULT_CONFIG_TEXT
