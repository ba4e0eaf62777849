"""`ztgate enclave check`: can stdio MCP servers be sandboxed here, and how well."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ztgate.cli.common import console, print_json, settings
from ztgate.enclave.probe import inspect_sandbox, running_as_root
from ztgate.enclave.sandbox import SandboxOptions
from ztgate.enclave.seccomp import filter_program

app = typer.Typer(help="Execution enclaves for stdio MCP servers.", no_args_is_help=True)


def verdicts(
    found: dict[str, object], *, as_root: bool, uid: int, seccomp: bool = True
) -> list[tuple[bool, str]]:
    """Each property an enclave must have, and whether the test enclave had it."""
    environment = found.get("environment")
    names = set(environment) if isinstance(environment, list) else set()
    filtered = found.get("seccomp") is True or not seccomp
    return [
        (filtered, "seccomp filter" if seccomp else "no seccomp filter on this architecture"),
        (found.get("network_isolated") is True, "no network but its own loopback"),
        (found.get("root_read_only") is True, "read-only root"),
        (found.get("no_new_privileges") is True, "no new privileges (PR_SET_NO_NEW_PRIVS)"),
        (found.get("capabilities") == "0000000000000000", "no capabilities"),
        (not as_root or found.get("uid") == uid, f"runs as uid {found.get('uid')}"),
        (not names & {"USER", "SHELL", "LOGNAME"}, "scrubbed environment"),
    ]


@app.command("check")
def check(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Start a throw-away enclave and report what it can see and do (exit 1 if unsafe).

    Raises:
        SandboxUnavailableError: no sandbox can be created here.
    """
    options = SandboxOptions.from_settings(settings(ctx).enclaves)
    found = asyncio.run(inspect_sandbox(options))
    results = verdicts(
        found, as_root=running_as_root(), uid=options.uid, seccomp=filter_program() is not None
    )
    ok = all(passed for passed, _ in results)
    if json_output:
        print_json({"ok": ok, "enclave": found})
    else:
        for passed, what in results:
            console.print(f"[green]✓[/] {what}" if passed else f"[red]✗[/] {what}")
        top = found.get("top_level")
        console.print(f"visible at /: {' '.join(top) if isinstance(top, list) else '?'}")
    if not ok:
        raise typer.Exit(1)
