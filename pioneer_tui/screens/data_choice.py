"""Which dataset a cold-start run without `--data` trains on: the catalog search's ranked matches, each
with why it matches; the person ticks one (or several of one task type, combined) or none.

Card text (titles, descriptions, labels from a local file or the Hub) is data: rendered as rich `Text`."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, SelectionList, Static
from textual.widgets.selection_list import Selection

from engine.catalog import CatalogSearch, Match
from pioneer_tui.screens.confirm import MODAL_CSS
from widgets.tick_list import TickList

SHOWN = 10


class DataChoiceScreen(ModalScreen[tuple[int, ...] | None]):
    """Dismisses with the indices (into `search.matches`) of the ticked datasets; an empty tuple chooses
    none. The best match above the floor starts ticked; escape decides nothing (the run is waiting)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "use", "Use the ticked"),
        Binding("ctrl+n", "none", "None of them"),
        Binding("escape", "nudge", "", show=False),
    ]
    DEFAULT_CSS = MODAL_CSS.format(name="DataChoiceScreen") + """
    DataChoiceScreen SelectionList { height: 1fr; }
    DataChoiceScreen #data-why { height: auto; max-height: 6; }
    DataChoiceScreen #data-check { color: $text-error; }
    """

    def __init__(self, search: CatalogSearch) -> None:
        super().__init__()
        self.search = search
        self.shown = search.matches[:SHOWN]

    def compose(self) -> ComposeResult:
        best = self.search.best
        with Vertical():
            yield Static(Text(f"Data for {self.search.description!r}"), id="confirm-title")
            yield Static(Text(f"{len(self.search.accepted)} of {sum(self.search.searched.values())} datasets reach "
                              f"the similarity floor {self.search.floor:.2f} with the right task type; space "
                              "ticks, ctrl+s uses the ticked ones" + "".join(f"\n{n}" for n in self.search.notes)))
            yield TickList[int](*(Selection(self._prompt(m), i, m is best) for i, m in enumerate(self.shown)))
            yield Static(id="data-why")
            yield Static(id="data-check")
            with Horizontal():
                yield Button("Use the ticked (ctrl+s)", id="use", variant="success")
                yield Button("None of them (ctrl+n)", id="none", variant="error")
        yield Footer()

    @staticmethod
    def _prompt(m: Match) -> Text:
        mark = "" if m.accepted else "  (below the floor or another task)"
        return Text(f"{m.similarity:.2f}  {m.card.source} · {m.card.title} · {m.card.task or 'task?'}, "
                    f"{m.card.size}{mark}")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()
        if self.shown:
            self._show_why(0)

    def on_selection_list_selection_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        self._show_why(event.selection.value)

    def _show_why(self, index: int) -> None:
        m = self.shown[index]
        labels = ", ".join(m.card.labels[:12]) + (" …" if len(m.card.labels) > 12 else "")
        self.query_one("#data-why", Static).update(Text(f"{m.why}\n{m.card.description}"
                                                        + (f"\nlabels: {labels}" if labels else "")))

    def action_use(self) -> None:
        ticked = tuple(sorted(self.query_one(SelectionList).selected))
        tasks = {self.shown[i].card.task for i in ticked}
        if not ticked:
            self.query_one("#data-check", Static).update("✗ tick a dataset with space, or choose none (ctrl+n)")
        elif len(tasks) > 1:
            self.query_one("#data-check", Static).update("✗ the ticked datasets are of different task types: "
                                                         "combine only one kind")
        else:
            self.dismiss(ticked)

    def action_none(self) -> None:
        self.dismiss(())

    def action_nudge(self) -> None:
        self.notify("The run waits for its data: ctrl+s uses the ticked datasets, ctrl+n none.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_use() if event.button.id == "use" else self.action_none()
