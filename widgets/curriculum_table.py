"""A curriculum as a table: one row per example with its slice (gold / hard_negative / replay).

A row with a `flag` (why the review's live QC flags it: a repeated input, an output that is not a
valid label) shows `!` before its number, so a person can find what the QC report counts."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from widgets.formatting import SLICE_NAMES, percent

SLICES = ("gold", "hard_negative", "replay")
SHORT_SLICES = {"hard_negative": "hard neg"}
# The "#" and slice columns, the cells' padding and the scrollbar; input and output share the rest 3:2.
FIXED_WIDTH = 22
MIN_TEXT_WIDTH = 40
FLAG = "!"


@dataclass(frozen=True)
class CurriculumRow:
    slice: str
    input: str
    output: Any
    id: str | None = None
    flag: str = ""


def output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def slice_counts(rows: Sequence[CurriculumRow]) -> dict[str, int]:
    counts = Counter(r.slice for r in rows)
    return {s: counts.get(s, 0) for s in SLICES} | {k: v for k, v in counts.items() if k not in SLICES}


def composition_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{SLICE_NAMES.get(name, name)} {n}" + (f" ({percent(n / total, 0)})" if total else "")
             for name, n in counts.items()]
    return f"{total} rows: " + " · ".join(parts)


def _cell(value: str, width: int) -> Text:
    flat = value.replace("\n", " ⏎ ")
    return Text(flat if len(flat) <= width else flat[: width - 1] + "…", no_wrap=True)


def _number(i: int, row: CurriculumRow) -> Text:
    return Text.assemble((f"{FLAG} ", "bold red"), str(i + 1)) if row.flag else Text(str(i + 1))


COLUMNS = ("#", "slice", "input", "output")


class CurriculumTable(DataTable):
    """Row keys are row positions, so the review screen can map the cursor back to its row list. Input
    and output are cut to fit the table's width, and cut again when it is resized."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self._curriculum: list[CurriculumRow] = []

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def set_rows(self, rows: Sequence[CurriculumRow]) -> None:
        keep = self.cursor_row
        self._curriculum = list(rows)
        self.clear(columns=True)  # a column keeps its widest cell's width until it is rebuilt (a narrower window)
        self.add_columns(*COLUMNS)
        free = max(self.size.width - FIXED_WIDTH, MIN_TEXT_WIDTH)
        width = free * 3 // 5
        for i, row in enumerate(self._curriculum):
            self.add_row(_number(i, row), SHORT_SLICES.get(row.slice, row.slice), _cell(row.input, width),
                         _cell(output_text(row.output), free - width), key=str(i))
        if self._curriculum:
            self.move_cursor(row=min(keep, len(self._curriculum) - 1))

    def on_resize(self) -> None:
        self.set_rows(self._curriculum)
