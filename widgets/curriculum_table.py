"""A curriculum as a table: one row per example with its slice (gold / hard_negative / replay)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

SLICES = ("gold", "hard_negative", "replay")
CELL_WIDTH = 48


@dataclass(frozen=True)
class CurriculumRow:
    slice: str
    input: str
    output: Any
    id: str | None = None


def output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def slice_counts(rows: Sequence[CurriculumRow]) -> dict[str, int]:
    counts = Counter(r.slice for r in rows)
    return {s: counts.get(s, 0) for s in SLICES} | {k: v for k, v in counts.items() if k not in SLICES}


def composition_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{name} {n} ({n / total:.0%})" if total else f"{name} 0" for name, n in counts.items()]
    return f"{total} rows: " + " · ".join(parts)


def _cell(value: str) -> Text:
    flat = value.replace("\n", " ⏎ ")
    return Text(flat if len(flat) <= CELL_WIDTH else flat[: CELL_WIDTH - 1] + "…", no_wrap=True)


class CurriculumTable(DataTable):
    """Row keys are row positions, so the review screen can map the cursor back to its row list."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self._curriculum: list[CurriculumRow] = []

    def on_mount(self) -> None:
        self.add_columns("#", "slice", "input", "output")

    def set_rows(self, rows: Sequence[CurriculumRow]) -> None:
        keep = self.cursor_row
        self._curriculum = list(rows)
        self.clear()
        for i, row in enumerate(self._curriculum):
            self.add_row(str(i + 1), row.slice, _cell(row.input), _cell(output_text(row.output)), key=str(i))
        if self._curriculum:
            self.move_cursor(row=min(keep, len(self._curriculum) - 1))
