"""The help screen (`?`): every key, by screen, and what the panes mean."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# Pioneer TUI — keys

**Anywhere**: `?` help · `ctrl+t` light/dark theme · `r` runs · `t` trace explorer (SQL) · `B` benchmark
results · `q` quit ·
`ctrl+p` command palette. The mouse works everywhere: click tabs, rows and nodes; scroll with the wheel.

**Run screen** (and replay): `1` graph · `2` failure clusters · `3` curation log · `4` curriculum (data) ·
`n` new run · `F` fork from the highlighted node: a new production run whose root pipeline is
exactly that node's (data, hyperparameters, strategy), on the diagnosis its run had (production runs only).

**New run** (`n` here or in the runs list): production (the deployed model, an optional traces file to
ingest, max iterations / minutes) or cold start (task description + data); `ctrl+s` starts it, `esc` cancels.

**Search graph**: `↑ ↓ PgUp PgDn Home End` move · `enter` details · `f` fold / unfold a branch ·
`p` show / hide pruned branches (every node rejected, vetoed or rolled back) · `b` jump to best ·
`d` jump to the deployed node. Marks: ◐ training · ● evaluated / accepted · ✗ rejected ·
⊘ vetoed · ↺ rolled back · ◆ deployed · ★ best. `← …` is what the node changed from its parent.

**Replay** (runs list → `enter`): `space` play / pause · `.` step · `,` step back ·
`]` / `[` next / previous iteration · `<` / `>` start / end · `+` / `-` speed · `esc` close.

**Curriculum review** (before every train step): `a` approve · `v` veto with a reason ·
`e` edit the highlighted row · `n` add a row · `x` remove the row · `s` change slice ratios ·
`ctrl+s` submit the edited curriculum (a new dataset version, recorded with its diff).

**Rollback / promotion**: `y` approve · `n` refuse. Nothing is decided by `esc`: the run waits.

**Benchmark results** (`B`): every AdaptFT-Bench `result.json` under the workspace's `bench/` folder
(what `pioneer-tui bench adaptft` writes); `↑ ↓` pick one · `o` open another result.json (or its folder)
by path · `f5` reload · `esc` back. The table is the paper's Table 6: per checkpoint C1..C4 the poison
rate, each arm's score ×100 (agent, realistic naive retraining, naive with oracle labels, clean only,
random augmentation), the agent's delta over naive, and whether the agent promoted at that stage; the
chart draws the same trajectories (● agent, ✕ naive, ◆ oracle, ■ clean, ▲ random).

**Trace explorer**: type a read-only SQL statement and press `enter`; `ctrl+s` saves the result
as CSV.

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
