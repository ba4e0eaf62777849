"""`ztgate principals`: add, list, disable/enable; API keys create, list, revoke."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from click.testing import Result

from ztgate.clock import SystemClock
from ztgate.config import Settings
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.principals.registry import PrincipalRegistry

Cli = Callable[..., Result]


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _json(result: Result) -> Any:
    return orjson.loads(_ok(result).stdout)


def test_init_adds_the_admin_principal(ztgate: Cli) -> None:
    (admin,) = _json(ztgate("principals", "list", "--json"))
    assert admin["name"] == "admin" and admin["roles"] == ["admin"]


def test_add_list_disable_enable(ztgate: Cli) -> None:
    _ok(ztgate("principals", "add", "billing-bot", "--role", "tasks", "--kind", "system"))
    names = {p["name"]: p for p in _json(ztgate("principals", "list", "--json"))}
    assert names["billing-bot"]["roles"] == ["tasks"]
    assert names["billing-bot"]["kind"] == "system"
    _ok(ztgate("principals", "disable", "billing-bot"))
    names = {p["name"]: p for p in _json(ztgate("principals", "list", "--json"))}
    assert names["billing-bot"]["disabled_at"] is not None
    _ok(ztgate("principals", "enable", "billing-bot"))
    assert "billing-bot" in _ok(ztgate("principals", "list")).stdout


def test_bad_input_is_an_error(ztgate: Cli) -> None:
    result = ztgate("principals", "add", "Alice")
    assert isinstance(result.exception, InvalidInputError)
    result = ztgate("principals", "add", "alice", "--role", "root")
    assert isinstance(result.exception, InvalidInputError)
    assert "unknown role" in result.exception.message
    result = ztgate("principals", "add", "admin")
    assert isinstance(result.exception, ConflictError)
    result = ztgate("principals", "keys", "create", "nobody")
    assert isinstance(result.exception, NotFoundError)


def test_a_key_is_printed_once_authenticates_and_can_be_revoked(
    ztgate: Cli, settings: Settings
) -> None:
    key = _ok(ztgate("principals", "keys", "create", "admin", "--quiet")).stdout.strip()
    assert key.startswith("ztg_")
    registry = PrincipalRegistry(settings.open_database(), SystemClock())
    found = registry.authenticate(key)
    assert found is not None and found.name == "admin"
    (listed,) = _json(ztgate("principals", "keys", "list", "--json"))
    assert listed["principal"] == "admin" and key not in str(listed)
    _ok(ztgate("principals", "keys", "revoke", listed["id"]))
    assert registry.authenticate(key) is None


def test_password_from_stdin_sets_the_console_password(ztgate: Cli, settings: Settings) -> None:
    from typer.testing import CliRunner

    from ztgate.cli.main import app

    config = str(settings.base_dir / "ztgate.toml")
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["--config", config, "principals", "password", "admin", "--password-stdin"],
        input="correct horse battery\n",
    )
    assert done.exit_code == 0, (done.output, done.exception)
    registry = PrincipalRegistry(settings.open_database(), SystemClock())
    assert registry.check_password("admin", "correct horse battery") is not None
    short = runner.invoke(
        app,
        ["--config", config, "principals", "password", "admin", "--password-stdin"],
        input="short\n",
    )
    assert isinstance(short.exception, InvalidInputError)
    empty = runner.invoke(
        app, ["--config", config, "principals", "password", "admin", "--password-stdin"], input=""
    )
    assert isinstance(empty.exception, InvalidInputError)
    prompted = runner.invoke(
        app,
        ["--config", config, "principals", "password", "admin"],
        input="another long password\nanother long password\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "another long password" not in prompted.output
    assert registry.check_password("admin", "another long password") is not None


def test_the_installed_command_prints_one_line_on_bad_input(tmp_path: Any) -> None:
    import subprocess

    from .conftest import ZTGATE

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ZTGATE), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    assert run("init").returncode == 0
    done = run("principals", "password", "admin", "--password-stdin", stdin="short\n")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "at least 12" in done.stderr


def test_approver_scopes_from_the_command_line(ztgate: Cli, settings: Settings) -> None:
    billing = "spiffe://ztgate.local/agent/billing/*"
    _ok(
        ztgate(
            "principals",
            "add",
            "alice",
            "--role",
            "approver",
            "--approve-agent",
            billing,
            "--approve-tool",
            "pay*",
        )
    )
    (alice,) = [p for p in _json(ztgate("principals", "list", "--json")) if p["name"] == "alice"]
    assert alice["approver_scope"] == {"agents": [billing], "tools": ["pay*"]}
    assert "approves" in _ok(ztgate("principals", "list")).stdout
    _ok(ztgate("principals", "scope", "alice", "--tool", "email.send"))
    registry = PrincipalRegistry(settings.open_database(), SystemClock())
    scope = registry.get("alice").approver_scope
    assert (scope.agents, scope.tools) == ((), ("email.send",))
    assert "any call" in _ok(ztgate("principals", "scope", "alice")).stdout
    assert registry.get("alice").approver_scope.unlimited
    bad = ztgate("principals", "scope", "alice", "--agent", "not-a-spiffe-id")
    assert isinstance(bad.exception, InvalidInputError)
