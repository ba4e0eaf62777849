"""The report: tables, the SVG chart, the document's generated section, the results file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ztgate.evaluation.agentdojo.outcomes import PairResult
from ztgate.evaluation.agentdojo.report import (
    BEGIN,
    END,
    chart_svg,
    comparison,
    load_results,
    save_results,
    section,
    tables,
    write_section,
)

SUITES = ("banking", "slack")


def _runs(defended: bool) -> list[PairResult]:
    return [
        PairResult("banking", "user_task_0", None, utility=True, user_asked=int(defended)),
        PairResult(
            "banking",
            "user_task_0",
            "injection_task_0",
            utility=True,
            attack_succeeded=not defended,
            attack_calls=1,
            attack_asked=int(defended),
            attack_ran=int(not defended),
            reasons=["policy: approval required"] if defended else [],
        ),
        PairResult("slack", "user_task_1", None, utility=not defended, reasons=["dlp: a secret"]),
    ]


def test_tables_show_both_runs_per_suite_and_overall() -> None:
    text = tables(_runs(True), _runs(False), SUITES)
    assert "| banking | no defense | 100.0% | 100.0% | 100.0% | 100.0% (1) | n/a (0) |" in text
    assert "| banking | ztgate | 100.0% | 100.0% | 0.0% | 0.0% (1) | n/a (0) |" in text
    assert "| all | ztgate | 50.0% |" in text
    assert "| banking | 1 | 100.0% | 1.00 | 1 | 1 | 0 | 0 |" in text


def test_the_chart_is_well_formed_svg() -> None:
    svg = chart_svg(_runs(True), _runs(False), SUITES)
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.tag.endswith("svg")
    bars = [e for e in root.iter() if e.tag.endswith("rect") and e.find("{*}title") is not None]
    assert len(bars) == 3 * 2 * 3  # (2 suites + all) x 2 runs x 3 figures


def test_the_section_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(f"# Title\n\nkept\n\n{BEGIN}\nold\n{END}\n\nalso kept\n")
    meta = {"version": "v1.2.2", "runs": 3, "seconds": 12.0, "machine": "x86_64"}
    write_section(document, section(meta, _runs(True), _runs(False), SUITES, "chart.svg"))
    text = document.read_text()
    assert text.startswith("# Title\n\nkept\n\n" + BEGIN)
    assert text.endswith(END + "\n\nalso kept\n")
    assert "old" not in text
    assert "![AgentDojo: no defense vs ztgate](chart.svg)" in text
    assert "- slack user_task_1: dlp: a secret" in text


def test_without_markers_the_section_is_appended(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text("# Title\n")
    write_section(document, "figures\n")
    assert document.read_text() == f"# Title\n\n{BEGIN}\nfigures\n{END}\n"


def test_results_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "agentdojo.json"
    save_results(path, {"version": "v1.2.2"}, _runs(True), _runs(False))
    meta, defended, undefended = load_results(path)
    assert meta == {"version": "v1.2.2"}
    assert defended == _runs(True)
    assert undefended == _runs(False)


def test_a_named_section_has_markers_of_its_own(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(f"{BEGIN}\nmain\n{END}\n")
    write_section(document, "variant\n", "agentdojo-variant")
    write_section(document, "variant 2\n", "agentdojo-variant")
    text = document.read_text()
    assert text.startswith(f"{BEGIN}\nmain\n{END}\n")
    assert text.count("<!-- agentdojo-variant:begin -->") == 1
    assert "variant 2\n<!-- agentdojo-variant:end -->" in text


def test_the_comparison_has_a_row_per_configuration() -> None:
    text = comparison([("no defense", _runs(False)), ("ztgate", _runs(True))], SUITES)
    lines = text.splitlines()
    assert len(lines) == 4
    assert "attack success, action goals: banking" in lines[0]
    assert lines[2].startswith("| no defense | 100.0% | 100.0% | 100.0% | n/a |")
    assert lines[3].endswith("| 1 / 0 / 0 |")
