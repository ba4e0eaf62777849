"""`ztgate mcp`: MCP clients and the gateway (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import Annotated

import typer

from ztgate.audit import AuditEntry, AuditLog
from ztgate.cli.common import console, database, print_json, settings
from ztgate.clock import SystemClock
from ztgate.errors import InvalidInputError
from ztgate.mcp.servers import McpServer, McpServerRegistry

app = typer.Typer(no_args_is_help=True, help="MCP: connect desktop clients to the gateway.")


@app.command("connect")
def connect(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", help="The task the agent works on.")],
    url: Annotated[
        str | None, typer.Option(help="The gateway (default: this config's host and port).")
    ] = None,
    socket: Annotated[
        str | None, typer.Option(help="The SPIFFE Workload API socket (default: this config's).")
    ] = None,
    spiffe_id: Annotated[
        str | None, typer.Option("--spiffe-id", help="Which identity, if registered as several.")
    ] = None,
    justification: Annotated[
        str, typer.Option(help="Said for calls whose client gives no justification.")
    ] = "",
    approval_timeout: Annotated[
        float, typer.Option(help="Seconds a call may wait for a person's approval.")
    ] = 600.0,
) -> None:
    """Serve MCP on stdin/stdout as the agent, relaying to the gateway (for desktop clients)."""
    from ztgate.mcp.bridge import BridgeOptions, run_bridge

    config = settings(ctx)
    if approval_timeout < 0:
        raise InvalidInputError("--approval-timeout must not be negative")
    gateway = config.gateway
    scheme = "https" if gateway.tls else "http"
    options = BridgeOptions(
        url=url or f"{scheme}://{gateway.host}:{gateway.port}",
        socket_path=socket or str(config.path(config.identity.workload_socket)),
        task_id=task,
        spiffe_id=spiffe_id,
        justification=justification,
        approval_timeout=approval_timeout,
    )
    from ztgate.sdk import ZtgateError

    try:
        asyncio.run(run_bridge(options))
    except ZtgateError as exc:
        kind = type(exc).__name__
        sys.stderr.write(f"ztgate: error: {kind}: {' '.join(exc.message.split())}\n")
        raise typer.Exit(1) from exc


def _registry(ctx: typer.Context) -> tuple[McpServerRegistry, AuditLog]:
    db = database(ctx)
    clock = SystemClock()
    return McpServerRegistry(db, clock), AuditLog(db, clock, chain=settings(ctx).audit.chain)


def _env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"--env takes NAME=VALUE: {pair!r}")
        env[name] = value
    return env


@app.command("add")
def add(
    ctx: typer.Context,
    name: str,
    command: Annotated[
        str | None, typer.Option(help="A stdio server: the command (run in an enclave).")
    ] = None,
    arg: Annotated[list[str] | None, typer.Option(help="An argument of the command.")] = None,
    url: Annotated[str | None, typer.Option(help="A Streamable HTTP server: its URL.")] = None,
    read_only: Annotated[
        list[str] | None,
        typer.Option(help="A tool confirmed read-only (it must say so itself, too)."),
    ] = None,
    path: Annotated[list[str] | None, typer.Option(help="A path the server may read.")] = None,
    rw_path: Annotated[list[str] | None, typer.Option(help="A path the server may write.")] = None,
    cwd: Annotated[str | None, typer.Option(help="Its working directory.")] = None,
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE set inside.")] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="A domain it may reach through the egress proxy.")
    ] = None,
    no_sandbox: Annotated[
        bool, typer.Option("--no-sandbox", help="Run unconfined (warned about at every start).")
    ] = False,
    per_task: Annotated[
        bool,
        typer.Option(
            "--per-task",
            help="A stdio server: one instance (and enclave) per task and agent, attributed "
            "to them and held to their domains.",
        ),
    ] = False,
    secrets_command: Annotated[
        str | None,
        typer.Option(
            help="With --per-task: a command (absolute path, then arguments) printing a task's "
            "secrets as a JSON object of environment variables; run when its instance starts.",
        ),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace a server of that name.")] = False,
) -> None:
    """Add an upstream MCP server; the gateway connects and imports its tools."""
    if (command is None) == (url is None):
        raise InvalidInputError("give either --command (stdio) or --url (Streamable HTTP)")
    server = McpServer(
        name=name,
        transport="stdio" if command else "http",
        command=command or "",
        args=tuple(arg or ()),
        env=_env(env or []),
        cwd=cwd,
        read_only_paths=tuple(path or ()),
        read_write_paths=tuple(rw_path or ()),
        allowed_domains=tuple(domain or ()),
        sandbox=not no_sandbox,
        url=url or "",
        read_only_tools=tuple(read_only or ()),
        per_task=per_task,
        secrets_command=_command_line(secrets_command),
    )
    registry, audit = _registry(ctx)
    detail = {"action": "mcp.add", "server": name, "transport": server.transport}
    entry = AuditEntry(kind="admin", outcome="allow", detail=detail)
    registry.add(server, replace=replace, also=lambda conn: audit.append_within(conn, [entry]))
    where = server.url or " ".join([server.command, *server.args])
    console.print(f"added MCP server [bold]{name}[/] ({server.transport}: {where})")
    if not server.sandbox:
        console.print("[yellow]it will run without a sandbox: every start warns about it[/]")
    if server.per_task:
        console.print("each task that calls it gets an instance of its own (started on its call)")
    console.print(f"a running gateway connects to it and imports its tools as {name}.TOOL")


def _command_line(text: str | None) -> tuple[str, ...]:
    """A command line split as a POSIX shell would (no shell ever runs it)."""
    if not text:
        return ()
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise InvalidInputError(f"--secrets-command: {exc}") from exc


@app.command("list")
def list_servers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """The upstream MCP servers."""
    registry, _ = _registry(ctx)
    servers = registry.all()
    if as_json:
        print_json([server.to_json() for server in servers])
        return
    if not servers:
        console.print("no MCP servers (add one with ztgate mcp add)")
        return
    for server in servers:
        where = server.url or " ".join([server.command, *server.args])
        sandbox = "" if server.sandbox or server.transport == "http" else " [yellow]unsandboxed[/]"
        per_task = " (an instance per task)" if server.per_task else ""
        console.print(f"[bold]{server.name}[/] {server.transport}: {where}{sandbox}{per_task}")


@app.command("remove")
def remove(ctx: typer.Context, name: str) -> None:
    """Remove an upstream MCP server (remove its tools with ztgate tools remove)."""
    registry, audit = _registry(ctx)
    entry = AuditEntry(
        kind="admin", outcome="allow", detail={"action": "mcp.remove", "server": name}
    )
    registry.remove(name, also=lambda conn: audit.append_within(conn, [entry]))
    console.print(f"removed MCP server {name}")
