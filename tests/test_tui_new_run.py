"""Starting runs from the TUI: the CLI's live run on mount (`run_app(ctx, run=...)`), the new-run screen
(production or cold start); "fork from this node" is in test_tui_fork.py. Each asserts the engine
hook the app starts and the configuration it carries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from textual.widgets import Input, Select, Static, TabbedContent
from tui_helpers import notes, settle

from engine.coldstart.mode import ColdStartConfig
from engine.events import CurationNote
from engine.production import ProductionConfig
from pioneer_tui.app import ColdStartRun, EngineSession, ProductionRun, create_app
from pioneer_tui.commands import improve as improve_command
from pioneer_tui.screens.new_run import NewRunScreen
from pioneer_tui.screens.welcome import WelcomeScreen
from pioneer_tui.tui_reviewer import TuiReviewer
from store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




def deploy(store: Store, name: str = "m-deployed") -> str:
    return store.models.register(base_model="minilm", artifact_path=None, task="classification", status="deployed",
                                 name=name)


def capture_starts(app) -> list:
    started: list = []
    app.start_run = started.append  # the seam between the screens and the engine worker
    return started


async def test_the_cli_run_starts_on_mount_and_shows_live(tmp_path, monkeypatch):
    """`improve` / `resume` without --headless: run_app(ctx, run=hook) opens the TUI on the live run,
    and the hook hands the command's `start` the TUI reviewer, the bridge subscriber and its own Store."""
    store = Store(tmp_path / "ws")
    opened: dict = {}
    monkeypatch.setattr("pioneer_tui.app.run_app", lambda ctx, run=None: opened.update(ctx=ctx, run=run) or 7)
    calls: list = []

    def start(reviewer, subscribers, run_store, should_stop):
        calls.append((reviewer, run_store.workspace.root, should_stop()))
        build_fixture_run(run_store, subscribers=subscribers)  # a run whose events stream to the screen

    ctx = SimpleNamespace(store=store)
    assert improve_command.open_tui(ctx, start) == 7
    assert opened["ctx"] is ctx

    app = create_app(store, run=opened["run"], offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: app.main_screen.state.run_id == RUN_ID and "The run finished." in notes(app))
        assert not isinstance(app.screen, WelcomeScreen)
        [(reviewer, root, stopped)] = calls
        assert isinstance(reviewer, TuiReviewer) and root == store.workspace.root and stopped is False
        assert app.main_screen.state.last_seq == store.runs.events(RUN_ID)[-1].seq
    store.close()


async def test_an_empty_workspace_with_a_run_does_not_offer_the_demo(tmp_path):
    sessions: list[EngineSession] = []
    store = Store(tmp_path / "ws")
    app = create_app(store, run=sessions.append, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: sessions)
        assert not isinstance(app.screen, WelcomeScreen)
        assert sessions[0].workspace.root == store.workspace.root
    store.close()


async def test_new_production_run_from_the_runs_list(tmp_path):
    store = Store(tmp_path / "ws")
    store.models.register(base_model="minilm", artifact_path=None, task="classification", name="older")
    model_id = deploy(store)
    traces = tmp_path / "traces.jsonl"
    traces.write_text('{"input": "hi", "output": "greet", "verdict": "pass"}\n')
    app = create_app(store, offer_demo=False)
    started = capture_starts(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r", "n")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        assert screen.query_one("#prod-model", Select).value == model_id  # the deployed one, preselected
        screen.query_one("#prod-traces", Input).value = str(traces)
        screen.query_one("#prod-iterations", Input).value = "3"
        screen.query_one("#prod-minutes", Input).value = "12.5"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is app.main_screen  # the live run shows on the main screen
    [hook] = started
    assert hook == ProductionRun(ProductionConfig(model=model_id, max_iterations=3, max_minutes=12.5), traces)
    store.close()


async def test_new_production_run_offers_the_deployed_model_and_asks_for_its_traces(tmp_path):
    """Issue 13, item 4: after a promotion the form offers the promoted model alone (a retired one cannot be
    improved), named once, and says in its own words that a model without traces needs a traces file."""
    store = Store(tmp_path / "ws")
    old = deploy(store, "older")
    promoted = store.models.register(base_model="minilm", artifact_path=None, task="classification", parent_id=old,
                                     model_id="run-1.n0001.m1", name="run-1.n0001.m1")
    store.models.set_status(old, "retired")
    store.models.set_status(promoted, "deployed")
    app = create_app(store, offer_demo=False)
    started = capture_starts(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        select = screen.query_one("#prod-model", Select)
        assert [(str(label), value) for label, value in select._options if value is not Select.BLANK] == \
            [("run-1.n0001.m1 · deployed", promoted)]
        assert select.value == promoted
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(screen.query_one("#new-run-error", Static).render())
        assert error == ("Traces file: run-1.n0001.m1 has no traces yet; give a JSONL file of its judged traffic")
        screen.query_one("#prod-traces", Input).value = str(tmp_path / "missing.jsonl")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Traces file:" in str(screen.query_one("#new-run-error", Static).render())
        screen.query_one("#prod-iterations", Input).value = "many"
        traces = tmp_path / "traces.jsonl"
        traces.write_text('{"input": "hi", "output": "greet", "verdict": "pass"}\n')
        screen.query_one("#prod-traces", Input).value = str(traces)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "Max iterations: 'many' is not a number" in str(screen.query_one("#new-run-error", Static).render())
        assert isinstance(app.screen, NewRunScreen) and not started
        screen.query_one("#prod-iterations", Input).value = "2"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is app.main_screen
    [hook] = started
    assert hook == ProductionRun(ProductionConfig(model=promoted, max_iterations=2, max_minutes=30.0), traces)
    store.close()


async def test_new_cold_start_run(tmp_path):
    store = Store(tmp_path / "ws")
    app = create_app(store, offer_demo=False)
    started = capture_starts(app)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        screen = app.screen
        screen.query_one(TabbedContent).active = "cold_start"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert str(screen.query_one("#new-run-error", Static).render()).startswith("Task: describe")
        screen.query_one("#cold-description", Input).value = "detect spam in SMS messages"
        screen.query_one("#cold-data", Input).value = "data/sms.csv"
        screen.query_one("#cold-iterations", Input).value = "2"
        screen.query_one("#cold-minutes", Input).value = ""
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is app.main_screen
    assert started == [ColdStartRun(ColdStartConfig(description="detect spam in SMS messages", data="data/sms.csv",
                                                    max_iterations=2, max_minutes=None))]
    store.close()


async def test_a_started_production_run_reports_a_bad_traces_file(tmp_path):
    """The real hook on the worker: ingest fails before any run exists, surfaced as one error."""
    store = Store(tmp_path / "ws")
    deploy(store)
    traces = tmp_path / "traces.jsonl"
    traces.write_text("not json\n")
    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.start_run(ProductionRun(ProductionConfig(model="m-deployed"), traces))
        await settle(pilot, lambda: any("engine run failed" in n for n in notes(app)), timeout=30)
        assert any("traces.jsonl" in n for n in notes(app))
        assert store.runs.list() == []
    store.close()


async def test_a_resumed_run_shows_its_history_and_its_new_events(tmp_path):
    """`resume` in the TUI: the hook appends to an existing run; the main screen shows it whole."""
    from engine.events import EventBus

    store = Store(tmp_path / "ws")
    build_fixture_run(store)
    store.runs.create("production", {"model": "m-deployed"}, run_id="run-later")  # the newest run is another
    before = store.runs.events(RUN_ID)[-1].seq

    def resume(session: EngineSession) -> None:
        with Store(session.workspace) as run_store:
            bus = EventBus(run_store, RUN_ID)
            bus.subscribe(session.on_event)
            bus.emit(CurationNote(section="Resumed", markdown="resumed after an interruption"))

    app = create_app(store, run=resume, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, lambda: app.main_screen.state.last_seq > before)
        state = app.main_screen.state
        assert state.run_id == RUN_ID
        assert [e.seq for e in state.events] == [e.seq for e in store.runs.events(RUN_ID)]
        assert "resumed after an interruption" in app.main_screen.curation_markdown()
    store.close()
