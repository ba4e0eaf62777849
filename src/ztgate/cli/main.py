"""The `ztgate` command."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ztgate import __version__
from ztgate.cli import agents as agents_cli
from ztgate.cli import approvals as approvals_cli
from ztgate.cli import audit as audit_cli
from ztgate.cli import ca as ca_cli
from ztgate.cli import call as call_cli
from ztgate.cli import cluster as cluster_cli
from ztgate.cli import containment as containment_cli
from ztgate.cli import enclave as enclave_cli
from ztgate.cli import eval as eval_cli
from ztgate.cli import federation as federation_cli
from ztgate.cli import mcp as mcp_cli
from ztgate.cli import policy as policy_cli
from ztgate.cli import principals as principals_cli
from ztgate.cli import revoke as revoke_cli
from ztgate.cli import tasks as tasks_cli
from ztgate.cli import tools as tools_cli
from ztgate.cli import workload_api as workload_api_cli
from ztgate.cli.common import console, settings
from ztgate.config import Settings, config_path
from ztgate.errors import GatewayError, PolicyLoadError
from ztgate.store.database import display_url

app = typer.Typer(
    name="ztgate",
    help="ztgate: a zero-trust gateway for autonomous AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(tools_cli.app, name="tools")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(ca_cli.app, name="ca")
app.add_typer(agents_cli.app, name="agents")
app.add_typer(workload_api_cli.app, name="workload-api")
app.add_typer(revoke_cli.app, name="revoke")
app.add_typer(principals_cli.app, name="principals")
app.add_typer(tasks_cli.app, name="tasks")
app.command("call")(call_cli.call)
app.add_typer(federation_cli.app, name="federation")
app.add_typer(containment_cli.kill_app, name="kill")
app.add_typer(containment_cli.resume_app, name="resume")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(approvals_cli.app, name="approvals")
app.add_typer(mcp_cli.app, name="mcp")
app.add_typer(enclave_cli.app, name="enclave")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(cluster_cli.app, name="cluster")


@app.callback()
def _options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Config file (default: $ZTGATE_CONFIG or ./ztgate.toml)."
        ),
    ] = None,
) -> None:
    ctx.ensure_object(dict)["config_path"] = config


@app.command()
def init(
    ctx: typer.Context,
    demo: Annotated[bool, typer.Option(help="Also serve and register the demo tools.")] = False,
    trust_domain: Annotated[
        str | None, typer.Option(help="SPIFFE trust domain, e.g. acme.example.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rewrite the config file (never the keys).")] = False,
) -> None:
    """Write a commented config, create the data directory, keys and database."""
    from ztgate.cli.init import initialise

    _, done = initialise(
        config_path(ctx.obj.get("config_path")), demo=demo, force=force, trust_domain=trust_domain
    )
    for line in done:
        console.print(f"[green]✓[/] {line}")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on (loopback only unless authentication is required)."
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
) -> None:
    """Run the gateway."""
    from ztgate.http.server import check_bind, check_workers
    from ztgate.http.server import serve as run_server

    current = settings(ctx)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if overrides:
        current = current.model_copy(
            update={"gateway": current.gateway.model_copy(update=overrides)}
        )
    check_bind(current.gateway.host, current.gateway.authentication)
    check_workers(current)
    _check_policies(ctx, current)
    logging.basicConfig(
        level=current.gateway.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    console.print(
        f"ztgate {__version__} on http://{current.gateway.host}:{current.gateway.port} "
        f"(store: {display_url(current.database_url)}"
        + (f", {current.gateway.workers} workers)" if current.gateway.workers > 1 else ")")
    )
    run_server(current)


def _check_policies(ctx: typer.Context, current: Settings) -> None:
    """Load the policy set before serving, so a broken one is a one-line error, not a traceback.

    Raises:
        PolicyLoadError: the policies do not load (each problem as `file:line: message`).
    """
    from ztgate.cli.policy import registered_tools
    from ztgate.policy import loader

    directory = current.path(current.policy.dir)
    try:
        loader.load(loader.read(directory), registered_tools(ctx))
    except PolicyLoadError as exc:
        raise PolicyLoadError([f"{directory}/{problem}" for problem in exc.problems]) from exc


@app.command()
def demo(
    ctx: typer.Context,
) -> None:
    """Run a scripted scenario against a live gateway on loopback and show what happened."""
    from ztgate.demo.scenario import run_demo

    ok = run_demo(console)
    if not ok:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"ztgate {__version__}")


def main() -> None:
    """Entry point: one line on stderr and a non-zero exit on any error."""
    try:
        app()
    except GatewayError as exc:
        # Plain write, not Rich: one line however wide the terminal is.
        sys.stderr.write(f"ztgate: error: {' '.join(exc.diagnostics().split())}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
