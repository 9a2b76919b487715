"""Shown over the main screen when the workspace has no runs: offers the demo project."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def demo_summary(demo_dir: Path) -> tuple[bool, str]:
    """Whether the demo project is present, and one line saying what it holds or what is missing."""
    files = sorted(p for p in demo_dir.glob("**/*") if p.is_file()) if demo_dir.is_dir() else []
    if not files:
        return False, f"The demo project is missing: {demo_dir} holds no files."
    size = sum(p.stat().st_size for p in files)
    return True, f"{demo_dir} — {len(files)} files, {size / 1024:.0f} KiB"


class WelcomeScreen(ModalScreen[str | None]):
    """Dismisses with "demo", "traces" or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "choose('demo')", "Run the demo"),
        Binding("t", "choose('traces')", "Trace explorer"),
        Binding("escape", "choose(None)", "Dismiss"),
    ]
    DEFAULT_CSS = """
    WelcomeScreen { align: center middle; }
    WelcomeScreen > Vertical {
        width: 76; max-width: 95%; height: auto; border: thick $primary; background: $surface; padding: 1 2;
    }
    WelcomeScreen Static { margin-bottom: 1; }
    WelcomeScreen #welcome-buttons { height: auto; layout: horizontal; }
    WelcomeScreen Button { margin-right: 2; }
    """

    def __init__(self, workspace: Path, demo_dir: Path) -> None:
        super().__init__()
        self.workspace = workspace
        self.demo_dir = demo_dir

    def compose(self) -> ComposeResult:
        available, summary = demo_summary(self.demo_dir)
        with Vertical():
            yield Static(Text.assemble(("No runs yet", "bold"), f" in the workspace {self.workspace}."))
            yield Static(
                "The demo project holds judged production traces of a deployed intent classifier "
                "(confusable intents, noise and some poison). [b]d[/b] runs production mode on it with "
                "the embedded defaults — offline, on this machine — and shows the run here live; you "
                "approve each curriculum before it is trained on. Dismissed, the offer stays: d on the "
                "main screen.")
            yield Static(Text(summary), id="demo-summary")
            with Vertical(id="welcome-buttons"):
                yield Button("Run the demo (d)", id="demo", variant="primary", disabled=not available)
                yield Button("Trace explorer (t)", id="traces")
                yield Button("Dismiss (esc)", id="dismiss")

    def action_choose(self, choice: str | None) -> None:
        available, summary = demo_summary(self.demo_dir)
        if choice == "demo" and not available:
            self.notify(summary, severity="error")
            return
        self.dismiss(choice)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "dismiss" else event.button.id)
