"""`ztgate eval agentdojo`: the AgentDojo benchmark with ztgate in every tool call."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ztgate.cli.common import console, err_console

app = typer.Typer(help="Evaluate ztgate against public benchmarks.", no_args_is_help=True)

SUITES = ("workspace", "travel", "banking", "slack")


@app.command("agentdojo")
def agentdojo(
    suite: Annotated[
        list[str] | None,
        typer.Option("--suite", help="A suite to run (repeat; default: all four)."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Benchmark version (default: the newest agentdojo has).")
    ] = None,
    attack: Annotated[
        str, typer.Option(help="AgentDojo attack that writes the injections.")
    ] = "important_instructions_no_model_name",
    user_task: Annotated[
        list[str] | None, typer.Option("--user-task", help="Only these user tasks (repeat).")
    ] = None,
    injection_task: Annotated[
        list[str] | None,
        typer.Option("--injection-task", help="Only these injection tasks (repeat)."),
    ] = None,
    results: Annotated[
        Path | None, typer.Option(help="Write every run's result here (JSON).")
    ] = None,
    document: Annotated[
        Path | None,
        typer.Option(help="Write the tables into this Markdown file, between its markers."),
    ] = None,
    chart: Annotated[Path | None, typer.Option(help="Write the chart here (SVG).")] = None,
    model_url: Annotated[
        str | None,
        typer.Option(
            help="An OpenAI-compatible base URL: run AgentDojo's LLM pipeline instead of the "
            "scripted agent (API key in ZTGATE_EVAL_API_KEY or OPENAI_API_KEY)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model to ask at --model-url.")] = None,
    policy: Annotated[
        list[Path] | None,
        typer.Option(
            "--policy", help="A .cedar file added to the default set in each gateway (repeat)."
        ),
    ] = None,
    section: Annotated[
        str, typer.Option(help="The markers in --document to write between (<!-- NAME:begin -->).")
    ] = "agentdojo-eval",
    from_results: Annotated[
        Path | None,
        typer.Option(help="Run nothing: write the tables, chart and document from this file."),
    ] = None,
) -> None:
    """Run AgentDojo's suites through a real gateway, and without one; report both."""
    from ztgate.evaluation.agentdojo import INSTALL_HINT, agentdojo_available

    if not agentdojo_available():
        print(INSTALL_HINT, file=sys.stderr)
        raise typer.Exit(2)
    from ztgate.evaluation.agentdojo.evaluate import evaluate, render

    if from_results is not None:
        render(console, from_results, document=document, chart_path=chart, section_name=section)
        return

    if (model_url is None) != (model is None):
        err_console.print("--model-url and --model go together")
        raise typer.Exit(2)
    chosen = tuple(suite) if suite else SUITES
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        err_console.print(f"unknown suite {unknown[0]!r} (known: {', '.join(SUITES)})")
        raise typer.Exit(2)
    evaluate(
        console,
        suites=chosen,
        version=version,
        attack=attack,
        user_tasks=user_task or None,
        injection_tasks=injection_task or None,
        results_path=results,
        document=document,
        chart_path=chart,
        model=(model_url, model) if model_url is not None and model is not None else None,
        policies=policy or [],
        section_name=section,
    )
