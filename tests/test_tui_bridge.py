"""The bridge and the fold: what a run's events become on screen, progress merging under a flood,
and the core promise that a live run and its replay end up showing exactly the same thing."""

from __future__ import annotations

import threading

import pytest
from fake_runner import Result, fake_run
from fixtures.fixture_run import RUN_ID, build_fixture_run
from textual.app import App

from engine.curation_log import render_curation_log
from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.search.loop import LoopConfig, run_loop
from engine.search.reviewer import Decision, ScriptedReviewer
from pioneer_tui.app import create_app
from pioneer_tui.bridge import EventBridge, RunEvent, RunState
from pioneer_tui.screens.run_screen import ReplayScreen
from store import Event, Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fixture_store(tmp_path):
    store = Store(tmp_path / "ws")
    build_fixture_run(store)
    yield store
    store.close()


def fold(events: list[Event]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state


def test_fold_of_the_fixture_run(fixture_store):
    state = fold(fixture_store.runs.events(RUN_ID))
    n = {node.name: node for node in state.graph_nodes()}
    assert {k: v.status for k, v in n.items()} == {
        "n0000": "evaluated", "n0001": "evaluated", "n0002": "evaluated", "n0003": "vetoed",
        "n0004": "rolled_back", "n0005": "deployed"}
    assert state.best_id == state.deployed_id == f"{RUN_ID}.n0005"
    assert (state.state, state.iteration, state.mode) == ("finished", 4, "production")
    assert n["n0004"].modification == "epochs 3 → 5; learning_rate 0.0005 → 0.0002"
    assert [g["gate"] for g in n["n0004"].gates] == ["failure_set", "regression_set"]
    assert [c.name for c in state.clusters][0] == "change_language ↔ translate"
    assert state.clusters[0].examples[0].correction == "change_language"
    assert state.curriculum["dataset_version_id"] == "ds-v5"
    assert len(state.decisions) == 7 and state.progress is None
    status = state.status()
    assert (status.best_score, status.regressions, status.spent["seconds"]) == (0.968, 1, 1104.0)
    assert [p.score for p in state.score_points()] == [0.0, 0.742, 0.884, 0.931, 0.968]
    assert state.threshold == 0.96
    assert RunState(config={"loop": {"gates": {"tau": 0.9, "epsilon": 2}}, "production": {}}).threshold == 0.9


def test_fold_mid_run_shows_training_progress_and_best_so_far(fixture_store):
    events = fixture_store.runs.events(RUN_ID)
    cut = next(i for i, e in enumerate(events) if e.type == "train_progress" and e.payload["node_id"].endswith("n0002"))
    state = fold(events[: cut + 1])
    assert state.nodes[f"{RUN_ID}.n0002"].status == "training"
    assert state.progress is not None and state.progress.label == "train n0002"
    assert state.progress.step == 22 and state.progress.total == 66
    assert state.best_id == f"{RUN_ID}.n0001"


def test_fold_ignores_replayed_and_foreign_events(fixture_store):
    events = fixture_store.runs.events(RUN_ID)
    state = fold(events)
    assert state.apply(events[3]) == set()
    assert state.apply(Event("other-run", 999, "t", "run_started", {"mode": "x"})) == set()
    assert len(state.events) == len(events)


class Sink(App):
    """A target that handles RunEvents the way RunScreen does."""

    def __init__(self) -> None:
        super().__init__()
        self.bridge = EventBridge(self)
        self.seen: list[Event] = []

    def on_run_event(self, message: RunEvent) -> None:
        event = self.bridge.received(message)
        if event is not None:
            self.seen.append(event)


def progress(seq: int, step: int) -> Event:
    return Event("r", seq, "t", "train_progress", {"node_id": "n", "step": step, "total_steps": 10_000})


async def test_a_burst_of_progress_becomes_one_message_with_the_latest_step():
    app = Sink()
    async with app.run_test() as pilot:
        for i in range(1, 10_001):  # the UI cannot run in between: everything merges
            app.bridge.publish(progress(i, i))
        app.bridge.publish(Event("r", 10_001, "t", "node_evaluated", {"node_id": "n"}))
        await pilot.pause()
        assert app.bridge.posted == 2 and app.bridge.merged == 9_999
        assert [(e.seq, e.type) for e in app.seen] == [(10_000, "train_progress"), (10_001, "node_evaluated")]


async def test_reset_voids_messages_still_queued():
    app = Sink()
    async with app.run_test() as pilot:
        app.bridge.publish(Event("r", 7, "t", "node_added", {}))
        app.bridge.reset()  # e.g. a replay stepping back before the UI handled seq 7
        app.bridge.publish(Event("r", 1, "t", "run_started", {}))
        await pilot.pause()
        assert [e.seq for e in app.seen] == [1]


async def test_a_fast_trainer_thread_cannot_flood_the_queue_and_order_is_kept():
    app = Sink()
    async with app.run_test() as pilot:
        def trainer() -> None:
            seq = 0
            for node in range(3):
                for step in range(1, 3001):
                    seq += 1
                    app.bridge.publish(Event("r", seq, "t", "train_progress", {"node_id": f"n{node}", "step": step}))
                seq += 1
                app.bridge.publish(Event("r", seq, "t", "node_evaluated", {"node_id": f"n{node}"}))

        thread = threading.Thread(target=trainer)
        thread.start()
        while thread.is_alive():
            await pilot.pause(0.01)
        thread.join()
        await pilot.pause()
        seqs = [e.seq for e in app.seen]
        assert seqs == sorted(seqs)
        assert app.bridge.posted + app.bridge.merged == 9_003
        assert app.bridge.posted < 9_003 / 2  # merged far more than it delivered
        evaluated = [i for i, e in enumerate(app.seen) if e.type == "node_evaluated"]
        assert len(evaluated) == 3
        for i in evaluated:  # the step shown last before each evaluation is the final one
            assert app.seen[i - 1].payload["step"] == 3000


async def test_live_run_and_its_replay_show_the_same_thing(tmp_path):
    ws = tmp_path / "ws"
    ui_store = Store(ws)
    app = create_app(ui_store, offer_demo=False)
    async with app.run_test(size=(100, 30)) as pilot:
        main = app.main_screen
        done = threading.Event()

        def engine() -> None:  # the engine thread: its own Store, events published live
            store = Store(ws)
            try:
                build_fixture_run(store, subscribers=[main.bridge.publish], fixed_timestamps=False)
            finally:
                store.close()
                done.set()

        threading.Thread(target=engine).start()
        while not done.is_set():
            await pilot.pause(0.02)
        n_events = len(ui_store.runs.events(RUN_ID))
        while main.state.last_seq < n_events:
            await pilot.pause(0.02)
        live = main.state
        await pilot.press("r", "enter")
        replay = app.screen
        assert isinstance(replay, ReplayScreen) and replay.total == n_events
        await pilot.press("greater_than_sign")
        await pilot.pause()
        assert replay.position == n_events
        for state in (live, replay.state):
            assert render_curation_log(state.events) == render_curation_log(ui_store.runs.events(RUN_ID))
        assert live.graph_nodes() == replay.state.graph_nodes()
        assert (live.best_id, live.deployed_id, live.clusters) == (
            replay.state.best_id, replay.state.deployed_id, replay.state.clusters)
        assert live.status() == replay.state.status()
        assert main.curation_markdown() == replay.curation_markdown()


def test_refused_close_call_and_paused_clock_show_as_they_are(tmp_path):
    """The fold reads the engine's decisions instead of re-deriving them: a candidate a person refused
    is `refused`, one that failed only the regression budget a `close_call`, and the run's clock stops
    while a person decides."""
    class InOrder:
        """The first candidate breaks 1 held-out pass (passes its gates), the next 5 (over the budget)."""

        def __init__(self) -> None:
            self.seen: dict[str, Result] = {}

        def __call__(self, pipeline):
            if pipeline.hash not in self.seen:
                self.seen[pipeline.hash] = Result(broken=1 if not self.seen else 5)
            return self.seen[pipeline.hash]

    class RefuseAll(ScriptedReviewer):
        def review_curriculum(self, review):
            return Decision("approve")

    with Store(tmp_path / "ws") as store:
        bus, parts, _ = fake_run(store, InOrder(), LoopConfig(gates=GateConfig(max_regression_rate=0.02)))
        run_loop(bus, parts, RefuseAll([False, False], who="tester"), BudgetLimits(iterations=2))
        events = store.runs.events(bus.run_id)
    state = fold(events)
    statuses = {n.id.rsplit(".", 1)[-1]: n.status for n in state.nodes.values()}
    assert statuses["n0001"] == "refused" and statuses["n0002"] == "close_call"
    paused = [e for e in events if e.type == "budget" and e.payload.get("paused")]
    assert paused  # every human gate paused the clock, and the next budget event resumed it
    assert state.clock_paused is False
    assert fold(events[: events.index(paused[0]) + 1]).clock_paused is True


def test_the_score_chart_draws_tau_only_where_a_score_threshold_gates():
    state = RunState()
    state.config = {"production": {"tau": 0.96, "gate": "traffic"}, "loop": {"gates": {"tau": 0.96, "rule": "traffic"}}}
    assert state.threshold is None
    state.config = {"production": {"tau": 0.96, "gate": "strict"}, "loop": {"gates": {"tau": 0.96, "rule": "strict"}}}
    assert state.threshold == 0.96
