"""`ztgate principals`: the humans and systems that create tasks, and their API keys."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, err_console, print_json
from ztgate.cli.common import settings as current_settings
from ztgate.clock import SystemClock, isoformat
from ztgate.errors import InvalidInputError
from ztgate.principals.registry import ROLES, Principal, PrincipalRegistry, parse_scope

ApproveAgent = Annotated[
    list[str] | None,
    typer.Option(
        "--approve-agent",
        "--agent",
        help="Approve only calls of agents matching this SPIFFE ID pattern ('*'; repeatable).",
    ),
]
ApproveTool = Annotated[
    list[str] | None,
    typer.Option(
        "--approve-tool",
        "--tool",
        help="Approve only calls to tools matching this name pattern ('*'; repeatable).",
    ),
]

app = typer.Typer(
    help="Principals (who tasks run on behalf of) and their API keys.", no_args_is_help=True
)
keys_app = typer.Typer(help="A principal's API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def registry(ctx: typer.Context) -> PrincipalRegistry:
    """The principal registry of the configured store, auditing to the configured chain."""
    db = database(ctx)
    clock = SystemClock()
    return PrincipalRegistry(
        db, clock, audit=AuditLog(db, clock, chain=current_settings(ctx).audit.chain)
    )


def _when(timestamp: float | None) -> str:
    return "" if timestamp is None else isoformat(timestamp)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lower-case name, e.g. alice or billing-bot.")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", "-r", help=f"One of {', '.join(ROLES)} (repeatable)."),
    ] = None,
    kind: Annotated[str, typer.Option(help="human or system.")] = "human",
    approve_agent: ApproveAgent = None,
    approve_tool: ApproveTool = None,
) -> None:
    """Add a principal."""
    scope = parse_scope(approve_agent or (), approve_tool or ())
    principal = registry(ctx).add(name, roles=role or [], kind=kind, scope=scope)
    roles = ", ".join(principal.roles) or "no roles"
    console.print(
        f"added principal [bold]{principal.name}[/] ({principal.kind}; {roles}{_scope(principal)})"
    )


@app.command("scope")
def scope(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal.")],
    agent: ApproveAgent = None,
    tool: ApproveTool = None,
) -> None:
    """Limit what a principal may approve to some agents and/or tools (none given: anything)."""
    principal = registry(ctx).set_scope(name, parse_scope(agent or (), tool or ()))
    console.print(f"principal [bold]{principal.name}[/] approves{_scope(principal) or ' any call'}")


def _scope(principal: Principal) -> str:
    limits = principal.approver_scope
    if limits.unlimited:
        return ""
    parts = []
    if limits.agents:
        parts.append("agents " + ", ".join(limits.agents))
    if limits.tools:
        parts.append("tools " + ", ".join(limits.tools))
    return "; approves only " + " and ".join(parts)


@app.command("list")
def list_principals(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the principals."""
    found = registry(ctx).list()
    if as_json:
        print_json([p.describe() for p in found])
        return
    table = Table(title=f"{len(found)} principals")
    for column in ("name", "kind", "roles", "approves", "created", "disabled"):
        table.add_column(column)
    for p in found:
        approves = _scope(p).removeprefix("; approves only ") or "any call"
        table.add_row(
            p.name,
            p.kind,
            ", ".join(p.roles),
            approves if p.has("approver") else "",
            _when(p.created_at),
            _when(p.disabled_at),
        )
    console.print(table)


@app.command("disable")
def disable(ctx: typer.Context, name: str) -> None:
    """Disable a principal: its API keys stop working at once."""
    registry(ctx).set_disabled(name, True)
    console.print(f"disabled principal [bold]{name}[/]")


@app.command("enable")
def enable(ctx: typer.Context, name: str) -> None:
    """Enable a disabled principal again."""
    registry(ctx).set_disabled(name, False)
    console.print(f"enabled principal [bold]{name}[/]")


@app.command("password")
def password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input (one line)."),
    ] = False,
) -> None:
    """Set a principal's web console password (argon2id; at least 12 characters).

    Every console session of the principal ends. Only principals with the
    approver or admin role can log in to the console.
    """
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidInputError("no password on standard input")
        secret = line.removesuffix("\n").removesuffix("\r")
    else:
        secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    registry(ctx).set_password(name, secret)
    console.print(f"set the console password of [bold]{name}[/]")


@keys_app.command("create")
def create_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The principal.")],
    ttl: Annotated[
        float | None, typer.Option(help="Seconds until the key expires (default: never).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the key (for scripts).")
    ] = False,
) -> None:
    """Create an API key; the key is printed once and never stored."""
    record, key = registry(ctx).create_key(name, ttl=ttl)
    if quiet:
        typer.echo(key)
        return
    err_console.print(
        f"API key {record.id} for [bold]{name}[/]"
        + (f", expires {isoformat(record.expires_at)}" if record.expires_at else "")
        + ". It is shown once; store it as a secret:"
    )
    typer.echo(key)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this principal's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List API keys (never their secrets)."""
    found = registry(ctx).keys(name)
    if as_json:
        print_json([k.describe() for k in found])
        return
    table = Table(title=f"{len(found)} API keys")
    for column in ("id", "principal", "created", "expires", "revoked"):
        table.add_column(column)
    for k in found:
        table.add_row(
            k.id, k.principal, _when(k.created_at), _when(k.expires_at), _when(k.revoked_at)
        )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(metavar="KEY_ID")]
) -> None:
    """Revoke an API key; it fails on its next use."""
    record = registry(ctx).revoke_key(key_id)
    console.print(f"revoked API key {record.id} of [bold]{record.principal}[/]")
