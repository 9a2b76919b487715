"""One run on screen: status bar, search graph + details + score chart, clusters, curation log and the
latest curriculum. Live (engine events through the bridge, or new events tailed from the store when
another process runs it) and replay (play / pause / step / jump) share this screen and its fold."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, TabbedContent, TabPane

from engine.curation_log import composition_text, diff_text, render_curation_log
from pioneer_tui.bridge import EventBridge, RunEvent, RunState
from pioneer_tui.keys import navigation
from pioneer_tui.next_step import NextStep, next_step
from pioneer_tui.screens.new_run import fork_request
from store import Event, Store
from widgets.cluster_pane import ClusterPane
from widgets.curation_log_view import CurationLogView
from widgets.curriculum_table import CurriculumRow, CurriculumTable
from widgets.formatting import qc_lines
from widgets.node_details import NodeDetails
from widgets.score_chart import ScoreChart
from widgets.search_graph import SearchGraph
from widgets.status_bar import StatusBar

TAB_FOCUS = {"graph": "#search-graph", "clusters": "#cluster-table", "log": "#curation-log",
             "curriculum": "#curriculum-table"}
REPLAY_SPEEDS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
TAIL_INTERVAL_S = 1.0
CLOCK_INTERVAL_S = 1.0
GRAPH_LEGEND = "Search graph ● evaluated ✗ rejected ⊘ vetoed ↺ rolled back ◆ deployed ★ best"
LOG_TITLE = "data-curation.md · regenerated from the run's events (never edited by hand)"


def curriculum_rows(rows: list[dict[str, Any]]) -> list[CurriculumRow]:
    """Dataset-version rows (JSONL dicts) as table rows; the slice defaults to gold."""
    return [CurriculumRow(slice=str(r.get("slice") or "gold"), input=str(r.get("input", "")),
                          output=r.get("output"), id=r.get("id")) for r in rows]


class RunScreen(Screen):
    """A run's whole history, then its new events as they stream in. `follow_new_runs` (the main
    screen) switches to any run whose events arrive, e.g. one just started from the TUI."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "tab('graph')", "Graph", show=False),
        Binding("2", "tab('clusters')", "Clusters", show=False),
        Binding("3", "tab('log')", "Log", show=False),
        Binding("4", "tab('curriculum')", "Data", show=False),
        *navigation("r", "t"),
        Binding("F", "fork", "Fork"),
        Binding("N", "next_step", "Next step"),
        Binding("d", "demo", "Demo"),
    ]

    def __init__(self, store: Store, run_id: str | None = None, *, follow_new_runs: bool = False,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.store = store
        self.run_id = run_id
        self.follow_new_runs = follow_new_runs
        self.state = RunState()
        self.bridge = EventBridge(self)
        self._dirty: set[str] = set()
        self._flush_scheduled = False
        self._curriculum_version: str | None = None
        self._log_cache: tuple[int, str] = (-1, "")
        self._log_stale = False
        self._tail_timer: Timer | None = None
        self._note = ""
        self._engine_ended = False  # this process's engine thread has ended since the last start
        self.next: NextStep | None = None

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with TabbedContent(initial="graph", id="tabs"):
            with TabPane("1 Graph", id="graph"):
                with Vertical():
                    yield Static(GRAPH_LEGEND, id="graph-legend", classes="pane-title")
                    with Horizontal(id="graph-row"):
                        yield SearchGraph(id="search-graph")
                        yield NodeDetails(id="node-details")
                    yield ScoreChart(id="score-chart")
            with TabPane("2 Clusters", id="clusters"):
                yield ClusterPane(id="cluster-pane")
            with TabPane("3 Log", id="log"):
                with Vertical():
                    yield Static(LOG_TITLE, id="log-title", classes="pane-title")
                    yield CurationLogView(id="curation-log")
            with TabPane("4 Data", id="curriculum"):
                with Vertical():
                    yield Static("Curriculum · none proposed yet", id="curriculum-summary")
                    yield CurriculumTable(id="curriculum-table")
        yield Static("", id="next-step")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.run_id:
            self.load_run(self.run_id)
        else:
            self._mark({"status"})
        self.query_one(SearchGraph).focus()
        self.set_interval(CLOCK_INTERVAL_S, self._tick)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`N` only when a next step is offered; `d` only on a workspace without runs; `F` once there is a run."""
        if action == "next_step":
            return self.next is not None
        if action == "fork":
            return bool(self.state.nodes)
        if action == "demo":
            return self.follow_new_runs and not self.state.run_id and not self.app.run_in_progress  # type: ignore[attr-defined]
        return True

    def action_next_step(self) -> None:
        self.app.action_next_step()  # type: ignore[attr-defined]

    def action_demo(self) -> None:
        self.app.action_demo()  # type: ignore[attr-defined]

    @property
    def live(self) -> bool:
        """The run on screen is going now (in this process, or followed in the store), so its clock runs."""
        return self.state.state == "running" and (self._tail_timer is not None or (
            self.follow_new_runs and self.app.run_in_progress))  # type: ignore[attr-defined]

    def _tick(self) -> None:
        if self.live:
            self._mark({"status"})

    # -- loading and following -----------------------------------------------------------------
    def load_run(self, run_id: str, *, tail: bool = True) -> None:
        """Show a run's whole history now; with `tail`, follow it while another process runs it."""
        self.run_id = run_id
        self._rebuild(self.store.runs.events(run_id), run_id)
        run = self.store.runs.get(run_id)
        self.state.set_stored_status(run)
        if self._tail_timer is not None:
            self._tail_timer.stop()
            self._tail_timer = None
        if tail and run is not None and run["status"] == "running":
            self._tail_timer = self.set_interval(TAIL_INTERVAL_S, self._tail)

    def run_starting(self) -> None:
        self._engine_ended = False
        self.set_note("starting the run")
        self.refresh_bindings()  # `d` and `N` are not offered while a run is going

    def run_ended(self) -> None:
        """The engine thread ended: a run that failed or was stopped says so only in its row (events
        still queued for this screen sync it again when they arrive)."""
        self._engine_ended = True
        self._sync_stored_status()
        self.refresh_bindings()

    def _sync_stored_status(self) -> None:
        if self.state.set_stored_status(self.store.runs.get(self.state.run_id)):
            self._note = ""
        self._mark({"status"})

    def _rebuild(self, events: list[Event], run_id: str | None) -> None:
        self.state = RunState(run_id=run_id or "")
        changed: set[str] = {"status", "graph", "chart", "clusters", "log", "curriculum"}
        for event in events:
            changed |= self.state.apply(event)
        self._mark(changed)

    def _tail(self) -> None:
        for event in self.store.runs.events(self.state.run_id, after_seq=self.state.last_seq):
            self.bridge.publish(event)
        run = self.store.runs.get(self.state.run_id)
        if run is not None and run["status"] != "running" and self._tail_timer is not None:
            self._tail_timer.stop()  # ended in the other process; its last events are queued above
            self._tail_timer = None
            self.call_later(self.run_ended)

    def on_run_event(self, message: RunEvent) -> None:
        event = self.bridge.received(message)
        if event is None:
            return
        if self.follow_new_runs and event.run_id != self.state.run_id:
            self._note = ""  # what was said while the run was being set up
            self.load_run(event.run_id, tail=False)  # a run started in this process: its events come here
            if self._engine_ended:
                self._sync_stored_status()
            self.refresh_bindings()
            return
        self._mark(self.state.apply(event))
        if self._engine_ended:
            self._sync_stored_status()
        if event.type == "run_finished" and self._tail_timer is not None:
            self._tail_timer.stop()
            self._tail_timer = None

    # -- rendering -----------------------------------------------------------------------------
    def _mark(self, changed: set[str]) -> None:
        if not changed:
            return
        self._dirty |= changed
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_later(self.flush)

    def flush(self) -> None:
        """Redraw the panes touched since the last flush (one redraw per burst of events)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        state = self.state
        graph = self.query_one(SearchGraph)
        if "graph" in dirty:
            graph.set_graph(state.graph_nodes(), best_id=state.best_id, deployed_id=state.deployed_id)
            self._show_details(graph.highlighted_id)
        if "status" in dirty:
            now = datetime.now(UTC) if self.live else None
            self.query_one(StatusBar).set_status(state.status(self._state_label(), note=self._note, now=now))
            self._show_next_step()
        if "chart" in dirty:
            self.query_one(ScoreChart).set_points(state.score_points(), state.threshold)
        if "clusters" in dirty:
            self.query_one(ClusterPane).set_clusters(state.clusters)
        if "log" in dirty:
            self._log_stale = True
        if self._log_stale and self.query_one(TabbedContent).active == "log":
            self._log_stale = False  # markdown is re-rendered only while the log is on screen
            self.query_one(CurationLogView).set_markdown(self.curation_markdown())
        if "curriculum" in dirty:
            self._show_curriculum()

    def set_note(self, text: str) -> None:
        """A line for the status bar when no step is running (e.g. why a run could not start)."""
        self._note = text
        self._mark({"status"})

    def curation_markdown(self) -> str:
        if not self.state.events:
            return ""
        key = self.state.last_seq
        if self._log_cache[0] != key:
            self._log_cache = (key, render_curation_log(self.state.events))
        return self._log_cache[1]

    def _state_label(self) -> str:
        return self.state.state

    def _show_next_step(self) -> None:
        """The main screen offers what to do once its run has ended (a replay only looks back)."""
        ended = self.follow_new_runs and self.state.run_id and self.state.state not in ("waiting", "running")
        step = next_step(self.store, self.app.demo_dir, self.store.runs.get(self.state.run_id)) \
            if ended else None  # type: ignore[attr-defined]
        if step != self.next:
            self.next = step
            bar = self.query_one("#next-step", Static)
            bar.update(Text(step.text) if step else "")
            bar.display = step is not None
            self.refresh_bindings()

    def _show_details(self, node_id: str | None) -> None:
        node = self.state.nodes.get(node_id or "")
        self.query_one(NodeDetails).show(node, best=node_id == self.state.best_id,
                                         deployed=node_id == self.state.deployed_id)

    def _show_curriculum(self) -> None:
        cur = self.state.curriculum
        summary = self.query_one("#curriculum-summary", Static)
        table = self.query_one(CurriculumTable)
        if cur is None:
            summary.update("Curriculum · none proposed yet")
            table.set_rows([])
            self._curriculum_version = None
            return
        node = self.state.nodes.get(str(cur.get("node_id")))
        lines = [f"Curriculum of {node.name if node else cur.get('node_id')} (the latest proposed) · dataset "
                 f"{cur.get('dataset_version_id')} · {composition_text(cur.get('composition') or {})}"]
        if cur.get("edited_by"):
            lines.append(f"edited by {cur['edited_by']}: {diff_text(cur.get('diff') or {})}")
        lines += qc_lines(cur.get("qc"))
        summary.update(Text("\n".join(lines)))
        version = cur.get("dataset_version_id")
        if version == self._curriculum_version:
            return
        self._curriculum_version = version
        rows: list[CurriculumRow] = []
        if version:
            try:
                rows = curriculum_rows(self.store.datasets.rows(str(version)))
            except (KeyError, OSError) as exc:
                summary.update(Text("\n".join([*lines, f"rows unavailable: {exc}"])))
        table.set_rows(rows)

    # -- events from widgets -------------------------------------------------------------------
    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "log" and self._log_stale:
            self._mark({"log"})

    def on_search_graph_node_highlighted(self, message: SearchGraph.NodeHighlighted) -> None:
        self._show_details(message.node_id)

    def on_search_graph_node_selected(self, message: SearchGraph.NodeSelected) -> None:
        self._show_details(message.node_id)

    # -- actions -------------------------------------------------------------------------------
    def action_fork(self) -> None:
        """Fork from the highlighted node: a new production run whose root pipeline is that node's, on
        this run's diagnosis (engine.production.fork)."""
        node_id = self.query_one(SearchGraph).highlighted_id
        try:
            request = fork_request(self.store, self.state.run_id, node_id)
        except ValueError as exc:  # ConfigError included
            self.app.notify(str(exc), title="Cannot fork", severity="error", timeout=12)
            return
        self.app.notify(f"forking run {self.state.run_id} from node {node_id}", title="Run")
        self.app.start_request(request)  # type: ignore[attr-defined]

    def action_tab(self, tab: str) -> None:
        """Switch tabs by focusing the pane's main widget (TabbedContent follows focus, so the
        focus must never be left behind in a hidden pane)."""
        self.query_one(TabbedContent).active = tab
        self.query_one(TAB_FOCUS[tab]).focus()


class ReplayScreen(RunScreen):
    """A past run, driven event by event through the same bridge and fold as a live run."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *navigation(),  # still there; the footer has no room for them at 80 columns
        Binding("space", "play", "Play"),
        Binding("full_stop", "step(1)", "Step"),
        Binding("comma", "step(-1)", "Back"),
        Binding("right_square_bracket", "iteration(1)", "Iter"),
        Binding("left_square_bracket", "iteration(-1)", "Prev iter", show=False),
        Binding("less_than_sign", "jump(0)", "Start", show=False),
        Binding("greater_than_sign", "jump(-1)", "End", show=False),
        Binding("plus", "speed(1)", "Faster", show=False),
        Binding("minus", "speed(-1)", "Slower", show=False),
        Binding("escape", "close", "Close", show=False),  # the replay bar says it (no room in the footer)
    ]

    def __init__(self, store: Store, run_id: str) -> None:
        super().__init__(store, run_id)
        self._events: list[Event] = []
        self._position = 0  # events applied so far
        self._playing = False
        self._speed_index = 2
        self._play_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield Static("", id="replay-bar")
            yield widget

    def on_mount(self, event: events.Mount) -> None:
        event.prevent_default()  # not RunScreen.on_mount: a replay starts before the first event
        self._events = self.store.runs.events(self.run_id)
        self.state = RunState(run_id=self.run_id)
        self._mark({"status"})
        self.query_one(SearchGraph).focus()

    @property
    def position(self) -> int:
        return self._position

    @property
    def total(self) -> int:
        return len(self._events)

    def _state_label(self) -> str:
        return f"replay {self._position}/{len(self._events)}" + (" ▶" if self._playing else " ⏸")

    def flush(self) -> None:
        super().flush()
        total = len(self._events)
        if self._position:
            last = self._events[self._position - 1]
            where = f"{last.ts[11:19]} {last.type}"
        else:
            where = "before the first event"
        speed = REPLAY_SPEEDS[self._speed_index]
        icon = "▶ playing" if self._playing else "⏸ paused"
        self.query_one("#replay-bar", Static).update(
            f"{icon} · {self._position}/{total} events · {where} · {speed:g} ev/s · esc closes")

    def action_close(self) -> None:
        self.dismiss()

    def action_play(self) -> None:
        self._playing = not self._playing and self._position < len(self._events)
        self._restart_timer()
        self._mark({"status"})

    def _restart_timer(self) -> None:
        if self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None
        if self._playing:
            self._play_timer = self.set_interval(1.0 / REPLAY_SPEEDS[self._speed_index], self._tick)

    def _tick(self) -> None:
        if self._position >= len(self._events):
            self._playing = False
            self._restart_timer()
            self._mark({"status"})
            return
        self.action_step(1)

    def action_step(self, delta: int) -> None:
        if delta > 0 and self._position < len(self._events):
            self.bridge.publish(self._events[self._position])
            self._position += 1
            self._mark({"status"})
        elif delta < 0:
            self.action_jump(max(self._position - 1, 0))

    def action_jump(self, position: int) -> None:
        """Jump to just after `position` events (-1: the end). Backwards rebuilds from the start."""
        total = len(self._events)
        target = total if position < 0 else max(0, min(position, total))
        if target < self._position:
            self.bridge.reset()  # events of the old position still queued must not land
            self._position = 0
            self._rebuild([], self.run_id)
        while self._position < target:
            self.bridge.publish(self._events[self._position])
            self._position += 1
        self._mark({"status"})

    def action_iteration(self, direction: int) -> None:
        """Jump to the next (or previous) node_added event."""
        starts = [i for i, e in enumerate(self._events) if e.type == "node_added"]
        if direction > 0:
            later = [i for i in starts if i >= self._position]
            self.action_jump(later[0] + 1 if later else -1)
        else:
            earlier = [i for i in starts if i + 1 < self._position]
            self.action_jump(earlier[-1] + 1 if earlier else 0)

    def action_speed(self, delta: int) -> None:
        self._speed_index = max(0, min(len(REPLAY_SPEEDS) - 1, self._speed_index + delta))
        self._restart_timer()
        self._mark({"status"})
