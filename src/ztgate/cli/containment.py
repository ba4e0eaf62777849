"""`ztgate kill` and `ztgate resume`: the kill switch, from the command line.

`ztgate kill agent SPIFFE_ID | task TASK_ID | all` stops every call of that
agent, that task, or every call, from the next call of every gateway process
on (the "containment" generation); `ztgate resume` lifts it, and also lifts a
suspension the gateway put on a runaway agent. Both are audited, naming the
principal. `ztgate kill list` shows what is stopped.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock, isoformat
from ztgate.containment.holds import AGENT, ALL, TASK, Hold, HoldRegistry
from ztgate.errors import InvalidInputError
from ztgate.principals.registry import ADMIN, PrincipalRegistry

kill_app = typer.Typer(
    help="Stop every call of an agent, a task, or everything, from the next call on.",
    no_args_is_help=True,
)
resume_app = typer.Typer(
    help="Lift a kill (or the suspension of a runaway agent).", no_args_is_help=True
)

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")]
Principal = Annotated[
    str, typer.Option("--principal", "-p", help="Who does it (a principal with the admin role).")
]
SpiffeId = Annotated[str, typer.Argument(metavar="SPIFFE_ID", help="The agent's SPIFFE ID.")]
TaskId = Annotated[str, typer.Argument(metavar="TASK_ID", help="The task's id.")]


def registry(ctx: typer.Context) -> HoldRegistry:
    """The holds of the configured store, auditing to the configured chain."""
    db = database(ctx)
    clock = SystemClock()
    return HoldRegistry(db, clock, audit=AuditLog(db, clock, chain=settings(ctx).audit.chain))


def _admin(ctx: typer.Context, name: str) -> str:
    found = PrincipalRegistry(database(ctx), SystemClock()).find(name)
    if found is None:
        raise InvalidInputError(f"no principal {name!r}")
    if not found.has(ADMIN):
        raise InvalidInputError(f"principal {name!r} lacks the 'admin' role")
    return found.name


def _kill(ctx: typer.Context, scope: str, target: str, principal: str, reason: str) -> None:
    hold = registry(ctx).kill(scope, target, actor=_admin(ctx, principal), reason=reason)
    what = "every call" if scope == ALL else f"{scope} [bold]{hold.target}[/]"
    console.print(f"killed {what} (hold {hold.id}): refused from the next call on")


def _resume(ctx: typer.Context, scope: str, target: str, principal: str, reason: str) -> None:
    lifted = registry(ctx).resume(scope, target, actor=_admin(ctx, principal), reason=reason)
    what = "every call" if scope == ALL else f"{scope} [bold]{lifted[0].target}[/]"
    causes = ", ".join(sorted({hold.cause for hold in lifted}))
    console.print(f"resumed {what} (lifted: {causes})")


@kill_app.command("agent")
def kill_agent(
    ctx: typer.Context, spiffe_id: SpiffeId, reason: Reason = "", principal: Principal = "admin"
) -> None:
    """Stop every call of an agent (and of the sub-agents it delegated to)."""
    _kill(ctx, AGENT, spiffe_id, principal, reason)


@kill_app.command("task")
def kill_task(
    ctx: typer.Context, task_id: TaskId, reason: Reason = "", principal: Principal = "admin"
) -> None:
    """Stop every call of a task (it stays active: `ztgate resume task` lets it go on)."""
    _kill(ctx, TASK, task_id, principal, reason)


@kill_app.command("all")
def kill_all(ctx: typer.Context, reason: Reason = "", principal: Principal = "admin") -> None:
    """Stop every call, of every agent."""
    _kill(ctx, ALL, "*", principal, reason)


@kill_app.command("list")
def list_holds(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What is stopped: kills and suspensions."""
    holds: list[Hold] = registry(ctx).list()
    if as_json:
        print_json([hold.describe() for hold in holds])
        return
    table = Table(title=f"{len(holds)} stopped")
    for column in ("scope", "target", "cause", "by", "since", "reason", "id"):
        table.add_column(column, overflow="fold")
    for hold in holds:
        table.add_row(
            hold.scope,
            hold.target,
            hold.cause,
            hold.actor,
            isoformat(hold.created_at),
            hold.reason,
            hold.id,
        )
    console.print(table)


@resume_app.command("agent")
def resume_agent(
    ctx: typer.Context, spiffe_id: SpiffeId, reason: Reason = "", principal: Principal = "admin"
) -> None:
    """Let an agent call again: lifts its kill and its burst suspension."""
    _resume(ctx, AGENT, spiffe_id, principal, reason)


@resume_app.command("task")
def resume_task(
    ctx: typer.Context, task_id: TaskId, reason: Reason = "", principal: Principal = "admin"
) -> None:
    """Let a task's calls through again."""
    _resume(ctx, TASK, task_id, principal, reason)


@resume_app.command("all")
def resume_all(ctx: typer.Context, reason: Reason = "", principal: Principal = "admin") -> None:
    """Lift `kill all` (agents and tasks stopped one by one stay stopped)."""
    _resume(ctx, ALL, "*", principal, reason)
