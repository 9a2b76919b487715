"""Curriculum review before a train step: the proposal by slice with counts and its QC report;
approve, veto with a reason, or edit (remove rows, add rows, edit an example's input or output,
change slice ratios) and submit. Dismisses with an engine `Decision`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static, TextArea

from engine.curation_log import qc_lines
from engine.search.reviewer import CurriculumReview, Decision
from widgets.curriculum_table import SLICES, CurriculumRow, CurriculumTable, composition_line, slice_counts


def slice_of(row: dict[str, Any]) -> str:
    return str(row.get("slice") or "gold")


def table_rows(rows: Sequence[dict[str, Any]]) -> list[CurriculumRow]:
    return [CurriculumRow(slice_of(r), str(r.get("input", "")), r.get("output"), r.get("id")) for r in rows]


def resample_to_ratios(rows: Sequence[dict[str, Any]], ratios: dict[str, float]) -> list[dict[str, Any]]:
    """The largest curriculum with the given slice fractions that only drops rows (keeping the first
    rows of each slice, in order): a person can shift the balance, never invent data."""
    total_ratio = sum(ratios.values())
    if total_ratio <= 0 or any(v < 0 for v in ratios.values()):
        raise ValueError("slice ratios must be >= 0 and not all 0")
    fractions = {s: v / total_ratio for s, v in ratios.items()}
    by_slice: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_slice.setdefault(slice_of(row), []).append(row)
    limits = [len(by_slice.get(s, [])) / f for s, f in fractions.items() if f > 0]
    size = int(min(limits)) if limits else 0
    keep = {s: min(len(by_slice.get(s, [])), round(f * size)) for s, f in fractions.items()}
    kept: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for row in rows:
        s = slice_of(row)
        if seen.get(s, 0) < keep.get(s, 0):
            kept.append(row)
            seen[s] = seen.get(s, 0) + 1
    return kept


class RowEditorScreen(ModalScreen[dict | None]):
    """Edit one example: slice, input and output (text, or JSON when the output is structured)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    RowEditorScreen { align: center middle; }
    RowEditorScreen > Vertical { width: 90%; height: 90%; border: thick $primary; background: $surface; }
    RowEditorScreen TextArea { height: 1fr; }
    RowEditorScreen Select { width: 30; }
    RowEditorScreen #row-buttons { height: auto; }
    """

    def __init__(self, row: dict[str, Any], title: str) -> None:
        super().__init__()
        self.row = row
        self.title_text = title
        self.structured = not isinstance(row.get("output", ""), str)

    def compose(self) -> ComposeResult:
        output = self.row.get("output", "")
        with Vertical():
            yield Static(f"[b]{self.title_text}[/b]  (ctrl+s saves, esc cancels)")
            yield Select([(s, s) for s in SLICES], value=slice_of(self.row), allow_blank=False, id="row-slice")
            yield Label("input")
            yield TextArea(str(self.row.get("input", "")), id="row-input", soft_wrap=True)
            yield Label("output" + (" (JSON)" if self.structured else ""))
            yield TextArea(json.dumps(output, ensure_ascii=False) if self.structured else str(output),
                           id="row-output", soft_wrap=True)
            with Horizontal(id="row-buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#row-input", TextArea).focus()

    def action_save(self) -> None:
        text = self.query_one("#row-input", TextArea).text.strip()
        raw = self.query_one("#row-output", TextArea).text.strip()
        if not text:
            self.notify("The input is empty: write the example's input.", severity="error")
            return
        output: Any = raw
        if self.structured:
            try:
                output = json.loads(raw)
            except json.JSONDecodeError as exc:
                self.notify(f"output line {exc.lineno} col {exc.colno}: not JSON ({exc.msg})", severity="error")
                return
        elif not raw:
            self.notify("The output is empty: write the expected output.", severity="error")
            return
        slice_name = self.query_one("#row-slice", Select).value
        self.dismiss({**self.row, "input": text, "output": output, "slice": slice_name})

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save() if event.button.id == "save" else self.action_cancel()


class TextPromptScreen(ModalScreen[str | None]):
    """One line of text (a veto reason, slice ratios); empty input is refused, esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TextPromptScreen { align: center middle; }
    TextPromptScreen > Vertical { width: 80%; height: auto; border: thick $primary; background: $surface;
                                  padding: 1; }
    """

    def __init__(self, prompt: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.prompt, self.value, self.placeholder = prompt, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.prompt)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            self.notify("Write something, or press esc to cancel.", severity="warning")
            return
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_ratios(text: str) -> dict[str, float]:
    """`gold=50 hard_negative=35 replay=15` (percent or fractions, any separator) -> fractions."""
    ratios: dict[str, float] = {}
    for part in text.replace(",", " ").split():
        name, sep, value = part.partition("=")
        if not sep or name not in SLICES:
            raise ValueError(f"{part!r}: write slice=value with slice one of {', '.join(SLICES)}")
        try:
            ratios[name] = float(value.rstrip("%"))
        except ValueError:
            raise ValueError(f"{part!r}: {value!r} is not a number") from None
    if not ratios:
        raise ValueError(f"no ratios given: write e.g. {' '.join(f'{s}=…' for s in SLICES)}")
    return ratios


class CurriculumReviewScreen(ModalScreen[Decision]):
    """Dismisses with Decision("approve"), Decision("veto", reason) or Decision("edit", rows=...)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("v", "veto", "Veto"),
        Binding("e", "edit_row", "Edit row"),
        Binding("n", "add_row", "Add"),
        Binding("x", "remove_row", "Remove"),
        Binding("s", "ratios", "Ratios"),
        Binding("z", "discard", "Discard edits", show=False),
        Binding("ctrl+s", "submit", "Submit edits"),
        Binding("escape", "nudge", "", show=False),
    ]
    DEFAULT_CSS = """
    CurriculumReviewScreen { background: $background 60%; }
    CurriculumReviewScreen > Vertical { border: thick $accent; background: $surface; }
    CurriculumReviewScreen #review-summary { height: auto; padding: 0 1; }
    CurriculumReviewScreen CurriculumTable { height: 1fr; }
    """

    def __init__(self, review: CurriculumReview, qc: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.review = review
        self.qc = qc or {}
        self.original = [dict(r) for r in review.rows]
        self.rows = [dict(r) for r in review.rows]
        self._added = 0

    @property
    def edited(self) -> bool:
        return self.rows != self.original

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="review-summary")
            yield CurriculumTable(id="review-table")
        yield Footer()

    def on_mount(self) -> None:
        self._refresh()
        self.query_one(CurriculumTable).focus()

    def summary_text(self) -> str:
        r = self.review
        head = f"[b]Curriculum for node {r.node_id}[/b]"
        if r.dataset_version_id:
            head += f" · dataset {r.dataset_version_id}"
        lines = [head, composition_line(slice_counts(table_rows(self.rows)))]
        if self.edited:
            lines[1] += (f"   [b yellow]edited[/] (was {len(self.original)} rows; "
                         "ctrl+s submits, z discards)")
        if r.rationale:
            lines.append(f"why: {r.rationale}")
        qc = [line.removeprefix("- ") for line in qc_lines(self.qc)]
        lines.append("QC: " + (" · ".join(qc) if qc else "no report"))
        return "\n".join(lines)

    def _refresh(self) -> None:
        self.query_one("#review-summary", Static).update(self.summary_text())
        self.query_one(CurriculumTable).set_rows(table_rows(self.rows))

    def _cursor(self) -> int | None:
        table = self.query_one(CurriculumTable)
        return table.cursor_row if self.rows and 0 <= table.cursor_row < len(self.rows) else None

    # -- decisions -----------------------------------------------------------------------------
    def action_approve(self) -> None:
        if self.edited:
            self.notify("You have edits: ctrl+s submits them as a new curriculum, z discards them.",
                        severity="warning")
            return
        self.dismiss(Decision("approve"))

    def action_veto(self) -> None:
        def done(reason: str | None) -> None:
            if reason:
                self.dismiss(Decision("veto", reason))

        self.app.push_screen(TextPromptScreen("Why veto this curriculum? (the reason is recorded)",
                                              placeholder="e.g. too many replay rows from one intent"), done)

    def action_submit(self) -> None:
        if not self.edited:
            self.notify("No edits to submit: a approves the curriculum as proposed.", severity="warning")
            return
        if not self.rows:
            self.notify("The edited curriculum is empty: add rows or veto it instead.", severity="error")
            return
        self.dismiss(Decision("edit", rows=tuple(self.rows)))

    def action_nudge(self) -> None:
        self.notify("The run waits for a decision: a approves, v vetoes, ctrl+s submits edits.")

    # -- edits ---------------------------------------------------------------------------------
    def action_discard(self) -> None:
        self.rows = [dict(r) for r in self.original]
        self._refresh()

    def action_remove_row(self) -> None:
        index = self._cursor()
        if index is not None:
            del self.rows[index]
            self._refresh()

    def action_edit_row(self) -> None:
        index = self._cursor()
        if index is None:
            return

        def done(row: dict | None) -> None:
            if row is not None:
                self.rows[index] = row
                self._refresh()

        self.app.push_screen(RowEditorScreen(self.rows[index], f"Edit row {index + 1}"), done)

    def action_add_row(self) -> None:
        index = self._cursor()
        template = self.rows[index] if index is not None else {}
        ids = {str(r.get("id")) for r in self.rows + self.original}
        self._added += 1
        while f"tui-added-{self._added}" in ids:
            self._added += 1
        new_id = f"tui-added-{self._added}"
        output: Any = "" if isinstance(template.get("output", ""), str) else template.get("output")
        row = {"id": new_id, "input": "", "output": output, "slice": slice_of(template) if template else "gold"}

        def done(edited: dict | None) -> None:
            if edited is not None:
                self.rows.append(edited)
                self._refresh()
                table = self.query_one(CurriculumTable)
                table.move_cursor(row=len(self.rows) - 1)

        self.app.push_screen(RowEditorScreen(row, "Add a row"), done)

    def action_ratios(self) -> None:
        counts = slice_counts(table_rows(self.rows))
        total = sum(counts.values()) or 1
        current = " ".join(f"{s}={100 * n / total:.0f}" for s, n in counts.items())

        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                ratios = parse_ratios(text)
                resampled = resample_to_ratios(self.rows, ratios)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            dropped = len(self.rows) - len(resampled)
            self.rows = resampled
            self._refresh()
            self.notify(f"ratios applied: {dropped} rows dropped, {len(resampled)} kept")

        self.app.push_screen(TextPromptScreen(
            "Slice ratios in percent (rows are only dropped, never invented):", current), done)

    def on_data_table_row_selected(self, event: CurriculumTable.RowSelected) -> None:
        event.stop()
        self.action_edit_row()
