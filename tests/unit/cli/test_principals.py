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
