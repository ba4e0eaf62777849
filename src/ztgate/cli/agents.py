"""`ztgate agents`: register, list, show and remove workload registration entries."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ztgate.audit import AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock, isoformat
from ztgate.errors import InvalidInputError
from ztgate.identity.entries import DEFAULT_JOIN_TOKEN_TTL, EntryRegistry, RegistrationEntry

app = typer.Typer(
    help="Register which local processes receive which SPIFFE IDs.", no_args_is_help=True
)


def registry(ctx: typer.Context) -> EntryRegistry:
    """The entry registry of the configured store, auditing to the configured chain."""
    current = settings(ctx)
    db = database(ctx)
    clock = SystemClock()
    audit = AuditLog(db, clock, chain=current.audit.chain)
    return EntryRegistry(db, clock, current.identity.trust_domain, audit=audit)


def _when(timestamp: float | None) -> str:
    return "" if timestamp is None else isoformat(timestamp)


def _how(entry: RegistrationEntry) -> str:
    if entry.selectors:
        return " ".join(entry.selectors)
    return "join token (used)" if entry.consumed_at is not None else "join token"


@app.command("register")
def register(
    ctx: typer.Context,
    spiffe_id: Annotated[
        str, typer.Argument(help="SPIFFE ID in the local trust domain, with a path.")
    ],
    selector: Annotated[
        list[str] | None,
        typer.Option(
            "--selector",
            "-s",
            help="unix:uid:<n>, unix:gid:<n>, unix:path:<exe>, unix:sha256:<hex> (all must match).",
        ),
    ] = None,
    join_token: Annotated[
        bool, typer.Option("--join-token", help="Create a one-time join token instead.")
    ] = False,
    ttl: Annotated[
        float, typer.Option(help="Seconds a join token stays usable.")
    ] = DEFAULT_JOIN_TOKEN_TTL,
    owner: Annotated[str, typer.Option(help="Who is responsible for this agent.")] = "",
) -> None:
    """Register a SPIFFE ID for processes matching every --selector, or behind a join token."""
    entries = registry(ctx)
    if join_token:
        if selector:
            raise InvalidInputError("use either --selector or --join-token, not both")
        entry, token = entries.register_join_token(spiffe_id, owner=owner, ttl=ttl)
        console.print(f"registered entry [bold]{entry.id}[/] for {entry.spiffe_id}")
        console.print("join token (shown once, single use, expires " + _when(entry.expires_at))
        console.print(token, soft_wrap=True)
        return
    entry = entries.register(spiffe_id, selector or [], owner=owner)
    console.print(f"registered entry [bold]{entry.id}[/] for {entry.spiffe_id}: {_how(entry)}")


@app.command("list")
def list_entries(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List registration entries."""
    entries = registry(ctx).list()
    if as_json:
        print_json([entry.describe() for entry in entries])
        return
    table = Table("id", "SPIFFE ID", "selectors", "owner", title=f"{len(entries)} entries")
    for entry in entries:
        table.add_row(entry.id, entry.spiffe_id, _how(entry), entry.owner)
    console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one registration entry."""
    entry = registry(ctx).get(entry_id)
    if as_json:
        print_json(entry.describe())
        return
    console.print(f"[bold]id[/]: {entry.id}")
    console.print(f"[bold]spiffe_id[/]: {entry.spiffe_id}")
    console.print(f"[bold]owner[/]: {entry.owner}")
    console.print(f"[bold]kind[/]: {entry.kind}")
    for value in entry.selectors:
        console.print(f"[bold]selector[/]: {value}")
    console.print(f"[bold]created[/]: {_when(entry.created_at)}")
    if entry.expires_at is not None:
        console.print(f"[bold]expires[/]: {_when(entry.expires_at)}")
    if entry.consumed_at is not None:
        console.print(f"[bold]used[/]: {_when(entry.consumed_at)}")


@app.command("remove")
def remove(ctx: typer.Context, entry_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove an entry; matching processes get no new SVID from the next refresh on."""
    entry = registry(ctx).remove(entry_id)
    console.print(f"removed entry [bold]{entry.id}[/] ({entry.spiffe_id})")
