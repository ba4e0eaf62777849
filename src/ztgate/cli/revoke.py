"""`ztgate revoke`: revoke an agent, a certificate or a registration entry; list revocations."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock, isoformat
from ztgate.identity.revocation import (
    ENTRY,
    SERIAL,
    SPIFFE_ID,
    Revocation,
    RevocationRegistry,
    retention_for,
)

app = typer.Typer(
    help="Revoke agents (SPIFFE IDs), certificates (serials) and registration entries.",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit log).")]


def registry(ctx: typer.Context) -> RevocationRegistry:
    """The revocation registry of the configured store, auditing to the configured chain."""
    current = settings(ctx)
    db = database(ctx)
    clock = SystemClock()
    audit = AuditLog(db, clock, chain=current.audit.chain)
    return RevocationRegistry(db, clock, retention=retention_for(current.identity), audit=audit)


def _report(rows: list[Revocation]) -> None:
    for row in rows:
        shown = f"0x{row.value} ({int(row.value, 16)})" if row.kind == SERIAL else row.value
        console.print(
            f"revoked {row.kind} [bold]{shown}[/] until {isoformat(row.expires_at)} (id {row.id})"
        )


@app.command("agent")
def agent(
    ctx: typer.Context,
    spiffe_id: Annotated[str, typer.Argument(metavar="SPIFFE_ID", help="The agent's SPIFFE ID.")],
    reason: Reason = "",
) -> None:
    """Revoke every SVID naming SPIFFE_ID, from the next call on."""
    _report(registry(ctx).revoke(SPIFFE_ID, spiffe_id, reason=reason))


@app.command("serial")
def serial(
    ctx: typer.Context,
    value: Annotated[
        str,
        typer.Argument(
            metavar="HEX_OR_DECIMAL",
            help="Decimal, or hex with 0x, colons or a-f (an all-digit hex serial needs 0x).",
        ),
    ],
    reason: Reason = "",
) -> None:
    """Revoke one X.509-SVID by its serial number."""
    _report(registry(ctx).revoke(SERIAL, value, reason=reason))


@app.command("entry")
def entry(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(metavar="ENTRY_ID")],
    reason: Reason = "",
) -> None:
    """Revoke a registration entry and the SPIFFE ID it names."""
    _report(registry(ctx).revoke(ENTRY, entry_id, reason=reason))


@app.command("list")
def list_revocations(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    include_expired: Annotated[
        bool, typer.Option("--all", help="Include expired revocations not yet purged.")
    ] = False,
) -> None:
    """List the active revocations."""
    rows = registry(ctx).list(include_expired=include_expired)
    if as_json:
        print_json([row.describe() for row in rows])
        return
    table = Table(title=f"{len(rows)} revocations")
    for column in ("id", "kind", "value", "reason", "expires"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row.id, row.kind, row.value, row.reason, isoformat(row.expires_at))
    console.print(table)
