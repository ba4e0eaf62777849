"""`ztgate approvals list|show|approve|reject`: deciding asked calls from the command line.

Like the HTTP API, deciding needs a principal with the approver role (admin
implies it); the four-eyes rule holds here too. Run on the gateway's host
with its configuration, the command acts directly on the store (no API key:
the audit record's `api_key` is null) and every gateway process sees the
decision at once: the waiting agent's long-poll returns.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ztgate.approvals.registry import Approval, ApprovalRegistry
from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock, isoformat
from ztgate.errors import InvalidInputError
from ztgate.principals.registry import PrincipalRegistry

app = typer.Typer(help="Approve or reject calls that wait for a person.", no_args_is_help=True)

ApprovalId = Annotated[str, typer.Argument(metavar="ID", help="The approval request's id.")]
Principal = Annotated[
    str, typer.Option("--principal", "-p", help="Who decides (a principal with the approver role).")
]
Comment = Annotated[str, typer.Option("--comment", "-c", help="Why (recorded in the audit log).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def registry(ctx: typer.Context) -> ApprovalRegistry:
    """The approvals of the configured store, auditing to the configured chain."""
    db = database(ctx)
    clock = SystemClock()
    return ApprovalRegistry(db, clock, audit=AuditLog(db, clock, chain=settings(ctx).audit.chain))


@app.command("list")
def list_approvals(
    ctx: typer.Context,
    state: Annotated[
        str, typer.Option("--state", help="pending, approved, rejected, used, expired or all.")
    ] = "pending",
    as_json: Json = False,
) -> None:
    """Requests, newest first (pending ones by default)."""
    found = registry(ctx).list(None if state == "all" else state)
    now = SystemClock().now()
    if as_json:
        print_json([a.describe(now) for a in found])
        return
    table = Table(title=f"{len(found)} {state if state != 'all' else ''} approvals".strip())
    for column in ("id", "state", "tool", "risk", "agent", "task", "principal", "expires"):
        table.add_column(column, overflow="fold")
    for a in found:
        table.add_row(
            a.id,
            a.status(now),
            a.tool,
            a.risk,
            a.agent,
            a.task_id,
            a.principal,
            isoformat(a.expires_at),
        )
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, approval_id: ApprovalId, as_json: Json = False) -> None:
    """Everything an approver needs: who, what, why, the task's intent."""
    found = registry(ctx).get(approval_id)
    now = SystemClock().now()
    if as_json:
        print_json(found.describe(now))
        return
    request = found.request
    reasons = "; ".join(f"{r['check']}: {r['reason']}" for r in request.get("reasons", []))
    rows = [
        ("id", found.id),
        ("state", found.status(now)),
        ("tool", f"{found.tool} ({found.risk})"),
        ("agent", found.agent),
        ("task", f"{found.task_id} of {found.principal}"),
        ("intent", str(request.get("intent", ""))),
        ("arguments", str(request.get("arguments_preview", ""))),
        ("arguments sha256", found.arguments_sha256),
        ("justification", str(request.get("justification", ""))),
        ("asked because", reasons),
        ("expires", isoformat(found.expires_at)),
        ("second person", "required" if found.second_person else "no"),
    ]
    if found.decided_by:
        rows.append(("decided by", f"{found.decided_by}: {found.comment or ''}".rstrip(": ")))
    for name, value in rows:
        console.print(f"[bold]{name}[/]: {value}", soft_wrap=True)


def _decide(
    ctx: typer.Context, approval_id: str, approve: bool, principal: str, comment: str
) -> Approval:
    found = PrincipalRegistry(database(ctx), SystemClock()).find(principal)
    if found is None:
        raise InvalidInputError(f"no principal {principal!r}")
    return registry(ctx).decide(approval_id, approve, principal=found, comment=comment)


@app.command("approve")
def approve(
    ctx: typer.Context,
    approval_id: ApprovalId,
    principal: Principal = "admin",
    comment: Comment = "",
) -> None:
    """Approve a request: the agent's identical call, re-sent with the approval, runs once."""
    decided = _decide(ctx, approval_id, True, principal, comment)
    console.print(f"approved {decided.id} ({decided.tool}) as {decided.decided_by}")


@app.command("reject")
def reject(
    ctx: typer.Context,
    approval_id: ApprovalId,
    principal: Principal = "admin",
    comment: Comment = "",
) -> None:
    """Reject a request: the agent's call is denied with the comment."""
    decided = _decide(ctx, approval_id, False, principal, comment)
    console.print(f"rejected {decided.id} ({decided.tool}) as {decided.decided_by}")
