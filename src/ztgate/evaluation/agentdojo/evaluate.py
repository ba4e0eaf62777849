"""`ztgate eval agentdojo`: every suite, with ztgate and without, progress bars, the report."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ztgate.evaluation.agentdojo.outcomes import PairResult
from ztgate.evaluation.agentdojo.report import (
    chart_svg,
    load_results,
    save_results,
    section,
    tables,
    write_section,
)
from ztgate.evaluation.agentdojo.run import SUITES, count_pairs, newest_version, run_suite


def machine() -> str:
    """The machine the figures come from."""
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def render(
    console: Console,
    results_path: Path,
    *,
    document: Path | None = None,
    chart_path: Path | None = None,
    section_name: str = "agentdojo-eval",
) -> None:
    """Write the tables, chart and document again from a saved results file (nothing runs)."""
    meta, defended, undefended = load_results(results_path)
    _write(console, meta, defended, undefended, None, document, chart_path, section_name)


def evaluate(
    console: Console,
    *,
    suites: Sequence[str] = SUITES,
    version: str | None = None,
    attack: str = "important_instructions_no_model_name",
    user_tasks: Sequence[str] | None = None,
    injection_tasks: Sequence[str] | None = None,
    results_path: Path | None = None,
    document: Path | None = None,
    chart_path: Path | None = None,
    model: tuple[str, str] | None = None,
    policies: Sequence[Path] = (),
    section_name: str = "agentdojo-eval",
) -> tuple[list[PairResult], list[PairResult], dict[str, Any]]:
    """Run the benchmark; print the tables; write what was asked for."""
    import agentdojo

    version = version or newest_version()
    started = time.monotonic()
    counts = count_pairs(suites, version, user_tasks=user_tasks, injection_tasks=injection_tasks)
    defended: list[PairResult] = []
    undefended: list[PairResult] = []
    seconds = {"defended": 0.0, "undefended": 0.0}
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bars = {}
        for name in suites:
            bars[(name, "undefended")] = progress.add_task(
                f"{name} (no defense)", total=counts[name]
            )
            bars[(name, "defended")] = progress.add_task(f"{name} (ztgate)", total=counts[name])
        for name in suites:
            for mode in ("undefended", "defended"):
                bar = bars[(name, mode)]

                def advance(_suite: str, n: int, bar: Any = bar) -> None:
                    progress.advance(bar, n)

                run = run_suite(
                    name,
                    version,
                    attack=attack,
                    user_tasks=user_tasks,
                    injection_tasks=injection_tasks,
                    progress=advance,
                    defended=mode == "defended",
                    undefended=mode == "undefended",
                    model=model,
                    policies=policies,
                )
                defended += run.defended
                undefended += run.undefended
                seconds["defended"] += run.seconds_defended
                seconds["undefended"] += run.seconds_undefended
    meta = {
        "version": version,
        "agentdojo": getattr(agentdojo, "__version__", None) or _installed("agentdojo"),
        "attack": attack,
        "agent": "scripted worst case" if model is None else f"AgentDojo pipeline, {model[1]}",
        "suites": list(suites),
        "runs": len(defended),
        "seconds_defended": seconds["defended"],
        "seconds_undefended": seconds["undefended"],
        "seconds": time.monotonic() - started,
        "machine": machine(),
        "policies": ["default set", *(p.name for p in policies)],
    }
    _write(console, meta, defended, undefended, results_path, document, chart_path, section_name)
    return defended, undefended, meta


def _write(
    console: Console,
    meta: dict[str, Any],
    defended: list[PairResult],
    undefended: list[PairResult],
    results_path: Path | None,
    document: Path | None,
    chart_path: Path | None,
    section_name: str = "agentdojo-eval",
) -> None:
    suites = list(meta.get("suites") or [])
    console.print(tables(defended, undefended, suites), markup=False)
    console.print(f"{len(defended)} runs per defense in {meta.get('seconds', 0):.0f} s")
    if results_path is not None:
        save_results(results_path, meta, defended, undefended)
        console.print(f"results: {results_path}")
    if chart_path is not None:
        chart_path.parent.mkdir(parents=True, exist_ok=True)
        chart_path.write_text(chart_svg(defended, undefended, suites), encoding="utf-8")
        console.print(f"chart: {chart_path}")
    if document is not None:
        link = chart_path.name if chart_path is not None else "agentdojo.svg"
        if chart_path is not None:
            try:
                link = str(chart_path.resolve().relative_to(document.resolve().parent))
            except ValueError:
                link = str(chart_path)
        write_section(document, section(meta, defended, undefended, suites, link), section_name)
        console.print(f"document: {document}")


def _installed(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
