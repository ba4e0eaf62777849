"""Charts as inline SVG, drawn on the server (no JavaScript, no charting library).

Every text in a chart is escaped; colours come from CSS classes in the
console's stylesheet (the Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

from ztgate.console.queries import OUTCOMES

_WIDTH = 720
_HEIGHT = 220
_LEFT = 40
_BOTTOM = 24
_TOP = 16


def calls_per_minute(buckets: Sequence[Mapping[str, int]], start: float) -> Markup:
    """Stacked bars: calls per minute by outcome, oldest minute (at `start`) first."""
    count = max(len(buckets), 1)
    peak = max([sum(b.values()) for b in buckets] + [1])
    plot_w = _WIDTH - _LEFT - 8
    plot_h = _HEIGHT - _BOTTOM - _TOP
    slot = plot_w / count
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Calls per minute by outcome</title>",
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" '
        f'x2="{_WIDTH - 8}" y2="{_TOP + plot_h}"/>',
        f'<text class="label" x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end">{peak}</text>',
        f'<text class="label" x="{_LEFT - 6}" y="{_TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for index, bucket in enumerate(buckets):
        x = _LEFT + index * slot
        y = float(_TOP + plot_h)
        minute = _clock(start + 60 * index)
        for outcome in OUTCOMES:
            value = bucket.get(outcome, 0)
            if not value:
                continue
            height = plot_h * value / peak
            y -= height
            parts.append(
                f'<rect class="bar {outcome}" x="{x + 1:.1f}" y="{y:.1f}" '
                f'width="{max(slot - 2, 1):.1f}" height="{height:.1f}">'
                f"<title>{escape(minute)}: {value} {outcome}</title></rect>"
            )
        if index % 10 == 0:
            parts.append(
                f'<text class="label" x="{x:.1f}" y="{_HEIGHT - 6}">{escape(minute)}</text>'
            )
    parts.append(_legend())
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped text and numbers


def top_reasons(items: Sequence[tuple[str, int]]) -> Markup:
    """Horizontal bars: the most frequent denial reasons and their counts."""
    if not items:
        return Markup('<p class="empty">No denied calls.</p>')
    row = 26
    height = row * len(items) + 8
    peak = max(count for _, count in items)
    bar_w = 220
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Top denied reasons</title>",
    ]
    for index, (reason, count) in enumerate(items):
        y = 4 + index * row
        width = max(bar_w * count / peak, 2)
        label = reason if len(reason) <= 80 else reason[:79] + "…"
        parts.append(
            f'<rect class="bar deny" x="0" y="{y}" width="{width:.1f}" height="{row - 8}">'
            f"<title>{escape(reason)}</title></rect>"
            f'<text class="label" x="{width + 6:.1f}" y="{y + row - 12}">{count}</text>'
            f'<text class="label reason" x="{bar_w + 40}" y="{y + row - 12}">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped text and numbers


def _legend() -> str:
    items = []
    for index, outcome in enumerate(OUTCOMES):
        x = _WIDTH - 200 + index * 64
        items.append(
            f'<rect class="bar {outcome}" x="{x}" y="2" width="10" height="10"/>'
            f'<text class="label" x="{x + 14}" y="11">{outcome}</text>'
        )
    return "".join(items)


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M")
