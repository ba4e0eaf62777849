"""The AgentDojo report: tables (Markdown), a chart (SVG), the results (JSON).

No agentdojo import: it works from `PairResult`s, so it is tested in the
main environment and can re-render a saved results file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from ztgate.evaluation.agentdojo.outcomes import Figures, PairResult

BEGIN = "<!-- agentdojo-eval:begin -->"
END = "<!-- agentdojo-eval:end -->"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def figures_by_suite(results: Sequence[PairResult], suites: Sequence[str]) -> dict[str, Figures]:
    """Each suite's figures, and `all` over every suite."""
    by = {name: Figures.of([r for r in results if r.suite == name]) for name in suites}
    by["all"] = Figures.of(list(results))
    return by


def tables(
    defended: Sequence[PairResult],
    undefended: Sequence[PairResult],
    suites: Sequence[str],
) -> str:
    """The Markdown tables: AgentDojo's figures with ztgate and without, and the asks."""
    with_gate = figures_by_suite(defended, suites)
    without = figures_by_suite(undefended, suites)
    lines = [
        "| suite | run | benign utility | utility under attack | attack success "
        "(all pairs) | attack success (action goals) | attack success (text-only goals) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in [*suites, "all"]:
        for label, figures in (("no defense", without[name]), ("ztgate", with_gate[name])):
            if figures.benign_tasks == 0 and figures.pairs == 0:
                continue
            lines.append(
                f"| {name} | {label} | {_pct(figures.benign_utility)} "
                f"| {_pct(figures.utility_under_attack)} | {_pct(figures.attack_success)} "
                f"| {_pct(figures.action_attack_success)} ({figures.action_pairs}) "
                f"| {_pct(figures.text_attack_success)} ({figures.text_pairs}) |"
            )
    lines += [
        "",
        "With ztgate: how often a person was asked, and what became of the attacker's calls.",
        "",
        "| suite | benign tasks | benign tasks asking a person | benign asks per task "
        "| attacker calls | asked (rejected) | denied outright | ran |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in [*suites, "all"]:
        figures = with_gate[name]
        if figures.benign_tasks == 0 and figures.pairs == 0:
            continue
        lines.append(
            f"| {name} | {figures.benign_tasks} | {_pct(figures.benign_tasks_asked)} "
            f"| {_num(figures.benign_asks_per_task)} | {figures.attack_calls} "
            f"| {figures.attack_calls_asked} | {figures.attack_calls_denied} "
            f"| {figures.attack_calls_ran} |"
        )
    return "\n".join(lines)


def comparison(runs: Sequence[tuple[str, Sequence[PairResult]]], suites: Sequence[str]) -> str:
    """One row per configuration (a label and its runs), over all suites; action goals per suite."""
    head = " | ".join(f"attack success, action goals: {name}" for name in suites)
    lines = [
        f"| configuration | benign utility | utility under attack | {head} "
        "| attack success, text-only goals | benign tasks asking a person "
        "| attacker calls asked / denied / ran |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in suites) + " | ---: | ---: | ---: |",
    ]
    for label, results in runs:
        by = figures_by_suite(results, suites)
        every = by["all"]
        per_suite = " | ".join(_pct(by[name].action_attack_success) for name in suites)
        lines.append(
            f"| {label} | {_pct(every.benign_utility)} | {_pct(every.utility_under_attack)} "
            f"| {per_suite} | {_pct(every.text_attack_success)} "
            f"| {_pct(every.benign_tasks_asked)} | {every.attack_calls_asked} / "
            f"{every.attack_calls_denied} / {every.attack_calls_ran} |"
        )
    return "\n".join(lines)


def successful_attacks(results: Sequence[PairResult]) -> dict[tuple[str, str], int]:
    """(suite, injection task) -> pairs in which the attack succeeded."""
    found: dict[tuple[str, str], int] = {}
    for result in results:
        if result.injection_task is not None and result.attack_succeeded:
            key = (result.suite, result.injection_task)
            found[key] = found.get(key, 0) + 1
    return found


def benign_ask_causes(results: Sequence[PairResult], suites: Sequence[str]) -> str:
    """Why benign runs asked a person: per suite, the asks by tool tier and by guard."""
    lines = [
        "| suite | asks on the user's own calls | critical tool | argument of untrusted "
        "origin | both | tools asked about |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name in [*suites, "all"]:
        asks = [
            ask
            for r in results
            if r.injection_task is None and (name == "all" or r.suite == name)
            for ask in r.asks
        ]
        critical = {i for i, ask in enumerate(asks) if "critical-asks" in ask}
        tainted = {i for i, ask in enumerate(asks) if "tainted" in ask}
        tools: dict[str, int] = {}
        for ask in asks:
            tool = ask.split(" ", 1)[0]
            tools[tool] = tools.get(tool, 0) + 1
        listed = ", ".join(f"{t} {n}" for t, n in sorted(tools.items(), key=lambda i: -i[1]))
        lines.append(
            f"| {name} | {len(asks)} | {len(critical - tainted)} | {len(tainted - critical)} "
            f"| {len(critical & tainted)} | {listed if name != 'all' else ''} |"
        )
    return "\n".join(lines)


def utility_losses(results: Sequence[PairResult]) -> list[PairResult]:
    """The benign runs whose utility check failed."""
    return [r for r in results if r.injection_task is None and not r.utility]


# -- the chart -----------------------------------------------------------------------------

_SERIES = (
    ("benign utility", "benign_utility"),
    ("utility under attack", "utility_under_attack"),
    ("attack success", "attack_success"),
)
_COLOURS = {
    "no defense": ("#c9c9c9", "#8c8c8c", "#d62728"),
    "ztgate": ("#9ecae1", "#3182bd", "#ff9896"),
}


def chart_svg(
    defended: Sequence[PairResult], undefended: Sequence[PairResult], suites: Sequence[str]
) -> str:
    """A grouped bar chart: per suite and overall, the three figures with and without ztgate."""
    with_gate = figures_by_suite(defended, suites)
    without = figures_by_suite(undefended, suites)
    groups = [*suites, "all"]
    bar, gap, group_gap = 14, 2, 28
    per_group = 2 * len(_SERIES) * (bar + gap)
    left, top, height = 50, 40, 220
    width = left + len(groups) * (per_group + group_gap) + 20
    total_height = top + height + 110
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_height}" '
        f'viewBox="0 0 {width} {total_height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{total_height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="13" font-weight="bold">'
        "AgentDojo through ztgate (scripted worst-case agent): no defense vs ztgate</text>",
    ]
    for tick in range(0, 101, 25):
        y = top + height - height * tick / 100
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}%</text>'
        )
    x = left + 10
    for name in groups:
        start = x
        for label, figures in (("no defense", without[name]), ("ztgate", with_gate[name])):
            for index, (title, attribute) in enumerate(_SERIES):
                value = getattr(figures, attribute)
                share = 0.0 if value is None else float(value)
                h = height * share
                colour = _COLOURS[label][index]
                parts.append(
                    f'<rect x="{x}" y="{top + height - h:.1f}" width="{bar}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(name)}, {label}: {title} '
                    f"{_pct(value)}</title></rect>"
                )
                x += bar + gap
        middle = (start + x) / 2
        parts.append(
            f'<text x="{middle:.1f}" y="{top + height + 16}" text-anchor="middle">'
            f"{escape(name)}</text>"
        )
        x += group_gap
    legend_y = top + height + 40
    lx = left
    for label in ("no defense", "ztgate"):
        for index, (title, _) in enumerate(_SERIES):
            colour = _COLOURS[label][index]
            parts.append(
                f'<rect x="{lx}" y="{legend_y}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{lx + 14}" y="{legend_y + 9}">{label}: {title}</text>'
            )
            lx += 200
            if lx > width - 200:
                lx = left
                legend_y += 18
        lx = left
        legend_y += 18
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# -- files -----------------------------------------------------------------------------------


def save_results(
    path: Path,
    meta: Mapping[str, Any],
    defended: Sequence[PairResult],
    undefended: Sequence[PairResult],
) -> None:
    """Write every run's result, and how it was made, as JSON."""
    data = {
        "meta": dict(meta),
        "defended": [r.to_json() for r in defended],
        "undefended": [r.to_json() for r in undefended],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def load_results(path: Path) -> tuple[dict[str, Any], list[PairResult], list[PairResult]]:
    """What `save_results` wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return (
        dict(data["meta"]),
        [PairResult.from_json(r) for r in data["defended"]],
        [PairResult.from_json(r) for r in data["undefended"]],
    )


def section(
    meta: Mapping[str, Any],
    defended: Sequence[PairResult],
    undefended: Sequence[PairResult],
    suites: Sequence[str],
    chart: str,
) -> str:
    """The generated part of the document: the run, the tables, the chart, what got through."""
    lines = [
        f"Benchmark {meta.get('version')} (agentdojo {meta.get('agentdojo')}), attack "
        f"`{meta.get('attack')}`, agent `{meta.get('agent')}`, policies: "
        f"{', '.join(meta.get('policies') or ['default set'])}; "
        f"{meta.get('runs')} runs per defense; ztgate through a real gateway: "
        f"{meta.get('seconds_defended', 0):.0f} s, no defense: "
        f"{meta.get('seconds_undefended', 0):.0f} s, in all {meta.get('seconds', 0):.0f} s "
        f"on {meta.get('machine')}.",
        "",
        tables(defended, undefended, suites),
        "",
        f"![AgentDojo: no defense vs ztgate]({chart})",
        "",
        "Why benign runs asked a person (each ask on the user's own calls, by the "
        "policy that asked):",
        "",
        benign_ask_causes(defended, suites),
        "",
    ]
    got_through = successful_attacks(defended)
    if got_through:
        lines.append("Attacks that succeeded through ztgate (pairs):")
        lines.append("")
        for (suite, task), count in sorted(got_through.items()):
            lines.append(f"- {suite} {task}: {count}")
        lines.append("")
    lost = utility_losses(defended)
    if lost:
        lines.append("Benign tasks that failed through ztgate, and the first reason:")
        lines.append("")
        for result in lost:
            why = result.error or (result.reasons[0] if result.reasons else "utility check")
            lines.append(f"- {result.suite} {result.user_task}: {why[:200]}")
        lines.append("")
    errors = [r for r in [*defended, *undefended] if r.error]
    if errors:
        lines.append(f"Runs that failed with an error: {len(errors)}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_section(document: Path, text: str, name: str = "agentdojo-eval") -> None:
    """Replace the text between the `name` markers of `document` (appended if there are none)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    current = document.read_text(encoding="utf-8") if document.exists() else ""
    block = f"{begin}\n{text}{end}"
    if begin in current and end in current:
        pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
        updated = pattern.sub(lambda _m: block, current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    document.write_text(updated, encoding="utf-8")
