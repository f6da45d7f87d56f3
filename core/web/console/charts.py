"""Inline SVG charts, drawn on the server: no script, no style attribute, no external file.

Each chart is ``role="img"`` with a ``<title>`` and a ``<desc>`` (named by ``aria-labelledby``) that say
what it shows in words; the page puts a table with the same numbers beside it. Colours come from classes
(``series-0`` …) that ``console.css`` fills, so the Content-Security-Policy needs no inline style.
Every text is escaped (``markupsafe``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 40


def nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2, 5 × a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _number(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value:,.0f}"


def _frame(chart_id: str, title: str, desc: str, body: list[str], *, height: int = HEIGHT) -> Markup:
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every piece above is escaped


def _axis(top: float, *, unit: str = "") -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts: list[str] = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        label = escape(_number(top * fraction) + unit)
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    return parts


def stacked_bars(
    chart_id: str,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    every: int = 3,
) -> Markup:
    """One stacked bar per label (an hour), a segment per series (a channel), with a legend."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    top = nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    parts = _axis(top)
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.15
        base = float(TOP + plot_h)
        for n, (name, values) in enumerate(series.items()):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            parts.append(
                f'<rect class="series-{n % 6}" x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}"><title>{escape(f"{label}: {value} on {name}")}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    legend_x = LEFT
    for n, name in enumerate(series):
        parts.append(
            f'<rect class="series-{n % 6}" x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10"/>'
            f'<text class="legend" x="{legend_x + 14}" y="{HEIGHT - 5}">{escape(name)}</text>'
        )
        legend_x += 24 + 8 * len(name)
    return _frame(chart_id, title, desc, parts)


def bars(
    chart_id: str,
    *,
    title: str,
    desc: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    unit: str = "",
    every: int = 3,
) -> Markup:
    """One bar per label; a missing value (None) draws nothing."""
    top = nice_max(max((v for v in values if v is not None), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    parts = _axis(top, unit=unit)
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.15
        value = values[i]
        if value is not None and value > 0:
            h = plot_h * value / top
            parts.append(
                f'<rect class="series-0" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}"><title>{escape(f"{label}: {_number(value)}{unit}")}</title></rect>'
            )
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    return _frame(chart_id, title, desc, parts)


def hbars(chart_id: str, *, title: str, desc: str, items: Sequence[tuple[str, int]]) -> Markup:
    """One horizontal bar per item, its value written beside it."""
    row = 32
    height = TOP + row * max(len(items), 1) + 8
    top = nice_max(max((v for _, v in items), default=0))
    label_w = 110
    plot_w = WIDTH - label_w - RIGHT - 48
    parts: list[str] = []
    for n, (name, value) in enumerate(items):
        y = TOP + n * row
        w = plot_w * value / top
        parts.append(
            f'<text class="legend" x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(name)}</text>'
            f'<rect class="series-{n % 6}" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="18"/>'
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 17}">{value}</text>'
        )
    return _frame(chart_id, title, desc, parts, height=height)
