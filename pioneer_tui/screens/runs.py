"""The runs list: every run in the workspace (the rows `pioneer-tui runs` prints); enter opens its replay."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from pioneer_tui.keys import navigation
from pioneer_tui.run_list import COLUMNS, run_rows
from pioneer_tui.screens.run_screen import ReplayScreen
from store import Store


class RunsScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Replay"),
        Binding("escape", "app.pop_screen", "Back"),
        Binding("f5", "reload", "Reload"),
        *navigation("t", "n"),
    ]
    DEFAULT_CSS = """
    RunsScreen > Static { height: auto; padding: 0 1; background: $panel; }
    RunsScreen > DataTable { height: 1fr; }
    """

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        yield Static("Runs in this workspace — enter replays the highlighted run, n starts a new one.", id="runs-title")
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="runs-table")
        table.add_columns(*COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(DataTable).focus()

    def action_reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        runs = list(reversed(run_rows(self.store)))
        for run in runs:
            table.add_row(*(Text(cell) for cell in run.cells()), key=run.id)
        if not runs:
            self.query_one("#runs-title", Static).update("No runs yet in this workspace.")

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count:
            run_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            self.app.push_screen(ReplayScreen(self.store, str(run_id)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.push_screen(ReplayScreen(self.store, str(event.row_key.value)))
