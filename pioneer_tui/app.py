"""The Textual workbench: one app factory (`create_app`) used by the CLI (`run_app`) and the tests.

Engine work (a run, a query) runs in `@work(thread=True, exclusive=True)` workers that only post
messages; one `Worker.StateChanged` handler reports their errors. A run started here talks to the
UI through the EventBridge (events) and the TuiReviewer (human gates), nothing else.
"""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from engine.search.reviewer import Reviewer
from pioneer_tui.screens.bench import BenchScreen
from pioneer_tui.screens.help import HelpScreen
from pioneer_tui.screens.new_run import NewRunScreen, RunRequest
from pioneer_tui.screens.quit import QuitScreen
from pioneer_tui.screens.run_screen import RunScreen
from pioneer_tui.screens.runs import RunsScreen
from pioneer_tui.screens.traces import QueryFailed, QueryFinished, QueryOutcome, TraceExplorerScreen
from pioneer_tui.screens.welcome import WelcomeScreen
from pioneer_tui.tui_reviewer import ReviewDecided, TuiReviewer
from store import Event, Store, Workspace

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo_data"
THEMES = ("textual-dark", "textual-light")
QUERY_ROW_LIMIT = 100_000
QUERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EngineSession:
    """What a run started from the TUI gets: its own workspace handle (open a Store in the worker
    thread), the reviewer for the human gates, a subscriber for its EventBus, and a stop flag."""

    workspace: Workspace
    reviewer: Reviewer
    on_event: Callable[[Event], None]
    should_stop: Callable[[], bool]
    say: Callable[[str], None] = lambda _message: None
    demo_dir: Path = DEMO_DIR


StartRun = Callable[[EngineSession], None]


def _improve(store: Store, config: Any, session: EngineSession) -> None:
    from engine.production import improve

    session.say("production mode started: review each curriculum when asked")
    improve(store, config, reviewer=session.reviewer, subscribers=(session.on_event,),
            should_stop=session.should_stop)


def start_demo(session: EngineSession) -> None:
    """Production mode on demo_data/ with the embedded defaults (runs on the engine worker thread)."""
    from engine.demo import prepare_demo

    with Store(session.workspace) as store:
        _improve(store, prepare_demo(store, session.demo_dir, say=session.say), session)


@dataclass(frozen=True)
class NextWeekRun:
    """The demo's next week: the deployed model answers it, the answers are judged and ingested as its
    traces, and production mode runs on them."""

    week: Any  # engine.demo.NextWeek

    def __call__(self, session: EngineSession) -> None:
        from engine.demo import serve_next_week

        with Store(session.workspace) as store:
            _improve(store, serve_next_week(store, self.week, session.demo_dir, say=session.say), session)


@dataclass(frozen=True)
class ProductionRun:
    """A production run started from the TUI: optionally ingest a traces file, then `improve`."""

    config: Any  # engine.production.ProductionConfig
    traces: Path | None = None

    def __call__(self, session: EngineSession) -> None:
        from engine.ingest import ingest_traces

        with Store(session.workspace) as store:
            if self.traces is not None:
                session.say(ingest_traces(store, self.traces).summary())
            _improve(store, self.config, session)


@dataclass(frozen=True)
class ResumeRun:
    """Continue a stopped or failed run from its stored events (as `pioneer-tui resume RUN` does)."""

    run_id: str

    def __call__(self, session: EngineSession) -> None:
        from engine.search.loop import resume_run

        with Store(session.workspace) as store:
            resume_run(store, self.run_id, reviewer=session.reviewer, subscribers=(session.on_event,),
                       should_stop=session.should_stop)


@dataclass(frozen=True)
class ForkRun:
    """"Fork from this node": a production run from the node's pipeline on its run's diagnosis."""

    plan: Any  # engine.production.fork.ForkPlan

    def __call__(self, session: EngineSession) -> None:
        from engine.production.fork import fork_run

        with Store(session.workspace) as store:
            fork_run(store, self.plan, reviewer=session.reviewer, subscribers=(session.on_event,),
                     should_stop=session.should_stop)


@dataclass(frozen=True)
class ColdStartRun:
    """A cold-start run started from the TUI (task description + data)."""

    config: Any  # engine.coldstart.mode.ColdStartConfig

    def __call__(self, session: EngineSession) -> None:
        from engine.coldstart.mode import cold_start

        with Store(session.workspace) as store:
            cold_start(store, self.config, reviewer=session.reviewer, subscribers=(session.on_event,),
                       should_stop=session.should_stop)


def hook_for(request: RunRequest) -> StartRun:
    """The engine hook for a request from the new-run (or fork) screen."""
    if request.kind == "cold_start":
        return ColdStartRun(request.config)
    if request.kind == "fork":
        return ForkRun(request.config)
    return ProductionRun(request.config, request.traces)


class PioneerApp(App[int]):
    CSS_PATH = "styles.tcss"
    TITLE = "Pioneer TUI"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, store: Store, *, run_id: str | None = None, start_demo: StartRun | None = None,
                 demo_dir: Path = DEMO_DIR, theme: str = THEMES[0], offer_demo: bool = True,
                 run: StartRun | None = None) -> None:
        super().__init__()
        self.initial_hook = run
        self.store = store
        self.initial_run = run_id
        self.start_demo_hook = start_demo
        self.demo_dir = demo_dir
        self.initial_theme = theme
        self.offer_demo = offer_demo
        self.who = f"tui:{getpass.getuser()}"
        self.review_log: list[ReviewDecided] = []
        self.main_screen: RunScreen | None = None
        self._engine_running = threading.Event()

    def get_default_screen(self) -> RunScreen:
        runs = self.store.runs.list()
        run_id = self.initial_run or (runs[-1]["id"] if runs else None)
        self.main_screen = RunScreen(self.store, run_id, follow_new_runs=True)
        return self.main_screen

    def on_mount(self) -> None:
        self.theme = self.initial_theme
        if self.initial_hook is not None:
            self.call_after_refresh(self.start_run, self.initial_hook)
        elif self.offer_demo and not self.store.runs.list():
            self.push_screen(WelcomeScreen(self.store.workspace.root, self.demo_dir), self._welcome_choice)

    def _welcome_choice(self, choice: str | None) -> None:
        if choice == "demo":
            self.action_demo()
        elif choice == "traces":
            self.action_traces()

    @property
    def run_in_progress(self) -> bool:
        """An engine run is going in this process. Its thread, not its worker's state, says so: a
        cancelled worker's thread runs on until the loop sees the stop request."""
        return self._engine_running.is_set()

    # -- actions -------------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Quit at once when idle; while a run is going, ask first (quitting stops it)."""
        if not self.run_in_progress:
            self.exit()
        elif not isinstance(self.screen, QuitScreen):
            state = self.main_screen.state if self.main_screen is not None else None
            doing = (state.activity or "running") if state is not None else "running"
            self.push_screen(QuitScreen(doing, state.run_id if state is not None else None),
                             lambda quit_now: self.exit() if quit_now else None)

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def _show(self, kind: type[Screen], make: Callable[[], Screen]) -> None:
        """Bring a main screen forward: back to it when it is already open underneath, else open it."""
        if isinstance(self.screen, kind):
            return
        if any(isinstance(s, kind) for s in self.screen_stack):
            while not isinstance(self.screen, kind):
                self.pop_screen()
            return
        self.push_screen(make())

    def action_runs(self) -> None:
        self._show(RunsScreen, lambda: RunsScreen(self.store))

    def action_bench(self) -> None:
        self._show(BenchScreen, lambda: BenchScreen(self.store.workspace.root))

    def action_traces(self) -> None:
        self._show(TraceExplorerScreen, lambda: TraceExplorerScreen(self.store, who=self.who))

    def action_new_run(self, traces_for: str | None = None) -> None:
        if not isinstance(self.screen, NewRunScreen):
            self.push_screen(NewRunScreen(self.store, traces_for=traces_for, demo_dir=self.demo_dir),
                             self.start_request)

    def action_next_step(self) -> None:
        """`N`: the step after the run on the main screen (resume it, engine.demo's next week, or a run of
        the deployed model)."""
        step = self.main_screen.next if self.main_screen is not None else None
        if step is None:
            self.report_unavailable("No next step: nothing is deployed. Start a run with n.")
        elif step.resume is not None:
            self.start_run(ResumeRun(step.resume))
        elif step.week is not None:
            self.start_run(NextWeekRun(step.week))
        else:
            self.action_new_run(traces_for=step.model_id)

    def start_request(self, request: RunRequest | None) -> None:
        """A run asked for by the new-run or fork screen (None: cancelled)."""
        if request is None:
            return
        while self.screen is not self.main_screen and len(self.screen_stack) > 1:
            self.pop_screen()  # the live run shows on the main screen
        self.start_run(hook_for(request))

    def action_demo(self) -> None:
        if self.start_demo_hook is None:
            self.report_unavailable("No demo run is configured for this app.")
            return
        self.start_run(self.start_demo_hook)

    def report_unavailable(self, message: str) -> None:
        if self.main_screen is not None:
            self.main_screen.set_note(message)
        self.notify(message, title="Not available", severity="warning", timeout=12)

    # -- workers -------------------------------------------------------------------------------
    def start_run(self, hook: StartRun) -> Worker | None:
        """Run an engine loop on the worker thread; its events reach the main screen via the bridge.
        One run at a time: a second one is refused (starting it would cancel the first)."""
        assert self.main_screen is not None
        if self.run_in_progress:
            self.report_unavailable("A run is in progress: wait for it to finish (or quit) before starting another.")
            return None
        reviewer = TuiReviewer(self, self.store, who=self.who)
        self._engine_running.set()
        self.main_screen.run_starting()
        return self._engine_worker(hook, reviewer, self.main_screen.bridge.publish)

    @work(thread=True, exclusive=True, group="engine", name="engine run", exit_on_error=False)
    def _engine_worker(self, hook: StartRun, reviewer: TuiReviewer, on_event: Callable[[Event], None]) -> None:
        worker = get_current_worker()
        try:
            hook(EngineSession(self.store.workspace, reviewer, on_event, lambda: worker.is_cancelled,
                               say=lambda message: self.call_from_thread(self.say, message), demo_dir=self.demo_dir))
        finally:
            self._engine_running.clear()
            if self.is_running and self.main_screen is not None:
                self.call_from_thread(self.main_screen.run_ended)  # a failed or stopped run says so in its row

    def say(self, message: str) -> None:
        """A line from the engine before its run exists (preparing the demo, serving traffic): a
        notification, and the status bar's note until the run's first event."""
        self.notify(message, title="Run")
        if self.main_screen is not None:
            self.main_screen.set_note(message)

    @work(thread=True, exclusive=True, group="query", name="trace query", exit_on_error=False)
    def run_query(self, sql: str, reply_to: MessagePump) -> None:
        from engine.errors import QueryError
        from engine.query import query_traces

        try:
            result = query_traces(self.store.workspace.db_path, sql, postprocess=lambda rows: rows,
                                  limit=QUERY_ROW_LIMIT, timeout_s=QUERY_TIMEOUT_S)
        except QueryError as exc:
            reply_to.post_message(QueryFailed(sql, str(exc)))
            return
        rows = result.post
        reply_to.post_message(QueryFinished(QueryOutcome(
            sql=sql, columns=list(result.columns), rows=list(rows.rows), csv=rows.to_csv(), path=result.path,
            elapsed_ms=result.elapsed_ms, truncated=result.truncated)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures surface (an engine error that left no failed run behind, e.g.
        a bad traces file, also stays on the status bar)."""
        worker = event.worker
        if event.state == WorkerState.ERROR:
            error = worker.error
            message = f"{worker.name} failed: {type(error).__name__}: {error}"
            self.notify(message, title="Error", severity="error", timeout=15)
            if worker.group == "engine" and self.main_screen is not None and self.main_screen.state.state != "failed":
                self.main_screen.set_note(message)
        elif event.state == WorkerState.SUCCESS and worker.group == "engine":
            self.notify("The run finished.", title="Run")

    def on_review_decided(self, message: ReviewDecided) -> None:
        self.review_log.append(message)
        result = message.result
        done = {"approve": "approved", "veto": "vetoed", "edit": "edited"}
        what = done.get(result.action, result.action) if not isinstance(result, bool) else \
            ("approved" if result else "refused")
        self.notify(f"{message.kind} {what}" + (f" for {message.node_id}" if message.node_id else ""))


def create_app(store: Store, *, run_id: str | None = None, start_demo: StartRun | None = start_demo,
               demo_dir: Path = DEMO_DIR, theme: str = THEMES[0], offer_demo: bool = True,
               run: StartRun | None = None) -> PioneerApp:
    """The one app factory (CLI and tests). `run`: an engine hook started on mount (the live run)."""
    return PioneerApp(store, run_id=run_id, start_demo=start_demo, demo_dir=demo_dir, theme=theme,
                      offer_demo=offer_demo, run=run)


def run_app(ctx, run: StartRun | None = None) -> int:
    """`pioneer-tui` with no subcommand opens the workbench on ctx's workspace; `improve`, `resume`
    and `cold-start` pass `run` so it opens on their live run (the main screen follows its events,
    loading the run's stored history with the first one, so a resumed run shows whole)."""
    app = create_app(ctx.store, run=run, offer_demo=run is None)
    app.run()
    return int(app.return_code or 0)
