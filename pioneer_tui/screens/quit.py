"""`q` while a run is going: quitting stops the run, so the workbench asks first."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[bool]):
    """Dismisses with True (y: quit) or False (n / esc: keep the run going)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "decide(True)", "Quit"),
        Binding("n", "decide(False)", "Keep running"),
        Binding("escape", "decide(False)", "Keep running"),
    ]
    DEFAULT_CSS = """
    QuitScreen { align: center middle; }
    QuitScreen > Vertical {
        width: 72; max-width: 100%; height: auto; border: thick $warning; background: $surface; padding: 0 1;
    }
    QuitScreen Static { margin-bottom: 1; }
    QuitScreen Horizontal { height: auto; }
    QuitScreen Button { margin-right: 2; }
    """

    def __init__(self, doing: str, run_id: str | None) -> None:
        super().__init__()
        self.doing = doing
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        resume = f"`pioneer-tui resume {self.run_id}`" if self.run_id else "`pioneer-tui resume RUN`"
        with Vertical():
            yield Static(Text("Quit while a run is going?", style="bold"))
            yield Static(Text(f"The run is {self.doing}. Quitting stops it within seconds (at its next check); "
                              f"continue it later with {resume} (the step in progress starts again)."))
            with Horizontal():
                yield Button("Quit (y)", id="quit", variant="error")
                yield Button("Keep running (n)", id="stay", variant="primary")

    def action_decide(self, quit_now: bool) -> None:
        self.dismiss(quit_now)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit")
