"""`ztgate mcp`: MCP clients and the gateway (docs/mcp.md)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from ztgate.cli.common import settings
from ztgate.errors import InvalidInputError

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
