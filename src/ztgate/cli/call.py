"""`ztgate call`: act as an agent for one call — identity from the Workload API, a task's
warrant, a proof — through the SDK, and print the result or why it was refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ztgate.cli.common import print_json
from ztgate.cli.common import settings as current_settings
from ztgate.config import Settings
from ztgate.errors import InvalidInputError


def gateway_url(settings: Settings) -> str:
    """The URL of the configured gateway (a wildcard host means loopback)."""
    gateway = settings.gateway
    host = "127.0.0.1" if gateway.host in {"0.0.0.0", "::", ""} else gateway.host  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if gateway.tls else 'http'}://{host}:{gateway.port}"


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"ARGUMENTS is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError('ARGUMENTS is a JSON object, e.g. \'{"city": "Lisbon"}\'')
    return value


def call(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="The tool to call.")],
    arguments: Annotated[str, typer.Argument(help="Its arguments, a JSON object.")] = "{}",
    task: Annotated[str, typer.Option("--task", "-t", help="The task's id.")] = "",
    warrant: Annotated[
        str | None, typer.Option(help="A warrant delegated to this agent (default: the task's).")
    ] = None,
    justification: Annotated[
        str | None, typer.Option("--justification", "-j", help="Why the agent makes this call.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="The gateway (default: from the config).")] = None,
    socket: Annotated[
        Path | None, typer.Option(help="The Workload API socket (default: from the config).")
    ] = None,
    spiffe_id: Annotated[
        str | None, typer.Option(help="Which identity, if this process has several.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole answer.")] = False,
) -> None:
    """Call TOOL as the agent this process is registered as, under a task's warrant."""
    from ztgate.sdk import Agent, CallDenied, ZtgateError

    if not task:
        raise InvalidInputError("--task is required: the task this call is made for")
    settings = current_settings(ctx)
    parsed = _arguments(arguments)
    where = socket or settings.path(settings.identity.workload_socket)
    try:
        with Agent.connect(
            url or gateway_url(settings),
            socket_path=str(Path(where).resolve()),
            audience=settings.gateway.audience,
            spiffe_id=spiffe_id,
        ) as agent:
            agent.bind(task_id=task, warrant_id=warrant)
            answer = agent.call(tool, parsed, justification=justification)
    except CallDenied as denied:
        why = "; ".join(f"{r.check}: {r.reason}" for r in denied.reasons) or denied.message
        sys.stderr.write(f"ztgate: denied: {' '.join(why.split())}\n")
        raise typer.Exit(1) from denied
    except ZtgateError as exc:
        kind = type(exc).__name__
        sys.stderr.write(f"ztgate: error: {kind}: {' '.join(exc.message.split())}\n")
        raise typer.Exit(1) from exc
    if as_json:
        print_json(
            {
                "call_id": answer.call_id,
                "result": answer.result,
                "verdicts": [
                    {"check": v.check, "outcome": v.outcome, "reason": v.reason}
                    for v in answer.verdicts
                ],
            }
        )
    else:
        print_json(answer.result)
