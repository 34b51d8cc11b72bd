"""Charts for `unitcost ui`, as geometry the templates draw as inline SVG: no script, no CDN.

Trends are small line charts (one value per time bucket, gaps where a bucket has none); the task
page's waterfall places each step on the run's time axis. The templates escape every label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from unitcost.report.inspect import Node

__all__ = ["Sparkline", "WaterfallBar", "sparkline", "waterfall"]


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    path: str  # SVG path data; segments break where a bucket has no value
    points: list[tuple[float, float, str, str]]  # x, y, bucket, value as shown (for <title>)


def sparkline(
    buckets: Sequence[str], values: Sequence[float | None], shown: Sequence[str], width: int = 160, height: int = 36
) -> Sparkline:
    """A line over the buckets, scaled to the values' own range (a trend, not a comparison of sizes)."""
    known = [v for v in values if v is not None]
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    span = (high - low) or 1.0
    pad = 4
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    path: list[str] = []
    points = []
    pen_down = False
    for i, (bucket, value, text) in enumerate(zip(buckets, values, shown, strict=True)):
        if value is None:
            pen_down = False
            continue
        x = pad + i * step if len(values) > 1 else width / 2
        y = height - pad - (value - low) / span * (height - 2 * pad) if high != low else height / 2
        path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
        pen_down = True
        points.append((round(x, 1), round(y, 1), bucket, text))
    return Sparkline(width, height, " ".join(path), points)


@dataclass(frozen=True)
class WaterfallBar:
    depth: int
    type: str
    name: str
    x: float  # percent of the run's time axis
    width: float  # percent, at least a sliver so an instant step stays visible
    seconds: float
    offset_s: float


def waterfall(root: Node) -> list[WaterfallBar]:
    """Every span of a run's tree, depth-first, placed on the root's time axis."""
    start = root.started_ns
    total = max(root.ended_ns - start, 1)
    bars: list[WaterfallBar] = []

    def add(node: Node, depth: int) -> None:
        offset = max(node.started_ns - start, 0)
        length = max(node.ended_ns - node.started_ns, 0)
        x = min(offset / total * 100, 100.0)
        bars.append(WaterfallBar(
            depth, node.type, node.name, round(x, 2), round(max(min(length / total * 100, 100 - x), 0.4), 2),
            length / 1e9, offset / 1e9,
        ))
        for child in node.children:
            add(child, depth + 1)

    add(root, 0)
    return bars
