"""Issue 13, item 4 and the continuation: after a promotion the workbench offers the next step that makes
sense. On the demo that is next week's traffic for the promoted model (`N`); elsewhere the new-run form,
asking for the promoted model's traces; and `F` forks any node of the finished run, carrying its recipe
over to the model deployed now once that model has traffic of its own."""

from __future__ import annotations

import json

import pytest
from fixtures.fork_source import build_source
from fixtures.paced_run import DEPLOYED, deploy, paced_hook, start_paced_run
from textual.widgets import Input, Static
from tui_helpers import notes, screen_text, settle

from engine.demo import NEXT_WEEK
from engine.ingest import ingest_traces
from pioneer_tui.app import ForkRun, NextWeekRun, ResumeRun, create_app
from pioneer_tui.screens.confirm import GateConfirmScreen
from pioneer_tui.screens.new_run import NewRunScreen
from pioneer_tui.screens.review import CurriculumReviewScreen
from pioneer_tui.screens.run_screen import ReplayScreen
from store import Store
from widgets.search_graph import SearchGraph

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def demo_folder(tmp_path, model_id: str):
    """A demo project whose deployed model is `model_id`, with a next week of three requests."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "deployed.json").write_text(json.dumps({"model_id": model_id, "task": "classification"}))
    (folder / NEXT_WEEK).write_text("".join(json.dumps({"id": f"w{i}", "input": f"request {i}", "output": "a",
                                                        "metadata": {}}) + "\n" for i in range(3)))
    return folder


async def promote_a_paced_run(app, pilot, box) -> str:
    """Run the paced production run to its promotion (approving it); the promoted model's id."""
    await start_paced_run(app, pilot, box)
    box[0].curriculum.release()
    await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
    await pilot.press("a")
    for gate in box[0].steps:
        gate.release()
    box[0].evaluation.release()
    await settle(pilot, lambda: isinstance(app.screen, GateConfirmScreen))
    await pilot.press("y")
    await settle(pilot, lambda: app.main_screen.state.state == "finished" and not app.run_in_progress)
    await pilot.pause(0.2)
    return app.main_screen.state.promoted_model


async def test_after_a_promotion_on_the_demo_n_serves_next_weeks_traffic_to_the_promoted_model(tmp_path):
    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    app = create_app(store, start_demo=paced_hook(box, [(1, 1)]), demo_dir=demo_folder(tmp_path, DEPLOYED),
                     offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        promoted = await promote_a_paced_run(app, pilot, box)
        assert promoted and store.models.deployed()["id"] == promoted
        bar = app.main_screen.query_one("#next-step", Static)
        assert bar.display and str(bar.render()) == (
            f"N: run the loop again on next week's traffic — {promoted} answers 3 new demo requests, judged "
            "against their labels")
        assert "N Next step" in screen_text(app)
        started: list = []
        app.start_run = started.append
        await pilot.press("N")
        await pilot.pause()
        [hook] = started
        assert isinstance(hook, NextWeekRun) and hook.week.model_id == promoted and hook.week.size == 3
    store.close()


async def test_after_a_promotion_elsewhere_n_asks_for_the_promoted_models_traces(tmp_path):
    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    app = create_app(store, start_demo=paced_hook(box, [(1, 1)]), demo_dir=tmp_path / "no-demo", offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        promoted = await promote_a_paced_run(app, pilot, box)
        assert str(app.main_screen.query_one("#next-step", Static).render()) == (
            f"N: start {promoted}'s next run — it has no traces yet: give a file of its judged traffic")
        await pilot.press("N")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewRunScreen) and form.focused is form.query_one("#prod-traces", Input)
        assert f"{promoted} has no traces yet" in str(form.query_one("#new-run-hint", Static).render())
    store.close()


async def test_f_forks_a_node_of_a_run_whose_model_was_promoted_away(tmp_path):
    store = Store(tmp_path / "ws")
    source = build_source(store, tmp_path)
    promoted = store.models.register(base_model="minilm", artifact_path=None, task="classification",
                                     parent_id=source.model_id, model_id="run-x.n0001.m1", name="run-x.n0001.m1")
    store.models.set_status(source.model_id, "retired")
    store.models.set_status(promoted, "deployed")
    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ReplayScreen(store, source.run_id))
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert app.screen.query_one(SearchGraph).jump_to(source.node_id)
        await pilot.press("F")
        await pilot.pause()
        assert any(f"since replaced by {promoted}, which has no traces yet" in n for n in notes(app))
        assert len(store.runs.list()) == 1

        traffic = tmp_path / "week2.jsonl"
        traffic.write_text("".join(json.dumps({"id": f"w{i}", "ts": f"2026-11-09T10:0{i}:00Z", "model_id": promoted,
                                               "task": "classification", "input": text, "prediction": "music",
                                               "verdict": "pass" if gold == "music" else "fail",
                                               **({} if gold == "music" else {"correction": gold})}) + "\n"
                                   for i, (text, gold) in enumerate([("play a song", "music"), ("rain today", "weather"),
                                                                     ("cold forecast tomorrow", "weather")])))
        ingest_traces(store, traffic)
        started: list = []
        app.start_run = started.append
        await pilot.press("F")
        await pilot.pause()
        [hook] = started
        assert isinstance(hook, ForkRun) and hook.plan.config.model == promoted and hook.plan.diagnosis_from is None
        assert hook.plan.node_id == source.node_id and hook.plan.root.data.targeted == ()
    store.close()


async def test_a_run_stopped_by_quitting_is_offered_for_resuming(tmp_path):
    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    app = create_app(store, start_demo=paced_hook(box, [(1, 1)]), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_paced_run(app, pilot, box)
        run_id = app.main_screen.state.run_id
        app.workers.cancel_group(app, "engine")  # what quitting does to the run
        await settle(pilot, lambda: app.main_screen.state.state == "interrupted" and not app.run_in_progress)
        await pilot.pause(0.1)
        assert str(app.main_screen.query_one("#next-step", Static).render()) == (
            f"N: resume {run_id} where it stopped (decisions already made are kept; the step in progress starts "
            "again)")
        started: list = []
        app.start_run = started.append
        await pilot.press("N")
        assert started == [ResumeRun(run_id)]
    store.close()


def test_a_node_whose_training_was_cut_off_shows_as_stopped():
    from pioneer_tui.bridge import RunState
    from store import Event

    state = RunState()
    for seq, (kind, payload) in enumerate([("run_started", {"mode": "production"}),
                                           ("node_added", {"node_id": "r.n0001", "parent_id": None}),
                                           ("train_started", {"node_id": "r.n0001"})], start=1):
        state.apply(Event("r", seq, "2026-01-01T00:00:00+00:00", kind, payload))
    assert state.set_stored_status({"id": "r", "status": "interrupted", "stop_reason": "stopped on request"})
    assert state.nodes["r.n0001"].status == "stopped" and state.state == "interrupted" and state.progress is None
    state.apply(Event("r", 4, "2026-01-01T00:01:00+00:00", "budget", {"spent": {"seconds": 3.0}}))
    assert state.state == "running"  # resumed: its events flow again
