"""`ztgate tools`: register, list, show, approve and remove HTTP tools.

A new tool is pinned to its description and schemas when it is registered
(unless the injection detector flags its description); a replaced one that
says something else is refused until `ztgate tools approve` (see
guards/pinning.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from ztgate.audit import AuditEntry, AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock
from ztgate.errors import InvalidInputError
from ztgate.guards.pinning import description_findings
from ztgate.principals.registry import APPROVER, PrincipalRegistry
from ztgate.tools.flow import ToolFlow
from ztgate.tools.model import Tool, ToolLimits, parse_risk
from ztgate.tools.registry import ToolRegistry

app = typer.Typer(help="Register, list, show, approve and remove tools.", no_args_is_help=True)


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
        "flow": None if tool.flow is None else tool.flow.to_json(),
        "enabled": tool.enabled,
        "approval": approval(tool),
        "source": tool.source,
    }


def approval(tool: Tool) -> str:
    """`approved`, `changed` (since it was approved) or `pending` (never approved)."""
    if tool.pinned:
        return "approved"
    return "pending" if tool.pin_sha256 is None else "changed"


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
    flow: Annotated[
        str | None,
        typer.Option(
            "--flow",
            help='How data flows through it, JSON: {"trusted", "record_fields", '
            '"content_fields", "egress", "arguments"} (see docs/guards.md).',
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
        flow=ToolFlow.from_json(_json_argument(flow, "--flow")) if flow else None,
        source="cli",
    )
    registry, audit = _registry(ctx)
    existing = registry.find(tool.name)
    flagged = description_findings(
        tool.description,
        (tool.input_schema, tool.output_schema),
        settings(ctx).guards.injection.threshold,
    )
    detail: dict[str, Any] = {"action": "tool.add"}
    if existing is not None and existing.pin_sha256 != tool.fingerprint:
        detail["approval"] = "required: its description or schemas changed"
    elif existing is None and flagged:
        detail["approval"] = f"required: its description looks like instructions ({flagged[0]})"
    entry = AuditEntry(kind="admin", outcome="allow", tool=name, detail=detail)
    stored = registry.add(
        tool,
        replace=replace,
        pin=not flagged,
        also=lambda conn: audit.append_within(conn, [entry]),
    )
    console.print(
        f"registered tool [bold]{stored.name}[/] ({stored.risk.value}) -> {stored.upstream_url}"
    )
    if not stored.pinned:
        why = str(detail.get("approval", "required")).removeprefix("required: ")
        console.print(
            f"[yellow]calls to {stored.name} are refused until a principal approves it "
            f"({why}): ztgate tools approve {stored.name}[/]"
        )


@app.command("approve")
def approve(
    ctx: typer.Context,
    name: str,
    principal: Annotated[
        str, typer.Option("--principal", "-p", help="Who approves (role approver or admin).")
    ] = "admin",
) -> None:
    """Approve a tool's current description and schemas: calls to it are allowed again."""
    registry, audit = _registry(ctx)
    found = PrincipalRegistry(database(ctx), SystemClock()).find(principal)
    if found is None or not found.has(APPROVER):
        raise InvalidInputError(f"principal {principal!r} does not exist or may not approve")
    current = registry.get(name)
    entry = AuditEntry(
        kind="admin",
        outcome="allow",
        tool=name,
        detail={
            "action": "tool.approve",
            "principal": found.name,
            "fingerprint": current.fingerprint,
            "previous": current.pin_sha256,
        },
    )
    stored = registry.approve(name, also=lambda conn: audit.append_within(conn, [entry]))
    console.print(f"approved tool [bold]{stored.name}[/] as it is now ({stored.fingerprint[:16]})")


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
    table = Table(
        "name", "risk", "url", "description", "source", "approval", title=f"{len(tools)} tools"
    )
    for tool in tools:
        table.add_row(
            tool.name,
            tool.risk.value,
            tool.upstream_url,
            tool.description,
            tool.source,
            approval(tool),
        )
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
