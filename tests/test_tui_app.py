"""The app around the panes: empty-workspace demo offer, worker errors, runs list and replay
controls, the trace explorer with CSV export, help and themes."""

from __future__ import annotations

import csv

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from textual.widgets import DataTable, Input, Static
from tui_helpers import notes, settle

from engine.curation_log import render_curation_log
from engine.events import EventBus, NodeAdded, RunFinished, RunStarted, TrainProgress, TrainStarted
from pioneer_tui.app import EngineSession, create_app
from pioneer_tui.screens.help import HelpScreen
from pioneer_tui.screens.run_screen import ReplayScreen
from pioneer_tui.screens.runs import RunsScreen
from pioneer_tui.screens.traces import ExportScreen, TraceExplorerScreen
from pioneer_tui.screens.welcome import WelcomeScreen
from store import Store
from widgets.status_bar import StatusBar

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fixture_app(tmp_path):
    """The workbench on a workspace holding the fixture run."""
    store = Store(tmp_path / "ws")
    build_fixture_run(store)
    yield create_app(store)
    store.close()


async def test_empty_workspace_offers_the_demo_and_reports_a_broken_one(tmp_path):
    demo = tmp_path / "demo_data"
    demo.mkdir()
    (demo / "traces.jsonl").write_text('{"input": "hi"}\n')
    app = create_app(Store(tmp_path / "ws"), demo_dir=demo)  # the default start_demo hook
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen)
        assert "1 files" in str(app.screen.query_one("#demo-summary", Static).render())
        await pilot.press("d")
        # The real demo hook runs on the worker and its error surfaces as one notification.
        await settle(pilot, lambda: any("deployed.json is missing" in n for n in notes(app)), timeout=60)
        assert not isinstance(app.screen, WelcomeScreen)


async def test_missing_demo_data_is_said_not_started(tmp_path):
    started: list[EngineSession] = []
    app = create_app(Store(tmp_path / "ws"), demo_dir=tmp_path / "nope", start_demo=started.append)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, WelcomeScreen) and not started
        assert any("holds no files" in n for n in notes(app))
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, WelcomeScreen)


async def test_engine_errors_surface_in_one_handler(tmp_path):
    def boom(session: EngineSession) -> None:
        raise ValueError("traces.jsonl line 3: field 'verdict' must be pass or fail")

    app = create_app(Store(tmp_path / "ws"), start_demo=boom, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: notes(app))
        assert notes(app) == ["engine run failed: ValueError: traces.jsonl line 3: field 'verdict' must be pass or fail"]
        assert app.is_running


async def test_runs_list_opens_a_replay_that_plays_steps_and_jumps(tmp_path):
    store = Store(tmp_path / "ws")
    fx = build_fixture_run(store)
    app = create_app(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.main_screen.state.last_seq == fx.n_events  # the latest run, whole history
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert [str(c) for c in app.screen.query_one(DataTable).get_row_at(0)[:4]] == \
            ["run-fixture", "production", "finished", "0.968"]
        await pilot.press("enter")
        await pilot.pause()
        replay = app.screen
        assert isinstance(replay, ReplayScreen) and replay.position == 0 and not replay.state.nodes
        await pilot.press("full_stop", "full_stop", "full_stop")
        await pilot.pause()
        assert replay.position == 3 and replay.state.last_seq == 3
        await pilot.press("right_square_bracket")  # next iteration: the first node_added
        await pilot.pause()
        assert replay.state.events[-1].type == "node_added" and len(replay.state.nodes) == 1
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        assert len(replay.state.nodes) == 3
        at = replay.position
        await pilot.press("comma")
        await pilot.pause()
        assert replay.position == at - 1 == replay.state.last_seq
        await pilot.press("less_than_sign")
        await pilot.pause()
        assert replay.position == 0 and not replay.state.nodes
        await pilot.press("plus", "plus", "plus", "space")  # 32 events/s
        await settle(pilot, lambda: replay.position >= 5)
        await pilot.press("space")
        stopped = replay.position
        await pilot.pause(0.3)
        assert replay.position == stopped  # paused
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert replay.position == fx.n_events and replay.state.state == "finished"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


async def test_trace_explorer_runs_sql_and_exports_csv(tmp_path, fixture_app):
    app = fixture_app
    store = app.store
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TraceExplorerScreen)
        screen.query_one("#sql", Input).value = "SELECT seq, type FROM events WHERE type = 'node_added' ORDER BY seq"
        await pilot.press("enter")
        await settle(pilot, lambda: screen.outcome is not None)
        await pilot.pause()
        table = screen.query_one(DataTable)
        assert table.row_count == 6 and [c.label.plain for c in table.columns.values()] == ["seq", "type"]
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        target = tmp_path / "out" / "nodes.csv"
        app.screen.query_one(Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        rows = list(csv.reader(target.open(encoding="utf-8")))
        assert rows[0] == ["seq", "type"] and len(rows) == 7 and rows[1][1] == "node_added"

        screen.query_one("#sql", Input).value = "DELETE FROM events"
        await pilot.press("enter")
        await settle(pilot, lambda: "refused" in str(screen.query_one("#query-status", Static).render()))
        assert store.runs.events(RUN_ID)  # nothing was deleted


async def test_help_screen_and_theme_toggle(fixture_app):
    app = fixture_app
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"


async def test_log_tab_renders_the_runs_curation_log_at_its_end(fixture_app):
    app = fixture_app
    store = app.store
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        await pilot.pause(0.3)
        log = app.screen.query_one("#curation-log")
        assert log.text == render_curation_log(store.runs.events(RUN_ID))
        assert log.max_scroll_y > 0 and log.scroll_y == log.max_scroll_y  # following the end


async def test_a_run_written_by_another_process_is_followed(tmp_path):
    ws = tmp_path / "ws"
    store = Store(ws)
    store.runs.create("production", {}, run_id="run-live")
    writer = EventBus(Store(ws), "run-live")  # another connection, as another process would have
    writer.emit(RunStarted(mode="production", config={"tau": 0.96}))
    app = create_app(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        main = app.main_screen
        assert main.state.run_id == "run-live" and main.state.state == "running"
        writer.emit(NodeAdded(node_id="run-live.n0000", parent_id=None, operator="root", iteration=0,
                    pipeline={}, rationale=""))
        writer.emit(TrainStarted(node_id="run-live.n0000", total_steps=40))
        writer.emit(TrainProgress(node_id="run-live.n0000", step=4, total_steps=40))
        await settle(pilot, lambda: main.state.progress is not None and main.state.progress.step == 4)
        await pilot.pause(0.1)
        assert main.query_one(StatusBar).status.progress.total == 40
        writer.emit(RunFinished(status="finished", reason="budget spent", best_node=None, best_score=None))
        await settle(pilot, lambda: main.state.state == "finished")
        assert main.query_one(StatusBar).status.note == "budget spent"


async def test_replay_stepping_back_faster_than_the_ui_keeps_the_fold_exact(fixture_app):
    app = fixture_app
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("r", "enter")
        await pilot.pause()
        replay = app.screen
        for _ in range(5):  # forward then back without letting the screen handle anything between
            replay.action_step(1)
            replay.action_step(1)
            replay.action_step(-1)
        await pilot.pause()
        assert replay.position == 5
        assert [e.seq for e in replay.state.events] == [1, 2, 3, 4, 5]
