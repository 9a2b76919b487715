"""Score trajectory: one bar per evaluated node (newest on the right), with the threshold tau marked and
each bar's node number under it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS_WIDTH = 6


@dataclass(frozen=True)
class ScorePoint:
    score: float
    accepted: bool
    label: str = ""  # the node's number, shown under its bar


def _layout(points: Sequence[ScorePoint], width: int) -> tuple[list[ScorePoint], int, int]:
    """The points that fit (the newest), each bar's width in columns, and the plot's width."""
    cols = max(width - AXIS_WIDTH, 1)
    shown = list(points)[-cols:]
    return shown, max(1, min(3, cols // max(len(shown), 1))), cols


def x_axis(points: Sequence[ScorePoint], width: int) -> str:
    """The labels under the bars, each starting at its bar; one that would touch its left neighbour is left out."""
    shown, bar, cols = _layout(points, width)
    cells = [" "] * cols
    free = 0
    for i, p in enumerate(shown):
        start = i * bar
        if p.label and start >= free and start + len(p.label) <= cols:
            cells[start:start + len(p.label)] = p.label
            free = start + len(p.label) + 1
    return " node " + "".join(cells)


def chart_rows(points: Sequence[ScorePoint], width: int, height: int,
               threshold: float | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """Plain-data layout: per row an axis label and (cell, kind) pairs, kind in bar-ok/bar-bad/tau/empty.

    The y range starts at the lowest score rounded down to 0.05 so small gains stay visible.
    """
    shown, bar, cols = _layout(points, width)  # few points: wider bars, one column apart
    values = [p.score for p in shown] + ([threshold] if threshold is not None else [])
    lo = math.floor(min(values, default=0.0) * 20) / 20 if values else 0.0
    hi = max(1.0, max(values, default=1.0))
    lo = min(lo, hi - 0.05)
    levels = height * 8
    tau_row = None
    if threshold is not None:
        tau_row = height - 1 - min(height - 1, int((threshold - lo) / (hi - lo) * height))
    rows = []
    for r in range(height):
        top_level = (height - r) * 8  # sub-levels at or below this row's top edge
        cells: list[tuple[str, str]] = []
        for p in shown:
            filled = round((p.score - lo) / (hi - lo) * levels)
            part = max(0, min(8, filled - (top_level - 8)))
            if part == 0 and r == tau_row:
                cell = ("┈", "tau")
            else:
                cell = (BLOCKS[part], "bar-ok" if p.accepted else "bar-bad")
            cells.extend([cell] * (bar - 1 if bar > 1 else 1))
            if bar > 1:
                cells.append(("┈", "tau") if r == tau_row else (" ", "bar-ok"))
        if r == tau_row:
            cells.extend(("┈", "tau") for _ in range(cols - len(cells)))
        if r == tau_row:
            label = f"{threshold:5.2f}┤"
        elif r in (0, height - 1):
            label = f"{hi if r == 0 else lo:5.2f}┤"
        else:
            label = " " * (AXIS_WIDTH - 1) + "│"
        rows.append((label, cells))
    return rows


class ScoreChart(Widget):
    """Bars are green for accepted nodes and red for the rest; the dotted row is tau."""

    COMPONENT_CLASSES = {"score-chart--ok", "score-chart--bad", "score-chart--tau", "score-chart--axis"}
    DEFAULT_CSS = """
    ScoreChart { height: 6; }
    ScoreChart > .score-chart--ok { color: $success; }
    ScoreChart > .score-chart--bad { color: $error; }
    ScoreChart > .score-chart--tau { color: $warning; }
    ScoreChart > .score-chart--axis { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._points: list[ScorePoint] = []
        self._threshold: float | None = None

    def set_points(self, points: Sequence[ScorePoint], threshold: float | None = None) -> None:
        self._points, self._threshold = list(points), threshold
        self.border_title = "score per evaluated node" + ("" if threshold is None else f" · ┈ τ {threshold:g}")
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self._points:
            return Text("score trajectory: no node evaluated yet", style="italic")
        styles = {"bar-ok": self.get_component_rich_style("score-chart--ok"),
                  "bar-bad": self.get_component_rich_style("score-chart--bad"),
                  "tau": self.get_component_rich_style("score-chart--tau")}
        axis = self.get_component_rich_style("score-chart--axis")
        text = Text(no_wrap=True, overflow="crop")
        for label, cells in chart_rows(self._points, width, max(height - 1, 1), self._threshold):
            text.append(label, axis)
            for cell, kind in cells:
                text.append(cell, styles[kind])
            text.append("\n")
        text.append(x_axis(self._points, width), axis)
        return text
