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
◐ training · ● evaluated / accepted · ◒ close call (over the regression budget) · ⊖ refused by a person · ✗ rejected · ⊘ vetoed · ↺ rolled back · ◆ deployed · ★ best · ! failed;
`← …` is what a node changed from its parent. In a curriculum table, `!` marks a row the review's QC flags.
"""

HELP = KEYS_INTRO + "\n" + help_markdown() + """

# What you see

- **Status bar**: mode, run state, iteration, best score and its regressions, and the budget spent
  (wall time against its limit, tokens and dollars when an LLM planner spends them). While a run goes
  the clock keeps counting between the engine's reports; the second line says what the run is doing
  and for how long, and while a model trains: "preparing" until the trainer's first report, then its
  steps, with an ETA measured from the rate between reports, then "evaluating".
- **Next step** (after a run, on the main screen): what makes sense now, e.g. after a promotion on the
  demo, `N` has the promoted model answer next week's traffic and runs the loop again on it.
- **Score chart**: one bar per evaluated node, numbered as in the graph (green in the running, red
  rejected / rolled back); the dotted row is the threshold τ.
- **Failure clusters**: how many failures are fixable (what the search targets) and how many are
  external (without a correction, or poison), then per cluster its id (the ids the curriculum's
  quality report and the log use), size, fixability and probe confirmation rate; the panel under the
  table shows the highlighted cluster's examples.
- **Curation log**: the run's data-curation.md, regenerated from its events (so it cannot drift);
  it follows new entries while you are at its end.
- **Trace explorer**: enter on a result row opens it in full; on a trace, a person's verdict and
  output override the judge's in every later diagnosis and are recorded with who and when.
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
