"""Charts for the HTML report, drawn as inline SVG in Python: no script, font or file from elsewhere.

Two shapes cover every chart: ``columns`` (vertical bars, optionally stacked: time buckets, histogram
bins) and ``bars`` (horizontal bars, optionally stacked: models, steps). Every bar carries a
``<title>`` with its exact value, shown on hover. Each colour below belongs to one chart (or one part
of a chart) and appears nowhere else on the page, so a test can find each chart in a screenshot by
its colour; ``crispEdges`` keeps those colours exact (no anti-aliased bar edges).

Callers pass plain strings: everything shown is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape

from ..common.money import format_usd

__all__ = [
    "Bar", "Column", "FAILED", "MODEL", "NO_OUTCOME", "PER_SUCCESS", "STEP_LLM", "STEP_TOOL", "SUCCEEDED", "bars",
    "columns", "count_tick", "legend", "usd", "usd_tick",
]

WIDTH = 960  # CSS pixels; the page is laid out for a 1280-pixel window

PER_SUCCESS = "#2563eb"  # cost per success over time
SUCCEEDED = "#16a34a"  # distribution: tasks that succeeded
FAILED = "#dc2626"  # distribution: tasks that failed
NO_OUTCOME = "#a3a3a3"  # distribution: tasks without an outcome
MODEL = "#7c3aed"  # cost by model
STEP_LLM = "#ea580c"  # cost by step: LLM calls
STEP_TOOL = "#0d9488"  # cost by step: tool costs

_GRID = "#e5e7eb"
_INK = "#374151"
_MUTED = "#6b7280"


usd = format_usd  # one formatter for the table, the page and the tree


def usd_tick(value: Decimal) -> str:
    """An axis tick: the shortest exact decimal ($0.0025, $1.5, $10)."""
    return "$" + format(value.normalize(), ",f")


def count_tick(value: Decimal) -> str:
    return format(value.normalize(), ",f")


@dataclass(frozen=True)
class Column:
    """One vertical bar: ``parts`` stacked bottom-up, one per colour; ``missing`` shown instead when set."""

    label: str
    parts: tuple[Decimal, ...]
    tooltip: str
    missing: str | None = None


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: ``parts`` left to right, one per colour, then ``text`` after it."""

    label: str
    parts: tuple[Decimal, ...]
    text: str
    tooltip: str


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _nice_step(raw: Decimal, integer: bool) -> Decimal:
    """The smallest 1, 2 or 5 x 10^k at or above ``raw`` (at least 1 for counts)."""
    if raw <= 0:
        return Decimal(1)
    base = Decimal(1).scaleb(raw.adjusted())
    step = next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    return max(step, Decimal(1)) if integer else step


def _ticks(vmax: Decimal, integer: bool, count: int = 4) -> list[Decimal]:
    step = _nice_step(vmax / count, integer)
    return [step * i for i in range(count + 1)]


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}" shape-rendering="crispEdges">'
        + "".join(body)
        + "</svg>"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def columns(
    cols: Sequence[Column],
    colors: Sequence[str],
    *,
    fmt: Callable[[Decimal], str],
    label: str,
    integer: bool = False,
    height: int = 180,
    edges: Sequence[str] | None = None,
) -> str:
    """Vertical bars over a shared y axis from 0, labelled under each bar (thinned when crowded).

    With `edges` (one more than the bars: a histogram's bin boundaries, the last one its maximum) the
    labels go on the boundaries between bars instead, and the first and last are always shown."""
    top, bottom, left, right = 10, 30, 84, 12
    plot_w = WIDTH - left - right
    vmax = max((sum(c.parts, Decimal(0)) for c in cols), default=Decimal(0))
    ticks = _ticks(vmax, integer) if vmax > 0 else [Decimal(0)]  # nothing to scale: a baseline alone
    axis_max = ticks[-1] or Decimal(1)
    base = top + height
    body = []
    for tick in ticks:
        y = base - float(tick / axis_max) * height
        body.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_MUTED}">{_e(fmt(tick))}</text>'
        )
    n = max(len(cols), 1)
    slot = plot_w / n
    width = max(1.0, min(64.0, slot * 0.7))
    every = max(1, math.ceil(n * 72 / plot_w))  # a label needs about 72 pixels
    for i, col in enumerate(cols):
        x = left + i * slot + (slot - width) / 2
        center = x + width / 2
        shapes = []
        if col.missing is not None:
            shapes.append(
                f'<text x="{center:.1f}" y="{base - 6}" text-anchor="middle" fill="{_MUTED}">{_e(col.missing)}</text>'
            )
        else:
            y = float(base)
            for part, color in zip(col.parts, colors, strict=True):
                h = float(part / axis_max) * height
                if h > 0:
                    y -= h
                    shapes.append(
                        f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" fill="{color}"/>'
                    )
        body.append(f"<g><title>{_e(col.tooltip)}</title>{''.join(shapes)}</g>")
        if edges is None and i % every == 0:
            body.append(
                f'<text x="{center:.1f}" y="{base + 18}" text-anchor="middle" fill="{_INK}">{_e(col.label)}</text>'
            )
    if edges is not None:
        for j, text in enumerate(edges):
            if j != len(edges) - 1 and (j % every or len(edges) - 1 - j < every):
                continue  # thinned, and never crowding the last label (the maximum)
            anchor = "start" if j == 0 else ("end" if j == len(edges) - 1 else "middle")
            x = left + j * slot
            body.append(f'<text x="{x:.1f}" y="{base + 18}" text-anchor="{anchor}" fill="{_INK}">{_e(text)}</text>')
    body.append(f'<line x1="{left}" x2="{WIDTH - right}" y1="{base}" y2="{base}" stroke="{_INK}"/>')
    return _svg(WIDTH, top + height + bottom, label, body)


def bars(items: Sequence[Bar], colors: Sequence[str], *, label: str) -> str:
    """Horizontal bars from a shared zero, longest = full width, each followed by its value."""
    label_w, text_w, row, bar_h, top = 230, 170, 26, 18, 4
    area = WIDTH - label_w - text_w
    vmax = max((sum(b.parts, Decimal(0)) for b in items), default=Decimal(0))
    body = []
    for i, item in enumerate(items):
        y = top + i * row
        x = float(label_w)
        shapes = []
        for part, color in zip(item.parts, colors, strict=True):
            w = float(part / vmax) * area if vmax else 0.0
            if w > 0:
                shapes.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{color}"/>')
                x += w
        body.append(
            f"<g><title>{_e(item.tooltip)}</title>"
            f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" fill="{_INK}">{_e(_clip(item.label, 34))}</text>'
            f"{''.join(shapes)}"
            f'<text x="{x + 6:.2f}" y="{y + 13}" fill="{_INK}">{_e(item.text)}</text></g>'
        )
    return _svg(WIDTH, top + max(len(items), 1) * row + 4, label, body)


def legend(entries: Sequence[tuple[str, str]]) -> str:
    """Colour swatches with their meaning, as HTML."""
    return '<p class="legend">' + "".join(
        f'<span><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" fill="{color}"/></svg> '
        f"{_e(text)}</span>"
        for color, text in entries
    ) + "</p>"
