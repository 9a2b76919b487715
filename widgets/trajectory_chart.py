"""Stage trajectories: one line per arm over the checkpoints (AdaptFT-Bench's C1..C4), in a terminal.

Each series is a marker at every checkpoint joined by dotted segments; series listed later are drawn
on top (the caller puts the agent last). The y range is the scores' own, widened to 5-point steps
so close curves stay apart; the axis shows it x100, as the report's tables do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

AXIS_WIDTH = 7
PALETTE = 6  # component classes trajectory-chart--s0 .. s5


@dataclass(frozen=True)
class Series:
    label: str
    values: tuple[float, ...]  # one per checkpoint, in [0, 1]
    marker: str = "●"


def y_range(series: Sequence[Series]) -> tuple[float, float]:
    values = [v for s in series for v in s.values]
    lo = math.floor(min(values) * 20 + 1e-9) / 20
    hi = math.ceil(max(values) * 20 - 1e-9) / 20
    return max(0.0, lo), min(1.0, max(hi, lo + 0.05))


def trajectory_rows(x_labels: Sequence[str], series: Sequence[Series], width: int,
                    height: int) -> list[tuple[str, list[tuple[str, int | None]]]]:
    """Plain-data layout: per row an axis label and (cell, series index or None) pairs; the last row
    holds the checkpoint names under their columns."""
    cols = max(width - AXIS_WIDTH, len(x_labels) * 3)
    plot_h = max(height - 1, 2)
    n = len(x_labels)
    xs = [round(i * (cols - 3) / (n - 1)) + 1 if n > 1 else cols // 2 for i in range(n)]
    lo, hi = y_range(series) if series else (0.0, 1.0)

    def row_of(v: float) -> int:
        return round((hi - v) / (hi - lo) * (plot_h - 1))

    grid: list[list[tuple[str, int | None]]] = [[(" ", None)] * cols for _ in range(plot_h)]
    for k, s in enumerate(series):  # segments first, then markers, so every marker stays visible
        for i in range(n - 1):
            x0, x1 = xs[i], xs[i + 1]
            for x in range(x0 + 1, x1):
                v = s.values[i] + (s.values[i + 1] - s.values[i]) * (x - x0) / (x1 - x0)
                grid[row_of(v)][x] = ("·", k)
    for k, s in enumerate(series):
        for x, v in zip(xs, s.values, strict=True):
            grid[row_of(v)][x] = (s.marker, k)
    rows: list[tuple[str, list[tuple[str, int | None]]]] = []
    for r, cells in enumerate(grid):
        if r in (0, plot_h - 1) or r == plot_h // 2:
            value = hi - (hi - lo) * r / (plot_h - 1)
            label = f"{100 * value:5.1f} ┤"
        else:
            label = " " * (AXIS_WIDTH - 1) + "│"
        rows.append((label, cells))
    names = [(" ", None)] * cols
    for x, name in zip(xs, x_labels, strict=True):
        start = max(0, min(cols - len(name), x - len(name) // 2))
        for j, ch in enumerate(name):
            names[start + j] = (ch, None)
    rows.append((" " * (AXIS_WIDTH - 1) + "└", names))
    return rows


class TrajectoryChart(Widget):
    """Receives checkpoint names and series (plain data); the legend line shows each series' last value."""

    COMPONENT_CLASSES = {*(f"trajectory-chart--s{i}" for i in range(PALETTE)), "trajectory-chart--axis"}
    DEFAULT_CSS = """
    TrajectoryChart { height: 1fr; min-height: 6; }
    TrajectoryChart > .trajectory-chart--s0 { color: $text-muted; }
    TrajectoryChart > .trajectory-chart--s1 { color: $warning; }
    TrajectoryChart > .trajectory-chart--s2 { color: $accent; }
    TrajectoryChart > .trajectory-chart--s3 { color: $secondary; }
    TrajectoryChart > .trajectory-chart--s4 { color: $error; }
    TrajectoryChart > .trajectory-chart--s5 { color: $success; text-style: bold; }
    TrajectoryChart > .trajectory-chart--axis { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._labels: list[str] = []
        self._series: list[Series] = []

    def set_series(self, x_labels: Sequence[str], series: Sequence[Series]) -> None:
        self._labels, self._series = list(x_labels), list(series)
        self.refresh()

    def _style(self, k: int) -> object:
        # the last series (the agent) takes the emphasised colour; the others take the palette in order
        index = PALETTE - 1 if k == len(self._series) - 1 else k % (PALETTE - 1)
        return self.get_component_rich_style(f"trajectory-chart--s{index}")

    def render(self) -> Text:
        if not self._series or not self._labels:
            return Text("no benchmark result selected", style="italic")
        axis = self.get_component_rich_style("trajectory-chart--axis")
        text = Text(no_wrap=True, overflow="crop")
        for k, s in enumerate(self._series):
            text.append(f"{s.marker} {s.label} {100 * s.values[-1]:.1f}", self._style(k))
            text.append("  ")
        for label, cells in trajectory_rows(self._labels, self._series, self.content_size.width,
                                            self.content_size.height - 1):
            text.append("\n")
            text.append(label, axis)
            for cell, k in cells:
                text.append(cell, axis if k is None else self._style(k))
        return text
