"""`ztgate cluster up`: PostgreSQL, Redis, gateway replicas and HAProxy on loopback."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ztgate.cli.common import console

app = typer.Typer(help="A local cluster: replicas behind a load balancer (docs/deployment.md).")


@app.command("up")
def up(
    replicas: Annotated[int, typer.Option(min=1, max=8, help="Gateway replicas.")] = 3,
    port: Annotated[int, typer.Option(help="The load balancer's port (127.0.0.1).")] = 8470,
    replica_port: Annotated[
        int, typer.Option(help="The first replica's port; the others follow it.")
    ] = 8481,
    workdir: Annotated[
        Path,
        typer.Option(
            help="The cluster's config and keys: keys made the first time, the config "
            "written at each start (it names that run's PostgreSQL and Redis)."
        ),
    ] = Path(".cluster"),
) -> None:
    """Start PostgreSQL, Redis, N `ztgate serve` replicas and HAProxy; Ctrl-C stops them all."""
    from ztgate.cluster import LocalCluster

    cluster = LocalCluster(
        workdir,
        replicas=replicas,
        port=port,
        replica_ports=[replica_port + i for i in range(replicas)],
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        console.print(f"starting PostgreSQL, Redis, {replicas} replicas and HAProxy…")
        cluster.start()
        for line in cluster.lines:
            console.print(f"  {line}")
        console.print(
            f"[green]✓[/] ztgate cluster on {cluster.url} (config {cluster.config}); "
            "Ctrl-C stops everything"
        )
        while not stop.wait(1):
            for replica in cluster.members:
                if replica.process is not None and replica.process.poll() is not None:
                    console.print(f"[yellow]{replica.name} exited[/] (see {replica.log})")
                    replica.process = None
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping the cluster…")
        cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        console.print("stopped")
