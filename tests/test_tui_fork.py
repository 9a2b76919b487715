"""`F` on a replayed run: the real fork (engine.production.fork on the app's engine worker) starts a production run
from the highlighted node's pipeline on the source run's diagnosis, shown live on the main screen
with its first curriculum up for review; forks the engine refuses say why and start nothing."""

from __future__ import annotations

import time

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from fixtures.fork_source import build_source
from textual.widgets import Input
from tui_helpers import notes, settle

from engine.production import load_diagnosis
from pioneer_tui.app import create_app
from pioneer_tui.screens.review import CurriculumReviewScreen, VetoScreen
from pioneer_tui.screens.run_screen import ReplayScreen
from store import Store
from widgets.search_graph import SearchGraph

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def forks(store: Store, source: str) -> list[dict]:
    return [r for r in store.runs.list() if r["id"] != source]


async def test_fork_from_a_replayed_node_starts_the_forked_run(tmp_path):
    store = Store(tmp_path / "ws")
    source = build_source(store, tmp_path)
    pipeline = next(n["pipeline"] for n in store.runs.nodes(source.run_id) if n["id"] == source.node_id)
    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ReplayScreen(store, source.run_id))
        await pilot.press("greater_than_sign")  # the whole run
        await pilot.pause()
        assert app.screen.query_one(SearchGraph).jump_to(source.node_id)
        await pilot.press("F")
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen), timeout=90)
        assert any(f"forking run {source.run_id} from node {source.node_id}" in n for n in notes(app))

        [fork] = forks(store, source.run_id)
        config = fork["config"]
        assert (config["root"], config["diagnosis_from"], config["forked_from"]) == \
            (pipeline, source.run_id, source.node_id)
        assert config["production"] == store.runs.get(source.run_id)["config"]["production"]
        assert load_diagnosis(store, fork["id"]) == load_diagnosis(store, source.run_id)
        [root] = [n for n in store.runs.nodes(fork["id"]) if n["parent_id"] is None]
        assert root["pipeline"] == pipeline

        main = app.main_screen  # the fork shows live under the review: its root, clusters and Fork note
        assert main.state.run_id == fork["id"] and main.state.nodes[root["id"]].pipeline == pipeline
        assert [c.id for c in main.state.clusters] == [c.id for c in load_diagnosis(store, fork["id"]).taxonomy.clusters]
        assert f"Forked from node `{source.node_id}`" in main.curation_markdown()

        asked = app.screen.review.node_id
        await pilot.press("v")
        await settle(pilot, lambda: isinstance(app.screen, VetoScreen))
        app.screen.query_one(Input).value = "not this one"
        await pilot.press("ctrl+s")  # words alone: recorded, though the rule planner has nothing to revise
        await settle(pilot, lambda: any(d["node_id"] == asked for d in store.runs.decisions(fork["id"])))
        [decision] = [d for d in store.runs.decisions(fork["id"]) if d["node_id"] == asked]
        assert (decision["action"], decision["reason"]) == ("veto", "not this one")
        assert decision["who"].startswith("tui:")
    deadline = time.monotonic() + 30  # closing the app vetoes the open review and stops the fork
    while store.runs.get(fork["id"])["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.runs.get(fork["id"])["status"] in ("interrupted", "finished")
    store.close()


async def test_a_fork_the_engine_refuses_says_why_and_starts_nothing(tmp_path):
    store = Store(tmp_path / "ws")
    fx = build_fixture_run(store)  # written event by event: no stored production configuration, no diagnosis
    app = create_app(store, offer_demo=False)
    started: list = []
    app.start_run = started.append
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ReplayScreen(store, RUN_ID))
        await pilot.press("greater_than_sign")
        await pilot.pause()
        app.screen.query_one(SearchGraph).jump_to(fx.node_ids[2])
        await pilot.press("F")
        await pilot.pause()
        assert isinstance(app.screen, ReplayScreen) and not started
        assert any(f"Fork: run {RUN_ID} has no stored production configuration" in n for n in notes(app))
    store.close()
