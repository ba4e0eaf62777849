"""The shipped test kit: a frozen clock and factories for calls, tools and settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import inspect

from ztgate.canonical import canonical_sha256
from ztgate.errors import ConfigError, InvalidInputError
from ztgate.models import Credentials
from ztgate.store.database import Database
from ztgate.testing import FrozenClock, make_call, make_settings, make_tool
from ztgate.tools.model import RiskTier

# -- FrozenClock -----------------------------------------------------------------------------


def test_frozen_clock_defaults() -> None:
    clock = FrozenClock()
    assert clock.now() == 1_800_000_000.0
    assert clock.monotonic() == 1000.0


def test_frozen_clock_does_not_move_by_itself() -> None:
    clock = FrozenClock(5.0)
    assert clock.now() == clock.now() == 5.0
    assert clock.monotonic() == clock.monotonic()


def test_advance_moves_both_clocks() -> None:
    clock = FrozenClock(100.0)
    clock.advance(2.5)
    clock.advance(0.5)
    assert clock.now() == 103.0
    assert clock.monotonic() == 1003.0


def test_set_moves_only_the_wall_clock() -> None:
    clock = FrozenClock()
    clock.set(10.0)  # backwards, as an NTP step might
    assert clock.now() == 10.0
    assert clock.monotonic() == 1000.0


def test_the_fixture_is_a_fresh_frozen_clock(clock: FrozenClock) -> None:
    assert clock.now() == 1_800_000_000.0
    assert clock.monotonic() == 1000.0


# -- make_call -------------------------------------------------------------------------------


def test_make_call_defaults() -> None:
    call = make_call()
    assert call.tool == "echo"
    assert call.arguments == {}
    assert call.call_id == "call-1"
    assert call.justification == "testing"
    assert call.agent is None
    assert call.task_id is None
    assert call.credentials == Credentials()
    assert call.received_at == 1_800_000_000.0
    assert call.front_door == "http"


def test_make_call_hashes_the_canonical_arguments() -> None:
    call = make_call("weather", {"days": 3, "city": "Oslo"})
    assert call.arguments_sha256 == canonical_sha256({"city": "Oslo", "days": 3})
    assert (
        call.arguments_sha256
        == make_call("weather", {"city": "Oslo", "days": 3.0}).arguments_sha256
    )
    assert call.arguments_sha256 != make_call("weather", {"city": "Oslo"}).arguments_sha256


def test_make_call_copies_the_arguments() -> None:
    arguments = {"city": "Oslo"}
    call = make_call("weather", arguments)
    arguments["city"] = "Bergen"
    assert call.arguments == {"city": "Oslo"}
    assert call.arguments_sha256 == canonical_sha256({"city": "Oslo"})


def test_make_call_passes_everything_through() -> None:
    credentials = Credentials(bearer="t0ken", warrant="w", proof="p")
    call = make_call(
        "mail",
        {"to": "a@example.com"},
        call_id="c-9",
        justification="the user asked",
        agent="spiffe://acme.example/agent/mailer",
        task_id="task-7",
        credentials=credentials,
        received_at=12.5,
    )
    assert (call.tool, call.call_id, call.justification) == ("mail", "c-9", "the user asked")
    assert call.agent == "spiffe://acme.example/agent/mailer"
    assert call.task_id == "task-7"
    assert call.credentials is credentials
    assert call.received_at == 12.5


def test_make_call_refuses_arguments_without_a_canonical_form() -> None:
    with pytest.raises(InvalidInputError):
        make_call(arguments={"x": float("nan")})


# -- make_tool -------------------------------------------------------------------------------


def test_make_tool_defaults() -> None:
    tool = make_tool()
    assert tool.name == "echo"
    assert tool.upstream_url == "http://127.0.0.1:9/echo"
    assert tool.input_schema == {"type": "object"}
    assert tool.risk is RiskTier.READ
    assert tool.output_schema is None
    assert tool.enabled is True


def test_make_tool_passes_fields_through() -> None:
    schema = {"type": "object", "required": ["q"]}
    output = {"type": "object"}
    tool = make_tool(
        "search",
        url="https://search.example/q",
        schema=schema,
        risk=RiskTier.CRITICAL,
        output_schema=output,
        enabled=False,
        timeout_seconds=3.0,
        description="Search.",
    )
    assert tool.name == "search"
    assert tool.upstream_url == "https://search.example/q"
    assert tool.input_schema == schema
    assert tool.risk is RiskTier.CRITICAL
    assert tool.output_schema == output
    assert tool.enabled is False
    assert tool.timeout_seconds == 3.0
    assert tool.description == "Search."


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "bad name"}, {"url": "ftp://x/"}, {"schema": {"type": "string"}}],
)
def test_make_tool_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        make_tool(**kwargs)  # type: ignore[arg-type]


# -- make_settings ---------------------------------------------------------------------------


def test_make_settings_initialises_like_ztgate_init(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[gateway]\nport = 9123\n")
    assert settings.gateway.port == 9123
    assert settings.source == str(tmp_path / "ztgate.toml")
    assert settings.base_dir == tmp_path
    data_dir = settings.path(settings.data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    key = settings.path(settings.audit.signing_key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert settings.path(settings.audit.public_key).exists()
    db = Database(settings.database_url)
    try:
        assert "tools" in inspect(db.engine).get_table_names()
    finally:
        db.dispose()


def test_make_settings_without_init_writes_only_the_config(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "[demo]\nport = 9999\n", init=False)
    assert settings.demo.port == 9999
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ztgate.toml"]


def test_make_settings_reports_bad_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        make_settings(tmp_path, "[gateway]\nport = 99999\n", init=False)


def test_the_settings_fixture_is_initialised(settings: object, tmp_path: Path) -> None:
    assert (tmp_path / "ztgate.toml").exists()
    assert (tmp_path / ".ztgate" / "ztgate.db").exists()


def test_the_database_fixture_is_migrated(database: Database) -> None:
    assert "audit_records" in inspect(database.engine).get_table_names()
