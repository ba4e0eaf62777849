"""`evaluate`: a small real run writes the results, the chart and the document's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

pytest.importorskip(
    "agentdojo", reason="agentdojo is not installed here: 'make eval' installs it in .venv-eval"
)

from ztgate.evaluation.agentdojo.evaluate import evaluate, machine
from ztgate.evaluation.agentdojo.report import BEGIN, END


def test_a_small_run_writes_results_chart_and_document(tmp_path: Path) -> None:
    document = tmp_path / "docs" / "security-evaluation.md"
    document.parent.mkdir()
    document.write_text(f"# Security evaluation\n\n{BEGIN}\n{END}\n\nkept\n")
    console = Console(record=True, width=200)
    defended, undefended, meta = evaluate(
        console,
        suites=["banking"],
        user_tasks=["user_task_0"],
        injection_tasks=["injection_task_7"],
        results_path=tmp_path / "results.json",
        document=document,
        chart_path=tmp_path / "docs" / "agentdojo.svg",
    )
    assert len(defended) == len(undefended) == 2
    assert meta["version"] == "v1.2.2"
    assert meta["runs"] == 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["defended"]) == 2
    text = document.read_text()
    assert "![AgentDojo: no defense vs ztgate](agentdojo.svg)" in text
    assert "| banking | ztgate |" in text
    assert text.endswith("kept\n")
    assert (tmp_path / "docs" / "agentdojo.svg").read_text().startswith("<svg")
    assert "| banking | no defense |" in console.export_text()


def test_the_machine_is_named() -> None:
    assert "cores, Python 3." in machine()
