"""`ztgate tools`: register, list, show and remove HTTP tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from ztgate.audit import AuditEntry, AuditLog
from ztgate.cli.common import console, database, print_json
from ztgate.clock import SystemClock
from ztgate.errors import InvalidInputError
from ztgate.tools.model import Tool, ToolLimits, parse_risk
from ztgate.tools.registry import ToolRegistry

app = typer.Typer(help="Register, list, show and remove tools.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> tuple[ToolRegistry, AuditLog]:
    from ztgate.cli.common import settings

    db = database(ctx)
    clock = SystemClock()
    return ToolRegistry(db, clock), AuditLog(db, clock, chain=settings(ctx).audit.chain)


def _json_argument(text: str, what: str) -> Any:
    source = text if text.lstrip().startswith("{") else None
    if source is None:
        path = Path(text)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"{what}: cannot read {path}: {exc.strerror}") from exc
    try:
        return orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from exc


def describe(tool: Tool) -> dict[str, Any]:
    """A tool as plain JSON."""
    return {
        "name": tool.name,
        "url": tool.upstream_url,
        "risk": tool.risk.value,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "timeout_seconds": tool.timeout_seconds,
        "limits": None if tool.limits is None else tool.limits.to_json(),
        "enabled": tool.enabled,
        "source": tool.source,
    }


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Tool name (ASCII letters, digits, _ . : -).")],
    url: Annotated[str, typer.Option("--url", help="The tool's HTTP endpoint (POST, JSON).")],
    schema: Annotated[
        str | None,
        typer.Option("--schema", help="JSON Schema of the arguments: inline JSON or a file."),
    ] = None,
    risk: Annotated[str, typer.Option(help="read, write or critical.")] = "write",
    description: Annotated[str, typer.Option(help="What the tool does.")] = "",
    output_schema: Annotated[
        str | None, typer.Option("--output-schema", help="JSON Schema of results.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Upstream timeout in seconds for this tool.")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite a tool of the same name.")] = False,
    limits: Annotated[
        str | None,
        typer.Option(
            "--limits",
            help='Its own rate limit and price, JSON: {"rate_per_second", "burst", "cost", '
            '"cost_argument"}.',
        ),
    ] = None,
) -> None:
    """Register an HTTP tool (with no --schema, it accepts no arguments)."""
    tool = Tool(
        name=name,
        upstream_url=url,
        input_schema=_json_argument(schema, "--schema")
        if schema
        else {"type": "object", "additionalProperties": False},
        output_schema=_json_argument(output_schema, "--output-schema") if output_schema else None,
        risk=parse_risk(risk),
        description=description,
        timeout_seconds=timeout,
        limits=ToolLimits.from_json(_json_argument(limits, "--limits")) if limits else None,
        source="cli",
    )
    registry, audit = _registry(ctx)
    entry = AuditEntry(kind="admin", outcome="allow", tool=name, detail={"action": "tool.add"})
    stored = registry.add(
        tool, replace=replace, also=lambda conn: audit.append_within(conn, [entry])
    )
    console.print(
        f"registered tool [bold]{stored.name}[/] ({stored.risk.value}) -> {stored.upstream_url}"
    )


@app.command("list")
def list_tools(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registered tools."""
    registry, _ = _registry(ctx)
    tools = registry.all()
    if as_json:
        print_json([describe(tool) for tool in tools])
        return
    table = Table("name", "risk", "url", "description", "source", title=f"{len(tools)} tools")
    for tool in tools:
        table.add_row(tool.name, tool.risk.value, tool.upstream_url, tool.description, tool.source)
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one tool, with its schemas."""
    registry, _ = _registry(ctx)
    tool = describe(registry.get(name))
    if as_json:
        print_json(tool)
        return
    for key, value in tool.items():
        shown = (
            orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
            if isinstance(value, dict)
            else value
        )
        console.print(f"[bold]{key}[/]: {shown}")


@app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Remove a tool; calls to it are denied from the next call on."""
    registry, audit = _registry(ctx)
    entry = AuditEntry(kind="admin", outcome="allow", tool=name, detail={"action": "tool.remove"})
    registry.remove(name, also=lambda conn: audit.append_within(conn, [entry]))
    console.print(f"removed tool [bold]{name}[/]")
