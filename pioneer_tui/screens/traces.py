"""Trace explorer: one read-only SQL statement over the workspace (engine.query.query_traces), the
result in a DataTable, and CSV export. The query runs in the app's thread worker, never on the UI.
Enter on a result row opens it in full; a trace (a row whose `id` is a trace id) can be relabelled
there, and the label is written with who and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Static

from pioneer_tui.screens.trace_view import Relabel, RowScreen, TraceScreen
from store import Store, atomic_write_text
from widgets.formatting import plural

DEFAULT_SQL = ("SELECT id, model_id, verdict, input, prediction, correction FROM traces "
               "WHERE verdict = 'fail' ORDER BY ts LIMIT 200")
MAX_SHOWN_ROWS = 2000
CELL_CHARS = 60


@dataclass
class QueryOutcome:
    """What the worker hands back: the columns and rows, the saved result file, timing."""

    sql: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    csv: str
    path: str
    elapsed_ms: float
    truncated: bool


class QueryFinished(Message):
    def __init__(self, outcome: QueryOutcome) -> None:
        self.outcome = outcome
        super().__init__()


class QueryFailed(Message):
    def __init__(self, sql: str, error: str) -> None:
        self.sql = sql
        self.error = error
        super().__init__()


def _cell(value: Any) -> Text:
    """A result cell as plain Text (trace text is data, never markup), one line, cut at CELL_CHARS."""
    text = "NULL" if value is None else str(value).replace("\n", " ⏎ ")
    return Text(text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…", no_wrap=True)


class ExportScreen(ModalScreen[Path | None]):
    """Asks where to write the CSV; dismisses with the path or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 80%; height: auto; border: thick $primary; background: $surface; padding: 1; }
    """

    def __init__(self, default: Path) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Export the result as CSV to:")
            yield Input(str(self.default), id="export-path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(Path(event.value).expanduser() if event.value.strip() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TraceExplorerScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "export", "Save CSV"),
        Binding("escape", "app.pop_screen", "Back"),
    ]
    HINT = ("Read-only SQL over the workspace (tables: traces, runs, search_nodes, evaluations, decisions, events, "
            "models, dataset_versions). enter runs it; tab moves to the result, where enter opens a row in full "
            "(a trace can be relabelled there).")
    DEFAULT_CSS = """
    TraceExplorerScreen #sql-row { height: 3; }
    TraceExplorerScreen #sql { width: 1fr; }
    TraceExplorerScreen #query-status { height: auto; padding: 0 1; background: $panel; }
    TraceExplorerScreen DataTable { height: 1fr; }
    """

    def __init__(self, store: Store, sql: str = DEFAULT_SQL, *, who: str = "tui") -> None:
        super().__init__()
        self.store = store
        self.exports_dir = store.workspace.root / "exports"
        self.initial_sql = sql
        self.who = who
        self.outcome: QueryOutcome | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="sql-row"):
            yield Input(self.initial_sql, placeholder="SELECT ... FROM traces", id="sql")
            run = Button("Run", id="run", variant="primary")
            run.can_focus = False  # for the mouse: tab goes straight between the SQL and the result
            yield run
        yield Static(self.HINT, id="query-status")
        yield DataTable(zebra_stripes=True, cursor_type="row", id="query-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sql", Input).focus()

    def run_sql(self) -> None:
        sql = self.query_one("#sql", Input).value
        self.query_one("#query-status", Static).update(Text(f"running: {sql}"))
        self.app.run_query(sql, self)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_sql()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.run_sql()

    def on_query_finished(self, message: QueryFinished) -> None:
        self.outcome = out = message.outcome
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns(*out.columns)
        for row in out.rows[:MAX_SHOWN_ROWS]:
            table.add_row(*(_cell(v) for v in row))
        shown = f" (showing the first {MAX_SHOWN_ROWS})" if len(out.rows) > MAX_SHOWN_ROWS else ""
        cut = " — row limit reached, result cut off" if out.truncated else ""
        self.query_one("#query-status", Static).update(Text(
            f"{plural(len(out.rows), 'row')} × {plural(len(out.columns), 'column')} in {out.elapsed_ms:.0f} ms"
            f"{shown}{cut}. Enter on a row opens it in full; ctrl+s saves the result as CSV (full result in "
            f"{out.path})."))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: a trace opens where it can be relabelled, any other row opens in full."""
        event.stop()
        out = self.outcome
        if out is None or event.cursor_row >= len(out.rows):
            return
        row = out.rows[event.cursor_row]
        trace = self.store.traces.get(str(row[out.columns.index("id")])) if "id" in out.columns else None
        if trace is None:
            self.app.push_screen(RowScreen(out.columns, row))
        else:
            self.app.push_screen(TraceScreen(trace), self._relabelled)

    def _relabelled(self, relabel: Relabel | None) -> None:
        if relabel is None:
            return
        self.store.traces.set_human(relabel.trace_id, relabel.verdict, relabel.output, who=self.who)
        what = "cleared: the judge's label counts again" if relabel.verdict is None and relabel.output is None \
            else f"verdict {relabel.verdict or 'as judged'}, output {relabel.output or 'as judged'}"
        self.notify(f"trace {relabel.trace_id} relabelled by {self.who}: {what}", title="Relabel")
        self.run_sql()  # the table shows the new effective verdict

    def on_query_failed(self, message: QueryFailed) -> None:
        self.query_one("#query-status", Static).update(Text.assemble(("error: ", "bold red"), message.error))

    def action_export(self) -> None:
        if self.outcome is None:
            self.notify("Run a query first (enter).", severity="warning")
            return
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.app.push_screen(ExportScreen(self.exports_dir / f"query-{stamp}.csv"), self._export_to)

    def _export_to(self, path: Path | None) -> None:
        if path is None or self.outcome is None:
            return
        try:
            atomic_write_text(path, self.outcome.csv)
        except OSError as exc:
            self.notify(f"could not write {path}: {exc.strerror or exc}", severity="error")
            return
        self.query_one("#query-status", Static).update(Text(f"Exported {len(self.outcome.rows)} rows to {path}"))
        self.notify(f"exported {path}")
