"""`ztgate audit`: verify the chain, follow it, export it."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ztgate.audit.checkpoint import load_public_key
from ztgate.audit.reader import AuditReader, verify_export
from ztgate.audit.verify import VerifyReport
from ztgate.cli.common import console, database, err_console, print_json, settings

app = typer.Typer(help="Verify, follow and export the audit log.", no_args_is_help=True)


class ExportFormat(StrEnum):
    """Export formats."""

    JSONL = "jsonl"


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Option("--file", help="Verify an exported JSONL file instead.")
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Audit public key (PEM) to check checkpoints."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check every record's hash and link, and every signed checkpoint."""
    current = settings(ctx)
    key_path = public_key or current.path(current.audit.public_key)
    key = load_public_key(key_path) if public_key or key_path.exists() else None
    if file is not None:
        report = verify_export(file, key)
    else:
        report = AuditReader(database(ctx)).verify(key)
    _print_report(report, as_json, checked_signatures=key is not None)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: VerifyReport, as_json: bool, *, checked_signatures: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "signatures_checked": checked_signatures,
                "chains": [
                    {
                        "chain": c.chain,
                        "records": c.records,
                        "checkpoints": c.checkpoints,
                        "first_bad_seq": c.first_bad_seq,
                        "problem": c.problem,
                    }
                    for c in report.chains
                ],
            }
        )
        return
    if not report.chains:
        console.print("the audit log is empty")
    for chain in report.chains:
        if chain.ok:
            console.print(
                f"[green]ok[/] chain {chain.chain}: {chain.records} records, "
                f"{chain.checkpoints} signed checkpoints"
            )
        else:
            err_console.print(
                f"[red]FAILED[/] chain {chain.chain}: record {chain.first_bad_seq}: {chain.problem}"
            )
    if not checked_signatures:
        err_console.print("warning: no audit public key; checkpoint signatures were not checked")


@app.command("tail")
def tail(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, max=10_000)] = 20,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new records.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON Lines.")] = False,
) -> None:
    """Show the newest records."""
    reader = AuditReader(database(ctx))
    records = reader.tail(lines)
    _print_records(records, as_json)
    if not follow:
        return
    seen = {(r["chain"], r["seq"]) for r in records}
    try:
        while True:
            time.sleep(1.0)
            fresh = [r for r in reader.tail(200) if (r["chain"], r["seq"]) not in seen]
            seen.update((r["chain"], r["seq"]) for r in fresh)
            _print_records(fresh, as_json)
    except KeyboardInterrupt:
        return


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        import orjson

        for record in records:
            sys.stdout.write(orjson.dumps(record).decode() + "\n")
        sys.stdout.flush()
        return
    if not records:
        return
    table = Table("seq", "time", "kind", "outcome", "tool", "reason")
    colours = {"allow": "green", "deny": "red", "ask": "yellow", "error": "magenta"}
    for r in records:
        reasons = r.get("reasons") or []
        reason = "; ".join(
            f"{x['check']}: {x['reason']}" for x in reasons if x.get("outcome") != "allow"
        )
        action = (r.get("detail") or {}).get("action", "")
        outcome = r["outcome"]
        table.add_row(
            f"{r['chain']}:{r['seq']}",
            r["ts"][11:23],
            r["kind"],
            f"[{colours.get(outcome, 'white')}]{outcome}[/]",
            r.get("tool") or "",
            reason or action,
        )
    console.print(table)


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.JSONL,
) -> None:
    """Export every chain, with its checkpoints, for a third party to verify."""
    current = settings(ctx)
    key_path = current.path(current.audit.public_key)
    key = load_public_key(key_path) if key_path.exists() else None
    reader = AuditReader(database(ctx))
    if output is None:
        reader.export_jsonl(sys.stdout, key)
        return
    with output.open("w", encoding="utf-8") as handle:
        count = reader.export_jsonl(handle, key)
    err_console.print(f"exported {count} records to {output}")
