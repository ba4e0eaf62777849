"""`ztgate federation`: the federated trust domains, their bundles and how fresh they are."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table

from ztgate.cli.common import console, print_json, settings
from ztgate.clock import SystemClock
from ztgate.errors import NotFoundError
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.federation import Federation, peers_from_settings, state_dir

app = typer.Typer(
    help="Federated trust domains: their bundles, and refreshing them from bundle endpoints.",
    no_args_is_help=True,
)


def load(ctx: typer.Context) -> Federation:
    """The configured federation, with the bundles last fetched (by any process)."""
    current = settings(ctx)
    identity = current.identity

    def local_roots() -> Sequence[Any]:
        ca = CertificateAuthority.load(
            current.path(identity.ca_dir), SystemClock(), passphrase=identity.passphrase()
        )
        return ca.roots()

    return Federation(
        peers_from_settings(current),
        SystemClock(),
        state_dir=state_dir(current),
        local_trust_domain=identity.trust_domain,
        local_roots=local_roots,
        strict=False,  # show a broken bundle file as an error, do not stop at it
    )


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _ago(timestamp: float | None, now: float) -> str:
    return "—" if timestamp is None else f"{_span(now - timestamp)} ago"


def _due(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "—"
    return f"in {_span(timestamp - now)}" if timestamp > now else "due"


def _print(statuses: list[dict[str, Any]], title: str) -> None:
    now = SystemClock().now()
    table = Table(title=title)
    table.add_column("trust domain", no_wrap=True)
    for name in ("source", "keys", "refreshed", "next"):
        table.add_column(name)
    table.add_column("last error", overflow="fold")
    for status in statuses:
        endpoint = status["source"] != "file"
        table.add_row(
            status["trust_domain"],
            status["source"],
            f"{status['x509_roots']} X.509, {status['jwt_keys']} JWT ({status['bundle_from']})"
            if status["bundle_from"]
            else "none",
            _ago(status["refreshed_at"], now),
            _due(status["next_refresh"], now) if endpoint else "on change",
            status["last_error"] or "",
        )
    console.print(table)
    for status in statuses:
        console.print(f"  {status['trust_domain']}: {status['location']}", soft_wrap=True)


@app.command("list")
def list_domains(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each federated trust domain: where its bundle comes from, its keys, its refreshes."""
    statuses = load(ctx).status()
    if as_json:
        print_json(statuses)
        return
    if not statuses:
        console.print("no federated trust domains ([[identity.federation]] in the config)")
        return
    _print(statuses, "federated trust domains")


@app.command("refresh")
def refresh(
    ctx: typer.Context,
    domains: Annotated[
        list[str] | None, typer.Argument(help="Trust domains (default: every one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fetch bundles from their endpoints now (and read bundle files again).

    A fetched bundle is saved where a running gateway picks it up on its next
    call. Exits 1 if any refresh failed (the last good bundle is kept).
    """
    federation = load(ctx)
    known = {peer.trust_domain for peer in federation.peers()}
    for domain in domains or []:
        if domain not in known:
            raise NotFoundError("federated trust domain", domain)
    # The table says what failed: no log line on top of it.
    quiet = logging.getLogger("ztgate.identity.federation")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        results = asyncio.run(federation.refresh(domains or None))
    finally:
        quiet.setLevel(level)
    statuses = [s for s in federation.status() if s["trust_domain"] in results]
    if as_json:
        print_json(statuses)
    else:
        _print(statuses, "refreshed")
    if not all(results.values()):
        raise typer.Exit(1)
