"""The help screen (`?`): every key, by screen, and what the panes mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from pioneer_tui.keys import help_markdown

KEYS_INTRO = """\
# Pioneer TUI — keys

The mouse works everywhere too: click tabs, rows and nodes; scroll with the wheel. Graph marks:
◐ training · ● evaluated / accepted · ✗ rejected · ⊘ vetoed · ↺ rolled back · ◆ deployed · ★ best;
`← …` is what a node changed from its parent.
"""

HELP = KEYS_INTRO + "\n" + help_markdown() + """

# What you see

- **Status bar**: mode, run state, iteration, best score and its regressions, budget spent
  (time, tokens, dollars), and a progress bar with ETA for the running train step.
- **Score chart**: one bar per evaluated node (green in the running, red rejected / rolled back);
  the dotted row is the threshold tau.
- **Failure clusters**: size, fixability (fixable / external) and the probe confirmation rate;
  the panel under the table shows the highlighted cluster's examples.
- **Curation log**: the run's data-curation.md, regenerated from its events (so it cannot drift);
  it follows new entries while you are at its end.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%; border: thick $primary; background: $surface; padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP)

    def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
