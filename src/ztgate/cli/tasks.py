"""`ztgate tasks`: create tasks for agents, list, show, complete and revoke them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, print_json
from ztgate.cli.common import settings as current_settings
from ztgate.clock import SystemClock, isoformat
from ztgate.errors import InvalidInputError
from ztgate.principals.registry import TASKS, PrincipalRegistry
from ztgate.tasks.registry import Task, TaskRegistry

app = typer.Typer(
    help="Tasks: one job for one agent, with its scope and expiry.", no_args_is_help=True
)

Principal = Annotated[
    str, typer.Option("--principal", "-p", help="Who the task runs on behalf of.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def registry(ctx: typer.Context) -> TaskRegistry:
    """The task registry of the configured store, auditing to the configured chain."""
    settings = current_settings(ctx)
    db = database(ctx)
    clock = SystemClock()
    audit = AuditLog(db, clock, chain=settings.audit.chain)
    return TaskRegistry.from_settings(settings, db, clock, audit)


def _principal(ctx: typer.Context, name: str) -> str:
    found = PrincipalRegistry(database(ctx), SystemClock()).find(name)
    if found is None:
        raise InvalidInputError(
            f"no principal {name!r}: add one with `ztgate principals add {name} --role tasks`"
        )
    if not found.has(TASKS):
        raise InvalidInputError(f"principal {name!r} lacks the 'tasks' role")
    return found.name


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `15m`, `2h` or `7d`.

    Raises:
        InvalidInputError: anything else.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    factor = units.get(value[-1:])
    number = value[:-1] if factor else value
    try:
        seconds = float(number) * (factor or 1)
    except ValueError as exc:
        raise InvalidInputError(f"{text!r} is not a duration such as 90s, 15m, 2h or 7d") from exc
    if not seconds > 0:
        raise InvalidInputError("a duration must be positive")
    return seconds


def _scope(scope: str | None, tools: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = {"tools": {}}
    if scope is not None:
        text = Path(scope[1:]).read_text(encoding="utf-8") if scope.startswith("@") else scope
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"--scope is not JSON: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("tools"), dict):
            raise InvalidInputError('--scope is {"tools": {name: {"limits": {...}}}}')
    for tool in tools:
        document["tools"].setdefault(tool, {})
    return document


def _show(task: Task, now: float) -> None:
    console.print(f"task [bold]{task.id}[/] for {task.agent}: {task.status(now)}")
    console.print(f"  intent: {task.intent}")
    console.print(f"  on behalf of {task.principal}, expires {isoformat(task.expires_at)}")
    for name, tool in sorted(task.scope.tools.items()):
        limits = tool.to_json().get("limits", {})
        console.print(f"  tool {name}" + (f" {json.dumps(limits)}" if limits else ""), markup=False)


@app.command("create")
def create(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option("--agent", "-a", help="The agent's SPIFFE ID.")],
    intent: Annotated[str, typer.Option("--intent", "-i", help="The user's request, as text.")],
    tool: Annotated[
        list[str] | None, typer.Option("--tool", "-t", help="A tool the task may call, no limits.")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(help='The scope as JSON, or @FILE: {"tools": {name: {"limits": {...}}}}.'),
    ] = None,
    budget_calls: Annotated[
        int | None, typer.Option(help="How many calls the task may make.")
    ] = None,
    budget_spend: Annotated[
        float | None,
        typer.Option(help="How many spend units its calls may cost (tools declare costs)."),
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 15m, 2h (default: from the config).")
    ] = None,
    principal: Principal = "admin",
    as_json: AsJson = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the task id (for scripts).")
    ] = False,
) -> None:
    """Create a task; the agent binds its warrant with its SVID (`POST /v1/warrants/bind`)."""
    tasks = registry(ctx)
    owner = _principal(ctx, principal)
    task, record, _ = tasks.create(
        principal=owner,
        agent=agent,
        intent=intent,
        scope=_scope(scope, tool or []),
        budget_calls=budget_calls,
        budget_spend=budget_spend,
        ttl=None if expires_in is None else parse_duration(expires_in),
    )
    now = SystemClock().now()
    if quiet:
        typer.echo(task.id)
        return
    if as_json:
        print_json({"task": task.describe(now), "warrant_id": record.id})
        return
    _show(task, now)
    console.print(f"  root warrant {record.id}")


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option(help="active, expired, completed or revoked.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's tasks.")] = None,
    as_json: AsJson = False,
) -> None:
    """List tasks, newest first."""
    found = registry(ctx).list(state=state, agent=agent)
    now = SystemClock().now()
    if as_json:
        print_json([task.describe(now) for task in found])
        return
    table = Table(title=f"{len(found)} tasks")
    for column in ("id", "agent", "state", "tools", "expires", "intent"):
        table.add_column(column, overflow="fold")
    for task in found:
        table.add_row(
            task.id,
            task.agent,
            task.status(now),
            ", ".join(sorted(task.scope.tools)),
            isoformat(task.expires_at),
            task.intent[:60],
        )
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, task_id: str, as_json: AsJson = False) -> None:
    """Show a task and its warrants."""
    tasks = registry(ctx)
    task = tasks.get(task_id)
    warrants = tasks.warrants(task_id)
    now = SystemClock().now()
    if as_json:
        print_json({"task": task.describe(now), "warrants": [w.describe() for w in warrants]})
        return
    _show(task, now)
    for w in warrants:
        state = "revoked" if w.revoked_at else ("bound" if w.jkt else "not bound yet")
        parent = f" from {w.parent_id}" if w.parent_id else ""
        console.print(f"  warrant {w.id} (depth {w.depth}{parent}) for {w.agent}: {state}")


@app.command("complete")
def complete(ctx: typer.Context, task_id: str, principal: Principal = "admin") -> None:
    """Mark a task completed; its warrants stop working at once."""
    registry(ctx).complete(task_id, actor=_principal(ctx, principal))
    console.print(f"task [bold]{task_id}[/] completed")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    task_id: str,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (audited).")] = "",
    principal: Principal = "admin",
) -> None:
    """Revoke a task; its warrants stop working at once."""
    registry(ctx).revoke(task_id, actor=_principal(ctx, principal), reason=reason)
    console.print(f"task [bold]{task_id}[/] revoked")


@app.command("revoke-warrant")
def revoke_warrant(
    ctx: typer.Context,
    warrant_id: str,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (audited).")] = "",
    principal: Principal = "admin",
) -> None:
    """Revoke a warrant and every warrant delegated below it."""
    revoked = registry(ctx).revoke_warrant(
        warrant_id, actor=_principal(ctx, principal), reason=reason
    )
    console.print(f"revoked {len(revoked)} warrant(s): {', '.join(revoked)}")
