"""The `ztgate` command itself: version, --config, and how configuration errors reach the user."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from ztgate import __version__
from ztgate.config import Settings
from ztgate.errors import ConfigError, PolicyLoadError

Cli = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]


def _config_error(result: Result) -> ConfigError:
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError), repr(result.exception)
    assert "\n" not in result.exception.diagnostics()
    return result.exception


def test_version(cli: Cli) -> None:
    result = cli("version")

    assert result.exit_code == 0
    assert result.stdout.strip() == f"ztgate {__version__}"


def test_no_arguments_shows_help(cli: Cli) -> None:
    result = cli()

    assert "Usage" in result.output
    assert "tools" in result.output
    assert "audit" in result.output


def test_a_missing_config_file_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ztgate.toml"

    error = _config_error(cli("--config", str(missing), "tools", "list"))

    assert error.source == str(missing)
    assert "not found" in error.diagnostics()
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        ("[gateway]\nport = 70000\n", "gateway.port", "65535"),
        ('[gateway]\nport = "eighty"\n', "gateway.port", "integer"),
        ("[gateway]\nbogus = 1\n", "gateway.bogus", "unknown setting"),
        ("colour = 'blue'\n", "colour", "unknown setting"),
        ('[store]\nsynchronous = "sometimes"\n', "store.synchronous", "normal"),
        ('[audit]\nchain = "bad chain!"\n', "audit.chain", "pattern"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(
    cli: Cli, tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text(toml, encoding="utf-8")

    error = _config_error(cli("--config", str(config), "tools", "list"))

    assert error.source == str(config)
    assert error.key == key
    assert reason in error.reason
    assert error.diagnostics().startswith(f"{config}: {key}: ")


def test_invalid_toml_names_the_file(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("[gateway\nport = 1\n", encoding="utf-8")

    error = _config_error(cli("--config", str(config), "audit", "verify"))

    assert error.source == str(config)
    assert "not valid TOML" in error.diagnostics()


def test_a_bad_environment_value_names_the_variable(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("ZTGATE_GATEWAY__PORT", "not-a-port")

    error = _config_error(cli("--config", str(config), "tools", "list"))

    assert "ZTGATE_GATEWAY__PORT" in error.diagnostics()
    assert error.key == "gateway.port"


def test_the_real_command_reports_a_missing_config_on_one_line(
    run_ztgate: Run, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "ztgate.toml"

    done = run_ztgate("--config", str(missing), "tools", "list")

    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr == f"ztgate: error: {missing}: config file not found\n"


def test_the_real_command_reports_a_bad_value_on_one_line(run_ztgate: Run, tmp_path: Path) -> None:
    config = tmp_path / "ztgate.toml"
    config.write_text("[gateway]\nport = 70000\n", encoding="utf-8")

    done = run_ztgate("--config", str(config), "audit", "verify")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith(f"ztgate: error: {config}: gateway.port: ")
    assert "65535" in line


def test_serve_refuses_a_broken_policy_set_before_it_starts(
    ztgate: Callable[..., Result], settings: Settings
) -> None:
    policies = settings.path(settings.policy.dir)
    policies.mkdir(parents=True, exist_ok=True)
    (policies / "bad.cedar").write_text(
        "permit (principal, action, resource) when { context.nope == 1 };\n"
    )
    result = ztgate("serve")
    assert isinstance(result.exception, PolicyLoadError)
    assert "bad.cedar:1:" in result.exception.message
