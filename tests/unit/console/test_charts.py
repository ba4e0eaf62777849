"""Server-rendered SVG charts: well-formed, escaped, drawn from the counts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ztgate.console.charts import calls_per_minute, top_reasons

SVG = "{http://www.w3.org/2000/svg}"


def test_calls_per_minute_stacks_bars_by_outcome() -> None:
    buckets = [{"allow": 0, "ask": 0, "deny": 0} for _ in range(60)]
    buckets[59] = {"allow": 3, "ask": 1, "deny": 2}
    svg = str(calls_per_minute(buckets, 1_800_000_000.0))
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert sorted(r.get("class", "") for r in bars) == ["bar allow", "bar ask", "bar deny"]
    heights = {r.get("class"): float(r.get("height", 0)) for r in bars}
    assert heights["bar allow"] > heights["bar deny"] > heights["bar ask"]
    assert ">6<" in svg  # the peak on the axis


def test_an_empty_chart_is_still_a_chart() -> None:
    svg = str(calls_per_minute([{"allow": 0, "ask": 0, "deny": 0}] * 60, 0.0))
    ET.fromstring(svg)  # noqa: S314


def test_top_reasons_escape_their_text() -> None:
    svg = str(top_reasons([("policy: <script>alert(1)</script> & more", 5), ("x" * 200, 1)]))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    root = ET.fromstring(svg)  # noqa: S314
    assert len([r for r in root.iter(f"{SVG}rect")]) == 2
    assert "No denied calls" in str(top_reasons([]))
