"""Upstream MCP servers: validation, their stored form, and the registry."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.mcp.servers import GENERATION, McpServer, McpServerRegistry
from ztgate.store import generations
from ztgate.store.database import Database, sqlite_url
from ztgate.testing import FrozenClock

STDIO = McpServer(
    name="files",
    transport="stdio",
    command="/usr/bin/python3",
    args=("server.py",),
    env={"LOG_LEVEL": "info"},
    read_only_paths=("/srv/files",),
    read_only_tools=("notes",),
)
HTTP = McpServer(name="remote", transport="http", url="https://mcp.example.com/mcp")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Files"}, "invalid MCP server name"),
        ({"name": "a" * 33}, "invalid MCP server name"),
        ({"transport": "sse"}, "transport must be stdio or http"),
        ({"command": ""}, "a stdio server has a command"),
        ({"url": "http://x"}, "a stdio server has a command and no URL"),
        ({"read_only_paths": ("relative",)}, "must be absolute"),
        ({"env": {"1BAD": "x"}}, "environment variable name"),
        ({"args": tuple(str(i) for i in range(65))}, "at most 64"),
    ],
)
def test_bad_stdio_servers_are_refused(fields: dict[str, object], message: str) -> None:
    base = STDIO.to_json() | fields
    with pytest.raises(InvalidInputError, match=message):
        McpServer.from_json(base)


@pytest.mark.parametrize(
    "url", ["ftp://mcp.example.com", "https://", "https://user:pw@mcp.example.com/mcp"]
)
def test_bad_http_servers_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError):
        McpServer(name="remote", transport="http", url=url)


def test_unknown_keys_and_wrong_types_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="unknown key"):
        McpServer.from_json({**HTTP.to_json(), "shell": True})
    with pytest.raises(InvalidInputError, match="sandbox"):
        McpServer.from_json({**STDIO.to_json(), "sandbox": "no"})
    with pytest.raises(InvalidInputError, match="list of strings"):
        McpServer.from_json({**STDIO.to_json(), "args": "server.py"})


def test_the_stored_form_round_trips() -> None:
    unsandboxed = McpServer.from_json({**STDIO.to_json(), "sandbox": False})
    assert not unsandboxed.sandbox
    for server in (STDIO, HTTP, unsandboxed):
        assert McpServer.from_json(server.to_json()) == server


@given(
    st.dictionaries(
        st.sampled_from(["name", "transport", "command", "url", "x"]), st.text(max_size=10)
    )
)
def test_any_description_is_a_server_or_a_clear_error(data: dict[str, str]) -> None:
    with contextlib.suppress(InvalidInputError):
        McpServer.from_json(data)


def test_the_registry_adds_lists_replaces_and_removes(tmp_path: Path) -> None:
    database = Database(sqlite_url(tmp_path / "z.db"))
    database.migrate()
    registry = McpServerRegistry(database, FrozenClock())
    recorded: list[str] = []
    registry.add(STDIO, also=lambda _conn: recorded.append("added"))
    assert recorded == ["added"]
    with database.read() as conn:
        first = generations.read_all(conn)[GENERATION]
    registry.add(HTTP)
    with database.read() as conn:
        assert generations.read_all(conn)[GENERATION] == first + 1  # running gateways follow
    assert registry.all() == [STDIO, HTTP]
    with pytest.raises(ConflictError):
        registry.add(HTTP)
    moved = McpServer(name="remote", transport="http", url="https://other.example.com/mcp")
    registry.add(moved, replace=True)
    assert registry.all()[1] == moved
    registry.remove("files", also=lambda _conn: recorded.append("removed"))
    assert registry.all() == [moved] and recorded == ["added", "removed"]
    with pytest.raises(NotFoundError):
        registry.remove("files")
    database.dispose()
