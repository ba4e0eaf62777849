"""`ztgate workload-api serve`: the SPIFFE Workload API for local agents."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from ztgate.cli.common import console, settings
from ztgate.config import Settings
from ztgate.identity.service import serve_workload_api

app = typer.Typer(help="Serve SPIFFE identities to local processes.", no_args_is_help=True)


async def run(current: Settings, socket_path: Path, stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM).

    Raises:
        ConfigError: no CA, or the socket cannot be bound.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_workload_api(current, socket_path, stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@app.command("serve")
def serve(
    ctx: typer.Context,
    socket_path: Annotated[
        Path | None,
        typer.Option("--socket", help="Unix socket (default: [identity] workload_socket)."),
    ] = None,
) -> None:
    """Run the SPIFFE Workload API on a Unix socket until interrupted."""
    current = settings(ctx)
    path = socket_path or current.path(current.identity.workload_socket)
    logging.basicConfig(
        level=current.gateway.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Clients fetch once and hang up: grpclib logs every such cancellation at INFO.
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)
    console.print(
        f"SPIFFE Workload API for spiffe://{current.identity.trust_domain} on unix://{path}"
    )
    asyncio.run(run(current, path))
