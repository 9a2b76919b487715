"""Curriculum review before a train step: the proposal by slice with counts and its QC report;
approve, veto with structured reasons, or edit (remove rows, add rows, edit an example's input or
output, change slice ratios) and submit. Dismisses with an engine `Decision`.

Edits are checked as they are typed (an output must be one of the run's labels; NER spans must fit
the input) and the QC that an edit can change is recomputed from the edited rows, so a person sees
the curriculum they are about to submit, not the one the engine proposed."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Select, SelectionList, Static, TextArea

from engine.curriculum import loss_shares
from engine.data.quality import input_hash, row_label
from engine.search.pipeline import BANDS
from engine.search.reviewer import VETO_REASONS, CurriculumReview, Decision
from engine.tasks import task_type
from pioneer_tui.screens.confirm import short
from widgets.curriculum_table import SLICES, CurriculumRow, CurriculumTable, composition_line, slice_counts
from widgets.formatting import SLICE_NAMES, plural, qc_lines
from widgets.tick_list import TickList

TOLERANCE = 1e-9


def slice_of(row: dict[str, Any]) -> str:
    return str(row.get("slice") or "gold")


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
    if not kept:
        raise ValueError("no row would be kept: a slice with a ratio above 0 has no rows")
    return kept


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


# -- what an edit must satisfy ------------------------------------------------------------------

def _not_a(what: str, value: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else \
        f"use {', '.join(allowed)}" if len(allowed) <= 6 else f"use one of the {len(allowed)}"
    return f"{value!r} is not {what} ({hint})"


def span_error(spans: Any, text: str, labels: Sequence[str]) -> str | None:
    """Why NER spans are not valid for `text` (None when they are): a list of {start, end, label} with
    0 <= start < end <= len(text) and, when the run knows its entity types, a known label."""
    if not isinstance(spans, list):
        return 'write a JSON list of spans, e.g. [{"start": 0, "end": 5, "label": "PER"}] ([] for none)'
    for n, span in enumerate(spans, 1):
        if not isinstance(span, dict) or set(span) < {"start", "end", "label"}:
            return f"span {n}: write {{\"start\": …, \"end\": …, \"label\": …}}"
        start, end, label = span["start"], span["end"], span["label"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            return f"span {n}: start and end must be whole numbers"
        if not 0 <= start < end <= len(text):
            return f"span {n}: needs 0 ≤ start < end ≤ {len(text)} (the input's length), got {start}..{end}"
        if labels and label not in labels:
            return f"span {n}: " + _not_a("an entity type", str(label), labels)
    return None


def output_error(output: Any, text: str, task: str, labels: Sequence[str]) -> str | None:
    """Why an example's output cannot be trained on (None when it can)."""
    kind = task_type(task)
    if kind.spans:
        return span_error(output, text, labels)
    if isinstance(output, str) and not output.strip():
        return "the output is empty: write the expected output"
    if kind.single_label and labels and output not in labels:
        return _not_a("a label", str(output), labels)
    return None


def span_preview(spans: list[dict[str, Any]], text: str) -> str:
    """What the spans cover, so a person can check the offsets: `PER "Ada" · LOC "Paris"`."""
    return " · ".join(f"{s['label']} {text[s['start']:s['end']]!r}" for s in spans) or "no entities"


# -- QC recomputed from the rows on screen ------------------------------------------------------

def row_flags(rows: Sequence[dict[str, Any]], task: str, labels: Sequence[str]) -> list[str]:
    """Per row, why the table marks it with `!` ("" when it does not): a repeated input, a bad output."""
    first: dict[str, int] = {}
    flags = []
    for i, row in enumerate(rows):
        text = str(row.get("input", ""))
        seen = first.setdefault(input_hash(text), i)
        flags.append(f"repeats row {seen + 1}'s input" if seen != i
                     else output_error(row.get("output"), text, task, labels) or "")
    return flags


def _band(part: str, review: CurriculumReview, built: dict[str, Any]) -> list[float]:
    """The band a slice's share must lie in: the one the engine built against, else the pipeline's
    mode's band."""
    if isinstance(built.get("band"), list | tuple):
        return list(built["band"])
    return list(BANDS[review.pipeline.data.mode][part])


def slice_bands(rows: Sequence[dict[str, Any]], review: CurriculumReview,
                built: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each slice's share of the edited rows against its band. Gold and hard negatives are shares of
    the curriculum and replay a share of the replay pool (an edit does not change the pool, so it
    scales with the replay rows from the share the engine measured). When the whole pool is replayed
    (replay_scope "all") the pool's coverage is what an edit can change, and the slices are the
    pipeline's shares of the loss when balanced (engine.curriculum.loss_shares), else plain row shares."""
    now = Counter(slice_of(r) for r in rows)
    data = review.pipeline.data
    bands = {}
    if data.replay_scope == "all":
        shares = loss_shares(now, {"gold": data.gold_fraction, "hard_negative": data.hard_negative_fraction,
                                   "replay": data.replay_fraction}) if data.balance else \
            {part: now[part] / len(rows) for part in now} if rows else {}
        for part in ("gold", "hard_negative", "replay"):
            value = shares.get(part, 0.0)
            if data.balance:
                band = _band(part, review, built.get(part) or {})
                bands[part] = {"value": value, "band": band, "of": "loss",
                               "ok": band[0] - TOLERANCE <= value <= band[1] + TOLERANCE}
            else:  # row shares the pool's size sets: stated, nothing to meet
                bands[part] = {"value": value, "band": None, "ok": True}
        measured = "replay_coverage"
    else:
        for part in ("gold", "hard_negative"):
            band = _band(part, review, built.get(part) or {})
            value = now[part] / len(rows) if rows else 0.0
            bands[part] = {"value": value, "band": band, "ok": band[0] - TOLERANCE <= value <= band[1] + TOLERANCE}
        measured = "replay"
    replay = built.get(measured) or {}
    at_build = Counter(slice_of(r) for r in review.rows)["replay"]
    if replay.get("value") is not None and replay.get("band") and at_build:
        value = replay["value"] * now["replay"] / at_build
        low, high = replay["band"][:2]
        bands[measured] = {"value": value, "band": replay["band"],
                           "ok": low - TOLERANCE <= value <= high + TOLERANCE}
    return bands


def live_qc(rows: Sequence[dict[str, Any]], review: CurriculumReview, built: dict[str, Any]) -> dict[str, Any]:
    """The QC report `built` for the proposal, with what an edit can change recomputed from `rows`:
    the slice bands, the label ratio and exact duplicate inputs."""
    task = review.pipeline.hyperparams.task
    limit = review.pipeline.data.constraints.max_label_ratio
    per_label = Counter(lab for r in rows if (lab := row_label(r, task)) is not None)
    live: dict[str, dict[str, Any]] = {}
    if len(per_label) >= 2:
        (most, high), (fewest, low) = per_label.most_common()[0], per_label.most_common()[-1]
        live["label_ratio"] = {"name": "label_ratio", "passed": high <= limit * low, "value": round(high / low, 2),
                               "limit": limit, "most": f"{most} ({high})", "fewest": f"{fewest} ({low})"}
    repeats = len(rows) - len({input_hash(str(r.get("input", ""))) for r in rows})
    live["exact_duplicates"] = {"name": "exact_duplicates", "passed": repeats == 0, "value": repeats, "limit": 0}
    checks = [{**c, **live.pop(c.get("name"), {})} for c in built.get("checks") or []]
    return {**built, "checks": checks + list(live.values()),
            "bands": slice_bands(rows, review, built.get("bands") or {})}


def qc_text(qc: dict[str, Any], flags: Sequence[str]) -> Content:
    """QC as lines, failures first (with the rows the table marks `!`) and in the warning colour."""
    lines = sorted(qc_lines(qc), key=lambda line: "✗" not in line)
    flagged = [(i, why) for i, why in enumerate(flags) if why]
    if flagged:
        lines.insert(0, f"✗ {plural(len(flagged), 'row')} marked ! in the table: " + "; ".join(
            f"row {i + 1} {why}" for i, why in flagged[:3]) + ("; …" if len(flagged) > 3 else ""))
    return Content("\n").join(Content.styled(line, "bold $text-warning" if "✗" in line else "")
                              for line in lines or ["no QC report"])


def vetoed_text(vetoed: dict[str, Any]) -> str:
    """`Revision of n0003, vetoed (too much replay): replay −561 · gold +12`: how this curriculum differs
    from the one a person vetoed; when the veto gave no revision, that this is the next proposal instead."""
    added, removed = vetoed.get("added") or {}, vetoed.get("removed") or {}
    changes = []
    for part in dict.fromkeys([*SLICES, *added, *removed]):
        moves = ([f"+{added[part]}"] if added.get(part) else []) + ([f"−{removed[part]}"] if removed.get(part) else [])
        if moves:
            changes.append(f"{SLICE_NAMES.get(part, part)} {' '.join(moves)}")
    why = f" ({vetoed['reason']})" if vetoed.get("reason") else ""
    node = short(str(vetoed.get("node_id", "?")))
    head = f"Revision of {node}, vetoed{why}: " if vetoed["revision"] else (
        f"{node} was vetoed{why}, and the planner found nothing to change for it (it acts on the reasons "
        f"picked, not on words alone): this is the search's next proposal. Against {node}: ")
    return head + (" · ".join(changes) or "the same rows; what changed is their weights, outputs or slices (see why)")


# -- dialogs ------------------------------------------------------------------------------------

class RowEditorScreen(ModalScreen[dict | None]):
    """Edit one example: slice, input and output. A classification output is picked from the run's
    labels; NER spans and other structured outputs are JSON, checked as they are typed. A bad output
    keeps the dialog open with the reason beside the field and everything typed kept."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    RowEditorScreen { align: center middle; }
    RowEditorScreen > Vertical { width: 90%; height: 90%; border: thick $primary; background: $surface; }
    RowEditorScreen TextArea { height: 1fr; }
    RowEditorScreen Select { width: 40; }
    RowEditorScreen #row-check { height: auto; padding: 0 1; }
    RowEditorScreen #row-check.error { color: $text-error; text-style: bold; }
    """

    def __init__(self, row: dict[str, Any], title: str, task: str = "classification",
                 labels: Sequence[str] = ()) -> None:
        super().__init__()
        self.row, self.title_text, self.task_name, self.labels = row, title, task, tuple(labels)
        self.kind = task_type(task)
        self.pick = self.kind.single_label and bool(self.labels)
        self.structured = self.kind.spans or not isinstance(row.get("output", ""), str)

    def compose(self) -> ComposeResult:
        output = self.row.get("output", "")
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield Select([(s, s) for s in SLICES], value=slice_of(self.row), allow_blank=False, id="row-slice")
            yield Label("input")
            yield TextArea(str(self.row.get("input", "")), id="row-input", soft_wrap=True)
            if self.pick:
                yield Label(f"output: one of the {len(self.labels)} labels")
                yield Select([(Text(label), label) for label in self.labels], prompt="pick a label", id="row-output",
                             value=output if output in self.labels else Select.NULL)
            else:
                yield Label("output" + (" (JSON)" if self.structured else ""))
                yield TextArea(json.dumps(output, ensure_ascii=False) if self.structured else str(output),
                               id="row-output", soft_wrap=True)
            yield Static(id="row-check")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#row-input", TextArea).focus()
        self.check()

    def on_text_area_changed(self) -> None:
        self.check()

    def on_select_changed(self) -> None:
        self.check()

    def read(self) -> tuple[str, Any, str | None]:
        """(input, output, why they cannot be saved or None)."""
        text = self.query_one("#row-input", TextArea).text
        if self.pick:
            value = self.query_one("#row-output", Select).value
            output = None if value is Select.NULL else value
            if output is None:
                return text, output, "pick the expected label"
        else:
            output = raw = self.query_one("#row-output", TextArea).text.strip()
            if self.structured:
                try:
                    output = json.loads(raw)
                except json.JSONDecodeError as exc:
                    return text, raw, f"not JSON (line {exc.lineno} col {exc.colno}: {exc.msg})"
        if not text.strip():
            return text, output, "the input is empty: write the example's input"
        return text, output, output_error(output, text, self.task_name, self.labels)

    def check(self) -> tuple[str, Any, str | None]:
        """Read the fields and say beside them whether they can be saved (NER: what the spans cover)."""
        text, output, error = self.read()
        note = self.query_one("#row-check", Static)
        note.set_class(error is not None, "error")
        note.update(Text(f"✗ {error}" if error else
                         f"✓ {span_preview(output, text)}" if self.kind.spans else "✓"))
        return text, output, error

    def action_save(self) -> None:
        text, output, error = self.check()
        if error is None:
            slice_name = self.query_one("#row-slice", Select).value
            self.dismiss({**self.row, "input": text, "output": output, "slice": slice_name})

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextPromptScreen(ModalScreen[str | None]):
    """One line of text (a path, slice ratios). `check` says what the text would do as it is typed, or
    raises ValueError: the reason shows under the field and enter keeps the dialog open, text intact."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TextPromptScreen { align: center middle; }
    TextPromptScreen > Vertical { width: 80%; height: auto; border: thick $primary; background: $surface;
                                  padding: 0 1; }
    TextPromptScreen #prompt-check.error { color: $text-error; text-style: bold; }
    """

    def __init__(self, prompt: str, value: str = "", placeholder: str = "",
                 check: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.prompt, self.value, self.placeholder, self.check_text = prompt, value, placeholder, check

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.prompt)
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(id="prompt-check")
        yield Footer()

    def on_mount(self) -> None:
        if self.value:
            self.check(self.value)

    def check(self, text: str) -> bool:
        """Say under the field what `text` would do, or why it cannot be used; True when it can."""
        try:
            if not text.strip():
                raise ValueError("write something, or press esc to cancel")
            said, error = self.check_text(text) if self.check_text else "", False
        except ValueError as exc:
            said, error = f"✗ {exc}", True
        note = self.query_one("#prompt-check", Static)
        note.set_class(error, "error")
        note.update(Text(said))
        return not error

    def on_input_changed(self, event: Input.Changed) -> None:
        self.check(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.check(event.value):
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class VetoScreen(ModalScreen[Decision | None]):
    """Why a curriculum is vetoed: one or more of the engine's reasons (each revises the pipeline a
    known way) and the person's own words; at least one of them, and words when "other" is picked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "veto", "Veto"),
        Binding("escape", "cancel", "Cancel"),
    ]
    DEFAULT_CSS = """
    VetoScreen { align: center middle; }
    VetoScreen > Vertical { width: 90%; max-width: 100; height: auto; border: thick $error;
                            background: $surface; padding: 0 1; }
    VetoScreen SelectionList { height: auto; max-height: 12; }
    VetoScreen #veto-check { color: $text-error; text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("What is wrong with this curriculum? In your words (recorded with the veto):")
            yield Input(placeholder="e.g. the replay rows are all one intent", id="veto-text")
            yield Static("and / or what to change: the planner revises the curriculum by what you pick "
                        "(enter or tab here, space toggles, ctrl+s vetoes); the revision is reviewed next.")
            yield TickList[str](*((label, code) for code, label in VETO_REASONS.items()), id="veto-reasons")
            yield Static(id="veto-check")
        yield Footer()

    def decision(self) -> Decision | str:
        """The veto, or why it cannot be made yet."""
        reasons = tuple(self.query_one(SelectionList).selected)
        text = self.query_one("#veto-text", Input).value.strip()
        if not reasons and not text:
            return "pick a reason or write one"
        if "other" in reasons and not text:
            return "'other': say what is wrong in your words"
        return Decision("veto", text or None, reasons=reasons)

    def action_veto(self) -> None:
        decision = self.decision()
        if isinstance(decision, Decision):
            self.dismiss(decision)
        else:
            self.query_one("#veto-check", Static).update(Text(f"✗ {decision}"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter after the words goes on to the reasons while none is picked: a veto of words alone
        gives the rule planner nothing to revise, so it is not sent by the key that ends a sentence."""
        event.stop()
        reasons = self.query_one(SelectionList)
        if reasons.selected:
            self.action_veto()
        else:
            reasons.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


# -- the review -----------------------------------------------------------------------------------

class CurriculumReviewScreen(ModalScreen[Decision]):
    """Dismisses with Decision("approve"), Decision("veto", reason, reasons=...) or
    Decision("edit", rows=...)."""

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
    CurriculumReviewScreen #review-vetoed { height: auto; padding: 0 1; color: $text-primary; text-style: bold; }
    CurriculumReviewScreen #review-qc-box { height: auto; max-height: 30%; padding: 0 1; }
    CurriculumReviewScreen CurriculumTable { height: 1fr; }
    """

    def __init__(self, review: CurriculumReview, qc: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.review = review
        self.qc = qc or {}
        self.task_name = review.pipeline.hyperparams.task
        self.kind = task_type(self.task_name)
        self.original = [dict(r) for r in review.rows]
        self.rows = [dict(r) for r in review.rows]
        self._added = 0

    @property
    def edited(self) -> bool:
        return self.rows != self.original

    def compose(self) -> ComposeResult:
        with Vertical():
            if self.review.vetoed:
                yield Static(Text(vetoed_text(self.review.vetoed)), id="review-vetoed")
            yield Static(id="review-summary")
            with VerticalScroll(id="review-qc-box"):
                yield Static(id="review-qc")
            yield CurriculumTable(id="review-table")
        yield Footer()

    def on_mount(self) -> None:
        self._refresh()
        self.query_one(CurriculumTable).focus()

    def summary(self) -> Content:
        r = self.review
        parts: list[str | tuple[str, str]] = [(f"Curriculum for node {short(r.node_id)}", "bold")]
        if r.dataset_version_id:
            parts.append(f" · dataset {r.dataset_version_id}")
        parts.append("\n" + composition_line(slice_counts(self.table_rows())))
        if self.edited:
            parts.append((f"   edited (was {len(self.original)} rows; ctrl+s submits, z discards)",
                          "bold $text-warning"))
        if r.rationale:
            parts.append(f"\nwhy: {r.rationale}")
        if r.change:
            parts.append(f"\nchange: {r.change}")
        if r.carried:
            parts.append((f"\n{r.carried}", "$text-primary"))
        return Content.assemble(*parts)

    def summary_text(self) -> str:
        """What the top of the review says, as plain text: the summary and the QC lines."""
        return f"{self.summary().plain}\n{self.qc_report().plain}"

    def flags(self) -> list[str]:
        return row_flags(self.rows, self.task_name, self.review.labels)

    def qc_report(self) -> Content:
        title = "QC (edited: slices, label ratio and duplicates recomputed)" \
            if self.edited else "QC"
        return Content.assemble((title + "\n", "bold"), qc_text(live_qc(self.rows, self.review, self.qc), self.flags()))

    def table_rows(self) -> list[CurriculumRow]:
        return [CurriculumRow(slice_of(r), str(r.get("input", "")), r.get("output"), r.get("id"), flag)
                for r, flag in zip(self.rows, self.flags(), strict=True)]

    def _refresh(self) -> None:
        self.query_one("#review-summary", Static).update(self.summary())
        self.query_one("#review-qc", Static).update(self.qc_report())
        self.query_one(CurriculumTable).set_rows(self.table_rows())

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
        def done(decision: Decision | None) -> None:
            if decision is not None:
                self.dismiss(decision)

        self.app.push_screen(VetoScreen(), done)

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

    def _editor(self, row: dict[str, Any], title: str) -> RowEditorScreen:
        return RowEditorScreen(row, title, self.task_name, self.review.labels)

    def action_edit_row(self) -> None:
        index = self._cursor()
        if index is None:
            return

        def done(row: dict | None) -> None:
            if row is not None:
                self.rows[index] = row
                self._refresh()

        self.app.push_screen(self._editor(self.rows[index], f"Edit row {index + 1}"), done)

    def action_add_row(self) -> None:
        index = self._cursor()
        template = self.rows[index] if index is not None else {}
        ids = {str(r.get("id")) for r in self.rows + self.original}
        self._added += 1
        while f"tui-added-{self._added}" in ids:
            self._added += 1
        new_id = f"tui-added-{self._added}"
        output: Any = [] if self.kind.spans else ""
        row = {"id": new_id, "input": "", "output": output, "slice": slice_of(template) if template else "gold"}

        def done(edited: dict | None) -> None:
            if edited is not None:
                self.rows.append(edited)
                self._refresh()
                table = self.query_one(CurriculumTable)
                table.move_cursor(row=len(self.rows) - 1)

        self.app.push_screen(self._editor(row, "Add a row"), done)

    def action_ratios(self) -> None:
        counts = Counter(slice_of(r) for r in self.rows)
        current = " ".join(f"{s}={100 * counts[s] / len(self.rows):.0f}" for s in SLICES) if self.rows else ""

        def resampled(text: str) -> list[dict[str, Any]]:
            return resample_to_ratios(self.rows, parse_ratios(text))

        def preview(text: str) -> str:
            kept = resampled(text)
            now = Counter(slice_of(r) for r in kept)
            return f"keeps {composition_line({s: now[s] for s in SLICES})}; drops {len(self.rows) - len(kept)}"

        def done(text: str | None) -> None:
            if text is not None:
                kept = resampled(text)
                self.notify(f"ratios applied: {len(self.rows) - len(kept)} rows dropped, {len(kept)} kept")
                self.rows = kept
                self._refresh()

        self.app.push_screen(TextPromptScreen(
            "Slice ratios in percent; enter applies them (rows are only dropped, never invented):", current,
            placeholder="gold=50 hard_negative=35 replay=15", check=preview), done)

    def on_data_table_row_selected(self, event: CurriculumTable.RowSelected) -> None:
        event.stop()
        self.action_edit_row()
