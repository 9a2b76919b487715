"""One trace in full (enter on a row of the trace explorer), where a person can relabel it.

A person's verdict and output override the judge's everywhere pass/fail is computed (the store's
`traces` view), so the next diagnosis of the model trains on and scores against them. The screen only
shows and collects: it dismisses with a `Relabel` that the explorer writes with who and when.
Every value comes from traces and models, so it is rendered as rich Text, never as markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from widgets.formatting import value_text

JUDGE = "judge"  # the verdict choice that leaves the judge's verdict in force


@dataclass(frozen=True)
class Relabel:
    """A person's label for one trace; both None clears it (the judge's verdict and correction count again)."""

    trace_id: str
    verdict: str | None
    output: str | None


def field_table(rows: list[tuple[str, Any]]) -> Table:
    """Label / value pairs, the values wrapped in full (nothing cut off)."""
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1, overflow="fold")
    for label, value in rows:
        table.add_row(label, value if isinstance(value, Text) else Text(value_text(value)))
    return table


def render_trace(trace: dict[str, Any]) -> Group:
    """The trace's fields: what the model saw and answered, the judge's verdict, a person's label."""
    verdict_style = {"pass": "green", "fail": "red"}
    judge = Text(str(trace.get("auto_verdict")), style=verdict_style.get(str(trace.get("auto_verdict")), ""))
    if trace.get("judge_correction") is not None:
        judge.append(" · correction ")
        judge.append(str(trace["judge_correction"]), style="bold")
    rows: list[tuple[str, Any]] = [
        ("input", Text(str(trace.get("input", "")))),
        ("prediction", Text(str(trace.get("prediction") or "(empty)"))),
        ("judge", judge),
    ]
    if trace.get("reasoning"):
        rows.append(("reasoning", Text(str(trace["reasoning"]), style="italic")))
    if trace.get("human_verdict") is not None or trace.get("human_output") is not None:
        person = Text(str(trace.get("human_verdict") or "judge's verdict"),
                      style=verdict_style.get(str(trace.get("human_verdict")), ""))
        if trace.get("human_output") is not None:
            person.append(" · output ")
            person.append(str(trace["human_output"]), style="bold")
        person.append(f" · by {trace.get('human_by') or 'unknown'} at {trace.get('human_at') or 'an unknown time'}",
                      style="dim")
        rows.append(("person", person))
    rows.append(("counts as", Text(f"{trace.get('verdict')}" + (
        f" · right answer {trace['correction']}" if trace.get("correction") is not None else ""), style="bold")))
    metadata = trace.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            pass
    if metadata:
        rows.append(("metadata", metadata if isinstance(metadata, dict) else str(metadata)))
    rows += [(key, trace[key]) for key in ("latency_ms", "stage", "source") if trace.get(key) is not None]
    return Group(field_table(rows))


class TraceScreen(ModalScreen[Relabel | None]):
    """Dismisses with a Relabel (ctrl+s / Save) or None (escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save label"),
        Binding("escape", "close", "Back"),
    ]
    DEFAULT_CSS = """
    TraceScreen { align: center middle; }
    TraceScreen > Vertical {
        width: 100%; max-width: 110; height: 100%; max-height: 40; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    TraceScreen #trace-title { text-style: bold; height: auto; }
    TraceScreen VerticalScroll { height: 1fr; }
    TraceScreen Horizontal { height: auto; }
    TraceScreen Label { width: 9; padding: 1 1 0 0; }
    TraceScreen Select { width: 24; }
    TraceScreen Input { width: 1fr; }
    TraceScreen Button { margin-right: 2; min-width: 10; }
    """

    def __init__(self, trace: dict[str, Any]) -> None:
        super().__init__()
        self.trace = trace

    def compose(self) -> ComposeResult:
        t = self.trace
        title = Text.assemble(("Trace ", "bold"), str(t["id"]), f" · {t.get('model_id')} · {t.get('task') or '?'} · "
                              f"{str(t.get('ts', ''))[:19].replace('T', ' ')}")
        judge = str(t.get("auto_verdict"))
        with Vertical():
            yield Static(title, id="trace-title")
            with VerticalScroll(id="trace-body"):
                yield Static(render_trace(t))
            yield Static("Your label overrides the judge's in every diagnosis and evaluation set from now on.",
                         id="trace-hint")
            with Horizontal():
                yield Label("Verdict")
                yield Select([(f"judge's: {judge}", JUDGE), ("pass", "pass"), ("fail", "fail")],
                             value=t.get("human_verdict") or JUDGE, allow_blank=False, id="trace-verdict")
                yield Label("Output")
                yield Input(t.get("human_output") or "", placeholder="the right output (empty: the judge's)",
                            id="trace-output")
            with Horizontal():
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Back (esc)", id="close")

    def on_mount(self) -> None:
        self.query_one("#trace-body", VerticalScroll).focus()

    def relabel(self) -> Relabel:
        verdict = self.query_one("#trace-verdict", Select).value
        output = self.query_one("#trace-output", Input).value.strip()
        return Relabel(str(self.trace["id"]), None if verdict == JUDGE else str(verdict), output or None)

    def action_save(self) -> None:
        label = self.relabel()
        if (label.verdict, label.output) == (self.trace.get("human_verdict") or None,
                                             self.trace.get("human_output") or None):
            # typing while the verdict list has focus changes nothing: say so rather than store a no-op
            self.notify("Nothing changed: tab moves to the verdict, then to the output.", title="Relabel")
            return
        self.dismiss(label)

    def action_close(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save() if event.button.id == "save" else self.action_close()


class RowScreen(ModalScreen[None]):
    """Any other query row in full (a row of events, runs, ...): escape closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]
    DEFAULT_CSS = """
    RowScreen { align: center middle; }
    RowScreen > VerticalScroll {
        width: 100%; max-width: 110; height: auto; max-height: 100%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    """

    def __init__(self, columns: list[str], row: tuple[Any, ...]) -> None:
        super().__init__()
        self.columns = columns
        self.row = row

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(field_table([(c, Text("NULL" if v is None else str(v)))
                                      for c, v in zip(self.columns, self.row, strict=False)]))

    def action_close(self) -> None:
        self.dismiss(None)
