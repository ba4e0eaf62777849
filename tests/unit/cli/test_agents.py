"""`ztgate agents`: register (selectors or a join token), list, show, remove."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from click.testing import Result

from ztgate.config import Settings
from ztgate.errors import ConflictError, GatewayError, InvalidInputError, NotFoundError
from ztgate.identity.entries import hash_token
from ztgate.store.database import Database
from ztgate.store.tables import registration_entries

Cli = Callable[..., Result]
AGENT = "spiffe://ztgate.local/agent/mailer"


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _json(result: Result) -> Any:
    return orjson.loads(_ok(result).stdout)


def _error(result: Result, kind: type[GatewayError]) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, kind), repr(result.exception)
    return result.exception.diagnostics()


def test_register_list_show_remove(ztgate: Cli, flatten: Callable[[str], str]) -> None:
    out = flatten(
        _ok(
            ztgate(
                "agents",
                "register",
                AGENT,
                "--selector",
                "unix:uid:1000",
                "-s",
                "unix:path:/usr/bin/agent",
                "--owner",
                "alice",
            )
        ).stdout
    )
    assert "registered entry" in out
    [entry] = _json(ztgate("agents", "list", "--json"))
    assert entry["spiffe_id"] == AGENT
    assert entry["owner"] == "alice"
    assert entry["selectors"] == ["unix:path:/usr/bin/agent", "unix:uid:1000"]
    assert _json(ztgate("agents", "show", entry["id"], "--json")) == entry
    assert "unix:uid:1000" in flatten(_ok(ztgate("agents", "list")).stdout)
    assert entry["id"] in flatten(_ok(ztgate("agents", "show", entry["id"])).stdout)
    assert "removed entry" in flatten(_ok(ztgate("agents", "remove", entry["id"])).stdout)
    assert _json(ztgate("agents", "list", "--json")) == []
    _error(ztgate("agents", "show", entry["id"]), NotFoundError)
    _error(ztgate("agents", "remove", entry["id"]), NotFoundError)


def test_join_token_is_printed_once_and_stored_hashed(
    ztgate: Cli, settings: Settings, flatten: Callable[[str], str]
) -> None:
    out = _ok(ztgate("agents", "register", AGENT, "--join-token", "--owner", "ops")).stdout
    token = out.strip().splitlines()[-1]
    assert len(token) >= 40
    [entry] = _json(ztgate("agents", "list", "--json"))
    assert entry["kind"] == "join_token"
    assert token not in ztgate("agents", "list", "--json").stdout
    assert token not in ztgate("agents", "show", entry["id"]).stdout
    database = Database(settings.database_url)
    try:
        with database.read() as conn:
            row = conn.execute(registration_entries.select()).mappings().one()
    finally:
        database.dispose()
    assert row["token_sha256"] == hash_token(token)
    assert "join token" in flatten(_ok(ztgate("agents", "list")).stdout)


def test_bad_input_is_refused(ztgate: Cli) -> None:
    assert "selector" in _error(ztgate("agents", "register", AGENT), InvalidInputError)
    _error(ztgate("agents", "register", AGENT, "-s", "unix:uid:x"), InvalidInputError)
    _error(
        ztgate("agents", "register", "spiffe://elsewhere.example/a", "-s", "unix:uid:1"),
        InvalidInputError,
    )
    _error(
        ztgate("agents", "register", AGENT, "-s", "unix:uid:1", "--join-token"),
        InvalidInputError,
    )
    _ok(ztgate("agents", "register", AGENT, "-s", "unix:uid:1"))
    _error(ztgate("agents", "register", AGENT, "-s", "unix:uid:1"), ConflictError)
