"""Issue 13, item 6: every key the help screen (`?`) lists works where it says, and the README's key table is
the help's. Each section of pioneer_tui.keys is opened in the running app and each of its keys must be an
active, enabled binding there; a section without a way to open it here fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from test_catalog import NEWS, SPAM, Cards, WordsEmbedder
from textual.widgets import Input

from engine.catalog import Catalog
from engine.search.pipeline import Pipeline
from engine.search.reviewer import CurriculumReview
from pioneer_tui.app import create_app
from pioneer_tui.keys import SECTIONS, markdown_table
from pioneer_tui.screens.bench import BenchScreen
from pioneer_tui.screens.confirm import GateConfirmScreen, GateReview, PromoteAnywayScreen
from pioneer_tui.screens.data_choice import DataChoiceScreen
from pioneer_tui.screens.help import HELP
from pioneer_tui.screens.new_run import NewRunScreen
from pioneer_tui.screens.review import CurriculumReviewScreen, RowEditorScreen, VetoScreen
from pioneer_tui.screens.run_screen import ReplayScreen
from pioneer_tui.screens.runs import RunsScreen
from pioneer_tui.screens.trace_view import TraceScreen
from pioneer_tui.screens.traces import TraceExplorerScreen
from store import Store
from widgets.search_graph import SearchGraph

pytestmark = pytest.mark.anyio
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def review_screen(store: Store) -> CurriculumReviewScreen:
    node = next(n for n in store.runs.nodes(RUN_ID) if n["id"] == f"{RUN_ID}.n0002")
    return CurriculumReviewScreen(CurriculumReview(
        node_id=node["id"], pipeline=Pipeline.from_dict(node["pipeline"]), rows=tuple(store.datasets.rows("ds-v2")),
        dataset_version_id="ds-v2", composition={"gold": 8}, rationale=node["rationale"]))


def trace_screen(store: Store) -> TraceScreen:
    store.conn.execute("INSERT INTO trace_records (id, ts, model_id, input, prediction, auto_verdict, content_hash, "
                       "ingested_at) VALUES ('t1', '2026-01-01', 'm-deployed', 'hello', 'greet', 'pass', 'h', 'now')")
    return TraceScreen(store.traces.get("t1"))


async def open_section(where: str, app, pilot, store: Store) -> None:
    """Bring the app to the place a help section names (the main run screen is where it starts)."""
    screens = {
        "Main screens: run, runs list, benchmark results": None,  # checked on each of the three below
        "Runs list": lambda: RunsScreen(store),
        "Replay (runs list → enter)": lambda: ReplayScreen(store, RUN_ID),
        "Run screen (and replay)": None,
        "Trace explorer": lambda: TraceExplorerScreen(store),
        "Trace (enter on a row)": lambda: trace_screen(store),
        "New run": lambda: NewRunScreen(store),
        "Curriculum review (before every train step)": lambda: review_screen(store),
        "Rollback / promotion (esc decides nothing: the run waits)": lambda: GateConfirmScreen(
            GateReview("promotion", to_model="m2")),
        "Veto (v in the review)": VetoScreen,
        "Edit a row (e / n in the review)": lambda: RowEditorScreen(
            {"id": "g1", "input": "hello", "output": "greet", "slice": "gold"}, "Edit g1", labels=("greet", "bye")),
        "Close call: promote anyway (esc decides nothing)": lambda: PromoteAnywayScreen(
            GateReview("promotion", to_model="m2")),
        "Benchmark results": lambda: BenchScreen(store.workspace.root),
        "Data for a cold start without data (esc decides nothing)": lambda: DataChoiceScreen(
            Catalog([Cards(SPAM, NEWS)], WordsEmbedder(), 0.3).search("flag spam messages", task="classification")),
    }
    make = screens.get(where)
    if make is not None:
        await app.push_screen(make())
    elif where == "Search graph":
        app.screen.query_one(SearchGraph).focus()
    elif not where.startswith("Anywhere") and where not in ("Main run screen", *screens):
        raise AssertionError(f"the test does not know how to open the help section {where!r}")
    if where == "Trace explorer":
        app.screen.query_one(Input).focus()
    await pilot.pause()


def enabled_keys(app) -> set[str]:
    return {key for key, active in app.screen.active_bindings.items() if active.enabled}


async def test_every_key_in_help_works_where_help_says(tmp_path):
    """One app visits every section in turn (an app per section cost a second of start-up each)."""
    store = Store(tmp_path / "ws")
    build_fixture_run(store)
    # N and d are offered only when they make sense: a trace to explore and a deployed model to improve
    store.conn.execute("INSERT INTO trace_records (id, ts, model_id, input, prediction, auto_verdict, "
                       "content_hash, ingested_at) VALUES ('t0', '2026-01-01', 'm-deployed', 'x', 'y', 'pass', "
                       "'h0', 'now')")
    store.models.register(base_model="minilm", artifact_path=None, status="deployed", model_id="m-deployed")
    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for section in SECTIONS:
            while len(app.screen_stack) > 1:
                app.pop_screen()
            app.main_screen.set_focus(None)
            await pilot.pause()
            await open_section(section.where, app, pilot, store)
            places = [app.screen]
            if section.where.startswith("Anywhere"):
                places = [app.screen, RunsScreen(store), BenchScreen(store.workspace.root), ReplayScreen(store, RUN_ID)]
            if section.where.startswith("Main screens"):
                places = [app.screen, RunsScreen(store), BenchScreen(store.workspace.root)]
            if section.where.startswith("Run screen"):
                places = [app.screen, ReplayScreen(store, RUN_ID)]
            for place in places:
                if place is not app.screen:
                    await app.push_screen(place)
                    if isinstance(place, ReplayScreen):
                        place.action_jump(-1)  # a replay shows the nodes it has reached
                    await pilot.pause()
                keys = [name for key in section.keys for name in key.key_names]
                if section.where == "Main run screen":
                    keys.remove("d")  # the workspace has runs; the empty one is below
                missing = [name for name in keys if name not in enabled_keys(app)]
                assert not missing, f"{section.where}: {missing} do nothing on {type(place).__name__}"
    store.close()


async def test_d_runs_the_demo_from_an_empty_main_screen_after_the_welcome_is_dismissed(tmp_path):
    started: list = []
    app = create_app(Store(tmp_path / "ws"), start_demo=started.append)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("escape")  # dismiss the welcome
        await pilot.pause()
        assert app.screen is app.main_screen and "d" in enabled_keys(app)
        await pilot.press("d")
        await pilot.pause()
        assert len(started) == 1


def test_the_readme_key_table_is_the_help_screens():
    table = markdown_table()
    assert table in README.read_text(encoding="utf-8")
    for section in SECTIONS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {section.where} |"))
        assert f"**{section.where}**" in HELP
        for key in section.keys:
            assert f"`{key.shown}` {key.does}" in HELP and f"`{key.shown}` {key.does}" in row


async def test_quit_during_a_run_asks_first_and_n_keeps_it_running(tmp_path):
    from fixtures.paced_run import deploy, paced_hook, start_paced_run

    from pioneer_tui.screens.quit import QuitScreen

    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    app = create_app(store, start_demo=paced_hook(box, [(1, 2)]), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_paced_run(app, pilot, box)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitScreen) and app.is_running
        said = " ".join(str(w.render()) for w in app.screen.query("Static"))
        assert "The run is building the next curriculum. Quitting stops it within seconds" in said
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is app.main_screen and app.run_in_progress
        await pilot.press("q", "y")
        await pilot.pause()
        assert not app.is_running
    store.close()
