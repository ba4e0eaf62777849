"""Stored tools: add, replace, list, show and remove, in the durable store."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.engine import RowMapping

from ztgate.clock import Clock
from ztgate.errors import ConflictError, NotFoundError
from ztgate.store import generations
from ztgate.store.database import Database
from ztgate.store.tables import tools as tools_table
from ztgate.tools.flow import ToolFlow
from ztgate.tools.model import RiskTier, Tool, ToolLimits, ToolName

GENERATION = "tools"
InTransaction = Callable[[Connection], object]


class ToolRegistry:
    """The tools table, behind methods that validate and bump the generation."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._database = database
        self._clock = clock

    def add(
        self,
        tool: Tool,
        *,
        replace: bool = False,
        also: InTransaction | None = None,
        pin: bool = True,
    ) -> Tool:
        """Register `tool`; with `replace`, overwrite one of the same name.

        `also` runs inside the same transaction (the audit record of the
        change), so both are committed or neither is. A new tool is pinned
        to its fingerprint unless `pin` is false (its description needs a
        principal's review); a replaced one keeps the pin it had, so a
        changed description or schema leaves it unpinned until approved.

        Raises:
            ConflictError: a tool of that name exists and `replace` is false.
        """
        now = self._clock.now()
        with self._database.write() as conn:
            existing = _get(conn, tool.name)
            if existing is not None and not replace:
                raise ConflictError(f"tool {tool.name!r} already exists (use --replace)")
            created = existing.created_at if existing is not None else now
            row = _to_row(tool) | {"created_at": created, "updated_at": now}
            row["pin_sha256"] = (
                existing.pin_sha256 if existing is not None else tool.fingerprint if pin else None
            )
            if existing is None:
                conn.execute(insert(tools_table).values(**row))
            else:
                conn.execute(
                    update(tools_table).where(tools_table.c.name == tool.name).values(**row)
                )
            generations.bump(conn, GENERATION)
            if also is not None:
                also(conn)
            stored = _get(conn, tool.name)
        assert stored is not None  # noqa: S101 - just written in this transaction
        return stored

    def sync(
        self,
        declared: Iterable[Tool],
        *,
        pin: Callable[[Tool], bool] | None = None,
        also: Callable[[Tool, Tool | None], InTransaction | None] | None = None,
    ) -> None:
        """Make the tools declared in the config file present and current.

        `pin(tool)` says whether a new tool is pinned at once (see `add`);
        `also(tool, current)` gives what to run in the transaction of each change.
        """
        for tool in declared:
            current = self.find(tool.name)
            if current is None or _declared(current) != _declared(tool):
                hook = also(tool, current) if also is not None else None
                self.add(tool, replace=True, pin=pin(tool) if pin else True, also=hook)

    def approve(self, name: str, *, also: InTransaction | None = None) -> Tool:
        """Pin the tool to its current fingerprint (a principal approved it).

        Raises:
            NotFoundError: no such tool.
        """
        with self._database.write() as conn:
            current = _get(conn, name)
            if current is None:
                raise NotFoundError("tool", name)
            conn.execute(
                update(tools_table)
                .where(tools_table.c.name == name)
                .values(pin_sha256=current.fingerprint, updated_at=self._clock.now())
            )
            generations.bump(conn, GENERATION)
            if also is not None:
                also(conn)
            stored = _get(conn, name)
        assert stored is not None  # noqa: S101 - just written in this transaction
        return stored

    def remove(self, name: str, *, also: InTransaction | None = None) -> None:
        """Delete a tool (`also` runs in the same transaction, as for `add`).

        Raises:
            NotFoundError: no such tool.
        """
        with self._database.write() as conn:
            result = conn.execute(delete(tools_table).where(tools_table.c.name == name))
            if result.rowcount == 0:
                raise NotFoundError("tool", name)
            generations.bump(conn, GENERATION)
            if also is not None:
                also(conn)

    def find(self, name: str) -> Tool | None:
        """The tool called `name`, or None."""
        with self._database.read() as conn:
            return _get(conn, name)

    def get(self, name: str) -> Tool:
        """The tool called `name`.

        Raises:
            NotFoundError: no such tool.
        """
        tool = self.find(ToolName(name))
        if tool is None:
            raise NotFoundError("tool", name)
        return tool

    def all(self) -> list[Tool]:
        """Every registered tool, by name."""
        with self._database.read() as conn:
            rows = conn.execute(select(tools_table).order_by(tools_table.c.name)).mappings()
            return [_from_row(row) for row in rows]


def _get(conn: Connection, name: str) -> Tool | None:
    row = conn.execute(select(tools_table).where(tools_table.c.name == name)).mappings().first()
    return None if row is None else _from_row(row)


def _to_row(tool: Tool) -> dict[str, Any]:
    return {
        "name": tool.name,
        "upstream_url": tool.upstream_url,
        "description": tool.description,
        "risk": tool.risk.value,
        "input_schema": orjson.dumps(tool.input_schema, option=orjson.OPT_SORT_KEYS).decode(),
        "output_schema": None
        if tool.output_schema is None
        else orjson.dumps(tool.output_schema, option=orjson.OPT_SORT_KEYS).decode(),
        "timeout_seconds": tool.timeout_seconds,
        "enabled": tool.enabled,
        "source": tool.source,
        "limits": None
        if tool.limits is None
        else orjson.dumps(tool.limits.to_json(), option=orjson.OPT_SORT_KEYS).decode(),
        "flow": None
        if tool.flow is None
        else orjson.dumps(tool.flow.to_json(), option=orjson.OPT_SORT_KEYS).decode(),
        "pin_sha256": tool.pin_sha256,
    }


def _declared(tool: Tool) -> dict[str, Any]:
    """What a declaration sets (the pin is the registry's own)."""
    row = _to_row(tool)
    del row["pin_sha256"]
    return row


def _from_row(row: RowMapping) -> Tool:
    return Tool(
        name=row["name"],
        upstream_url=row["upstream_url"],
        description=row["description"],
        risk=RiskTier(row["risk"]),
        input_schema=orjson.loads(row["input_schema"]),
        output_schema=None if row["output_schema"] is None else orjson.loads(row["output_schema"]),
        timeout_seconds=row["timeout_seconds"],
        limits=None if row["limits"] is None else ToolLimits.from_json(orjson.loads(row["limits"])),
        flow=None if row["flow"] is None else ToolFlow.from_json(orjson.loads(row["flow"])),
        pin_sha256=row["pin_sha256"],
        enabled=bool(row["enabled"]),
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
