"""MCP upstream servers: what ztgate reaches real MCP tools through, and where they are kept.

A server is either a stdio command (run by the gateway in an execution
enclave, `ztgate.enclave`) or a Streamable HTTP URL. Its tools are imported
into the tool registry as `<server>.<tool>` with the upstream URL
`mcp://<server>/<tool>` (`ztgate.mcp.upstream`); every tool is `write`
unless the server marks it read-only (`readOnlyHint`) **and** the operator
confirmed it (`read_only_tools`). Servers are added with `ztgate mcp add`
and kept in the `mcp_servers` table (canonical JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping

from ztgate.canonical import canonical_json
from ztgate.clock import Clock
from ztgate.errors import ConflictError, InvalidInputError, NotFoundError
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import mcp_servers as servers_table
from ztgate.tools.registry import InTransaction

# Bumped on every change, so that running gateways follow (`Gateway.refresh`).
GENERATION = "mcp_servers"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TRANSPORTS = ("stdio", "http")
_MAX_ITEMS = 64


@dataclass(frozen=True, slots=True)
class McpServer:
    """One upstream MCP server.

    Raises:
        InvalidInputError: any field is invalid.
    """

    name: str
    transport: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    read_only_paths: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    allowed_domains: tuple[str, ...] = ()
    allowed_test_destinations: tuple[str, ...] = ()
    sandbox: bool = True
    url: str = ""
    read_only_tools: tuple[str, ...] = ()
    # One instance (one enclave) per task and agent instead of one for all,
    # its connections attributed to them and held to the task's domains.
    per_task: bool = False
    # Run (not in the enclave) when a task's instance starts: prints the
    # task's secrets as a JSON object of environment variables.
    secrets_command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidInputError(
                f"invalid MCP server name {self.name!r}: 1-32 lower-case letters, digits, "
                "'_' or '-', starting with a letter or digit"
            )
        if self.transport not in TRANSPORTS:
            raise InvalidInputError(f"transport must be stdio or http: {self.transport!r}")
        if self.transport == "stdio":
            if not self.command or self.url:
                raise InvalidInputError("a stdio server has a command and no URL")
            for path in (*self.read_only_paths, *self.read_write_paths, self.cwd or "/"):
                if not Path(path).is_absolute():
                    raise InvalidInputError(f"enclave path {path!r} must be absolute")
        else:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname or self.command:
                raise InvalidInputError("an http server has an http(s) URL and no command")
            if parts.username or parts.password:
                raise InvalidInputError("the server URL must not carry credentials")
        if self.per_task and self.transport != "stdio":
            raise InvalidInputError("only a stdio server can run an instance per task")
        if self.per_task and self.read_write_paths:
            # Every instance would bind the same directories: one task's files
            # would reach the next. Each instance has a private /tmp of its own.
            raise InvalidInputError(
                "a server with an instance per task cannot have writable paths (--rw-path): "
                "they would be shared between tasks"
            )
        if self.secrets_command:
            if not self.per_task:
                raise InvalidInputError("a secrets command needs an instance per task (per_task)")
            if not Path(self.secrets_command[0]).is_absolute():
                raise InvalidInputError(
                    f"the secrets command {self.secrets_command[0]!r} must be an absolute path"
                )
        for name in self.env:
            if not _ENV_NAME.fullmatch(name):
                raise InvalidInputError(f"environment variable name {name!r} is not valid")
        for what in ("args", "read_only_paths", "read_write_paths", "allowed_domains",
                     "allowed_test_destinations", "read_only_tools",
                     "secrets_command"):  # fmt: skip
            items = getattr(self, what)
            if len(items) > _MAX_ITEMS or not all(isinstance(i, str) for i in items):
                raise InvalidInputError(f"{what}: at most {_MAX_ITEMS} strings")

    def to_json(self) -> dict[str, Any]:
        """The server as stored (only what is set)."""
        data: dict[str, Any] = {"name": self.name, "transport": self.transport}
        for key in ("command", "cwd", "url"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        for key in ("args", "read_only_paths", "read_write_paths", "allowed_domains",
                    "allowed_test_destinations", "read_only_tools",
                    "secrets_command"):  # fmt: skip
            if getattr(self, key):
                data[key] = list(getattr(self, key))
        if self.env:
            data["env"] = dict(self.env)
        if not self.sandbox:
            data["sandbox"] = False
        if self.per_task:
            data["per_task"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> McpServer:
        """The server `to_json` describes.

        Raises:
            InvalidInputError: not a valid description.
        """
        known = {"name", "transport", "command", "args", "env", "cwd", "read_only_paths",
                 "read_write_paths", "allowed_domains", "allowed_test_destinations",
                 "sandbox", "url", "read_only_tools", "per_task",
                 "secrets_command"}  # fmt: skip
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"MCP server: unknown key {unknown[0]!r}")
        env = data.get("env", {})
        if not isinstance(env, Mapping) or not all(isinstance(v, str) for v in env.values()):
            raise InvalidInputError("env maps names to strings")
        sandbox, per_task = data.get("sandbox", True), data.get("per_task", False)
        if not isinstance(sandbox, bool) or not isinstance(per_task, bool):
            raise InvalidInputError("sandbox and per_task must be true or false")
        return cls(
            name=str(data.get("name", "")),
            transport=str(data.get("transport", "")),
            command=str(data.get("command", "")),
            args=_strings(data, "args"),
            env=dict(env),
            cwd=data.get("cwd"),
            read_only_paths=_strings(data, "read_only_paths"),
            read_write_paths=_strings(data, "read_write_paths"),
            allowed_domains=_strings(data, "allowed_domains"),
            allowed_test_destinations=_strings(data, "allowed_test_destinations"),
            sandbox=sandbox,
            url=str(data.get("url", "")),
            read_only_tools=_strings(data, "read_only_tools"),
            per_task=per_task,
            secrets_command=_strings(data, "secrets_command"),
        )


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InvalidInputError(f"{key} must be a list of strings")
    return tuple(value)


class McpServerRegistry:
    """The `mcp_servers` table."""

    def __init__(self, database: Database, clock: Clock) -> None:
        """Keep servers in `database`."""
        self._database = database
        self._clock = clock

    def add(
        self, server: McpServer, *, replace: bool = False, also: InTransaction | None = None
    ) -> McpServer:
        """Store `server` (`also` runs in the same transaction: its audit record).

        Raises:
            ConflictError: one of that name exists and `replace` is false.
        """
        now = self._clock.now()
        spec = canonical_json(server.to_json()).decode()
        with self._database.write() as conn:
            found = conn.execute(
                select(servers_table.c.name).where(servers_table.c.name == server.name)
            ).first()
            if found is not None and not replace:
                raise ConflictError(f"MCP server {server.name!r} already exists (use --replace)")
            values = {"transport": server.transport, "spec": spec, "updated_at": now}
            if found is None:
                conn.execute(
                    insert(servers_table).values(name=server.name, created_at=now, **values)
                )
            else:
                conn.execute(
                    update(servers_table)
                    .where(servers_table.c.name == server.name)
                    .values(**values)
                )
            generations.bump(conn, GENERATION)
            if also is not None:
                also(conn)
        return server

    def remove(self, name: str, *, also: InTransaction | None = None) -> None:
        """Forget the server `name` (its imported tools stay until removed).

        Raises:
            NotFoundError: no such server.
        """
        with self._database.write() as conn:
            done = conn.execute(delete(servers_table).where(servers_table.c.name == name))
            if done.rowcount == 0:
                raise NotFoundError("MCP server", name)
            generations.bump(conn, GENERATION)
            if also is not None:
                also(conn)

    def all(self) -> list[McpServer]:
        """Every server, by name."""
        with self._database.read() as conn:
            rows = conn.execute(select(servers_table).order_by(servers_table.c.name)).mappings()
            return [_server(row) for row in rows]


def _server(row: RowMapping) -> McpServer:
    return McpServer.from_json(orjson.loads(row["spec"]))
