"""AdaptFT-Bench results (`B`): the result files found under the workspace's bench/ folder (or opened
by path with `o`), and for the highlighted one the checkpoint table C1..C4 (each arm's score, the
agent's delta over realistic naive retraining, the poison rate, whether the agent promoted) and the
stage trajectories as a terminal chart: the same figures as report.md and chart.html."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from pioneer_tui.bench_results import (
    RESULT_FILE,
    BenchResultError,
    BenchView,
    find_results,
    load_result,
    resolve,
)
from pioneer_tui.keys import navigation
from pioneer_tui.screens.review import TextPromptScreen
from widgets.trajectory_chart import Series, TrajectoryChart

ARM_LABELS = {"agent": "agent", "naive": "naive", "oracle": "oracle", "clean_only": "clean", "random_aug": "random"}
MARKERS = {"agent": "●", "naive": "✕", "oracle": "◆", "clean_only": "■", "random_aug": "▲"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def checkpoint_cells(view: BenchView) -> tuple[list[str], list[tuple[str, ...]]]:
    """The table's header and rows: checkpoint, poison rate, agent, naive, delta, other arms, promoted."""
    others = [a for a in view.arms if a not in ("agent", "naive")]
    head = ["ckpt", "poison", "agent", *(["naive", "delta"] if "naive" in view.arms else []),
            *(ARM_LABELS.get(a, a) for a in others), "promoted"]
    rows = []
    for c in view.checkpoints:
        delta = "—" if c.delta is None else f"{100 * c.delta:+.1f}"
        rows.append((c.name, "—" if c.poison_rate is None else f"{c.poison_rate:.0%}", _pct(c.scores["agent"]),
                     *([_pct(c.scores["naive"]), delta] if "naive" in view.arms else []),
                     *(_pct(c.scores[a]) for a in others),
                     "—" if c.promoted is None else ("yes" if c.promoted else "no")))
    return head, rows


def summary_text(view: BenchView) -> str:
    gap = view.final_gap
    return (f"[b]{view.dataset}[/b] ({view.task}, seed {view.seed}) · {view.metric} ×100 on "
            f"{view.n_held_out_scored}/{view.n_held_out} held-out rows\n"
            f"final gap over realistic naive {'—' if gap is None else f'{100 * gap:+.1f} points'} · agent curve "
            f"never decreases: {'yes' if view.agent_monotone else '[b red]NO[/]'}")


def series_of(view: BenchView) -> list[Series]:
    """Every arm, the agent last so it is drawn on top."""
    order = [a for a in view.arms if a != "agent"] + ["agent"]
    return [Series(ARM_LABELS.get(a, a), tuple(view.trajectory(a)), MARKERS.get(a, "○")) for a in order]


class BenchScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("o", "open", "Open path"),
        Binding("f5", "reload", "Reload"),
        *navigation(),
    ]
    DEFAULT_CSS = """
    BenchScreen #bench-title { height: auto; max-height: 4; padding: 0 1; background: $panel; }
    BenchScreen #bench-results { height: auto; max-height: 5; }
    BenchScreen #bench-summary { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    BenchScreen #bench-checkpoints { height: auto; max-height: 7; }
    BenchScreen #bench-chart { height: 1fr; min-height: 6; border-top: solid $primary 50%; }
    """

    def __init__(self, workspace_root: Path, paths: list[Path] | None = None) -> None:
        super().__init__()
        self.workspace_root = workspace_root
        self.opened: list[Path] = [resolve(p) for p in paths or []]
        self.views: dict[str, BenchView | BenchResultError] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="bench-title")
        results: DataTable = DataTable(cursor_type="row", id="bench-results")
        results.add_columns("dataset", "seed", "final gap", "monotone", "minutes", "folder")
        yield results
        yield Static("", id="bench-summary")
        yield DataTable(cursor_type="none", zebra_stripes=True, id="bench-checkpoints")
        yield TrajectoryChart(id="bench-chart")
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#bench-results", DataTable).focus()

    def action_reload(self) -> None:
        paths = list(dict.fromkeys([*self.opened, *find_results(self.workspace_root)]))
        loaded: dict[str, BenchView | BenchResultError] = {}
        for path in paths:
            try:
                loaded[str(path)] = load_result(path)
            except BenchResultError as exc:
                loaded[str(path)] = exc
        # readable results first (in their order), the ones that cannot be shown after them
        self.views = dict(sorted(loaded.items(), key=lambda kv: isinstance(kv[1], BenchResultError)))
        table = self.query_one("#bench-results", DataTable)
        table.clear()
        for key, view in self.views.items():
            table.add_row(*self._result_cells(key, view), key=key)
        self.query_one("#bench-title", Static).update(
            f"[b]AdaptFT-Bench[/b] · {len(self.views)} result(s) · ↑↓ pick · o opens a result.json · esc back"
            if self.views else f"No AdaptFT-Bench result in {self.workspace_root / 'bench'}: run `pioneer-tui "
                               "bench adaptft`, or press o to open a result.json")
        self._show(next(iter(self.views), None))

    def _result_cells(self, key: str, view: BenchView | BenchResultError) -> tuple[str, ...]:
        path = Path(key)
        shown = path.parent.name if path.name == RESULT_FILE else path.name  # the bench's output folder
        if isinstance(view, BenchResultError):
            return ("unreadable", "—", "—", "—", "—", shown)
        gap = view.final_gap
        return (view.dataset, str(view.seed), "—" if gap is None else f"{100 * gap:+.1f}",
                "yes" if view.agent_monotone else "NO", f"{view.seconds / 60:.1f}", shown)

    def _show(self, key: str | None) -> None:
        view = self.views.get(key or "")
        summary = self.query_one("#bench-summary", Static)
        table = self.query_one("#bench-checkpoints", DataTable)
        chart = self.query_one(TrajectoryChart)
        table.clear(columns=True)
        if not isinstance(view, BenchView):
            summary.update(str(view) if view is not None else "")
            chart.set_series([], [])
            return
        summary.update(summary_text(view))
        head, rows = checkpoint_cells(view)
        for label in head:  # fixed widths: a column auto-sized to a short label crops "+23.1"
            table.add_column(label, width=max(len(label), max(len(r[len(table.columns)]) for r in rows)))
        table.add_rows(rows)
        chart.set_series([c.name for c in view.checkpoints], series_of(view))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "bench-results" and event.row_key.value is not None:
            self._show(str(event.row_key.value))

    def action_open(self) -> None:
        self.app.push_screen(TextPromptScreen("Open an AdaptFT-Bench result: a result.json or its folder",
                                              placeholder="e.g. ~/.pioneer/bench/adaptft-clinc150-s0"), self._opened)

    def _opened(self, text: str | None) -> None:
        if not text:
            return
        path = resolve(Path(text))
        try:
            load_result(path)
        except BenchResultError as exc:
            self.app.notify(str(exc), title="Cannot open", severity="error", timeout=12)
            return
        if path not in self.opened:
            self.opened.insert(0, path)
        self.action_reload()
        table = self.query_one("#bench-results", DataTable)
        table.move_cursor(row=table.get_row_index(str(path)))
