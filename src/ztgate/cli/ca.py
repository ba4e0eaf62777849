"""`ztgate ca`: the trust domain's certificate authority."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from ztgate.cli.common import console, print_json, settings
from ztgate.clock import SystemClock, isoformat
from ztgate.identity import _hazmat
from ztgate.identity.authority import CertificateAuthority
from ztgate.identity.bundle import local_bundle

app = typer.Typer(help="Show and rotate the certificate authority.", no_args_is_help=True)


def load(ctx: typer.Context) -> CertificateAuthority:
    """The CA of the configured trust domain."""
    current = settings(ctx)
    return CertificateAuthority.load(
        current.path(current.identity.ca_dir),
        SystemClock(),
        passphrase=current.identity.passphrase(),
    )


def _describe(ca: CertificateAuthority) -> dict[str, Any]:
    now = SystemClock().now()
    active = (
        ca.current().id
        if any(a.active_from <= now < a.not_after for a in ca.authorities())
        else None
    )
    authorities = []
    for authority in ca.authorities():
        if authority.not_after <= now:
            state = "expired"
        elif authority.id == active:
            state = "active"
        elif authority.active_from > now:
            state = "prepared"
        else:
            state = "retiring"
        authorities.append(
            {
                "id": authority.id,
                "state": state,
                "active_from": isoformat(authority.active_from),
                "not_after": isoformat(authority.not_after),
                "jwt_kid": authority.jwt_kid,
                "fingerprint": _hazmat.fingerprint(authority.certificate).hex(),
            }
        )
    return {
        "trust_domain": ca.trust_domain.name,
        "roots": [
            {
                "fingerprint": _hazmat.fingerprint(root).hex(),
                "not_after": isoformat(root.not_valid_after_utc.timestamp()),
            }
            for root in ca.roots()
        ],
        "authorities": authorities,
    }


@app.command("show")
def show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the trust domain, its roots and its signing authorities."""
    described = _describe(load(ctx))
    if as_json:
        print_json(described)
        return
    console.print(f"trust domain [bold]spiffe://{described['trust_domain']}[/]")
    for root in described["roots"]:
        console.print(f"root {root['fingerprint'][:16]}… valid until {root['not_after']}")
    table = Table("id", "state", "signs from", "expires", "JWT kid", title="signing authorities")
    for a in described["authorities"]:
        table.add_row(a["id"], a["state"], a["active_from"], a["not_after"], a["jwt_kid"])
    console.print(table)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    start_in: Annotated[
        float,
        typer.Option(help="Seconds until the new key signs (it is published at once)."),
    ] = 3600.0,
) -> None:
    """Introduce a new signing key, published now and signing after --start-in seconds."""
    ca = load(ctx)
    ttl = settings(ctx).identity.signing_ttl_days * 86400
    authority = ca.rotate(start_in=max(0.0, start_in), ttl=ttl)
    console.print(
        f"new signing authority {authority.id} (JWT kid {authority.jwt_kid}) is published now "
        f"and signs from {isoformat(authority.active_from)}"
    )


@app.command("bundle")
def bundle(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
) -> None:
    """Print the SPIFFE trust bundle (JWK set) for relying parties and federation."""
    document = orjson.dumps(local_bundle(load(ctx)), option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        sys.stdout.write(document.decode())
    else:
        output.write_bytes(document)
