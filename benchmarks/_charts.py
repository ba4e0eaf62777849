"""Plain SVG bar charts for the benchmark summary (no plotting library needed)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH = 860
LABEL_WIDTH = 300
BAR_HEIGHT = 18
GAP = 6
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
COLOURS = ("#3b6fb6", "#d9822b", "#5a9e4b", "#a33b3b", "#8c8c8c")


@dataclass
class Bar:
    label: str
    value: float
    text: str
    colour: int = 0  # index into COLOURS


@dataclass
class Panel:
    title: str
    bars: list[Bar]
    note: str = ""
    reference: float | None = None  # a vertical line (e.g. 1x: as fast as direct)
    reference_label: str = ""


def render(title: str, subtitle: str, panels: list[Panel], legend: tuple[str, ...] = ()) -> str:
    """One SVG with the panels stacked, each bar labelled with its value."""
    parts: list[str] = []
    y = 74
    for panel in panels:
        parts.append(
            f"<text x='12' y='{y}' font-size='15' font-weight='bold' {FONT}>"
            f"{escape(panel.title)}</text>"
        )
        y += 10
        if panel.note:
            y += 12
            parts.append(
                f"<text x='12' y='{y}' font-size='11' fill='#555' {FONT}>"
                f"{escape(panel.note)}</text>"
            )
        y += 8
        top = y
        span = max([bar.value for bar in panel.bars] + [panel.reference or 0.0]) or 1.0
        scale = (WIDTH - LABEL_WIDTH - 170) / span
        for bar in panel.bars:
            length = max(bar.value * scale, 1.0)
            parts.append(
                f"<text x='{LABEL_WIDTH - 8}' y='{y + 13}' font-size='12' text-anchor='end' "
                f"{FONT}>{escape(bar.label)}</text>"
                f"<rect x='{LABEL_WIDTH}' y='{y}' width='{length:.1f}' height='{BAR_HEIGHT}' "
                f"fill='{COLOURS[bar.colour % len(COLOURS)]}'/>"
                f"<text x='{LABEL_WIDTH + length + 5:.1f}' y='{y + 13}' font-size='12' "
                f"{FONT}>{escape(bar.text)}</text>"
            )
            y += BAR_HEIGHT + GAP
        if panel.reference is not None:
            x = LABEL_WIDTH + panel.reference * scale
            parts.append(
                f"<line x1='{x:.1f}' y1='{top - 4}' x2='{x:.1f}' y2='{y - GAP + 4}' "
                "stroke='#222' stroke-dasharray='4 3'/>"
                f"<text x='{x + 3:.1f}' y='{top - 6}' font-size='11' {FONT}>"
                f"{escape(panel.reference_label)}</text>"
            )
        y += 22
    legend_parts = []
    x = 12
    for i, name in enumerate(legend):
        legend_parts.append(
            f"<rect x='{x}' y='{y - 10}' width='12' height='12' fill='{COLOURS[i]}'/>"
            f"<text x='{x + 16}' y='{y}' font-size='12' {FONT}>{escape(name)}</text>"
        )
        x += 34 + 7 * len(name)
    height = y + (16 if legend else 0)
    header = (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}'>"
        f"<rect width='100%' height='100%' fill='white'/>"
        f"<text x='12' y='22' font-size='17' font-weight='bold' {FONT}>{escape(title)}</text>"
        f"<text x='12' y='40' font-size='11' fill='#555' {FONT}>{escape(subtitle)}</text>"
    )
    return header + "".join(parts) + "".join(legend_parts) + "</svg>\n"
