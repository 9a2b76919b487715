"""Human-gate flows through the real app: an engine loop on the app's worker thread calls the
engine's own `apply_review` / `confirm` with the TuiReviewer; a person answers with keys. Each test
asserts the Decision returned to the engine, the ReviewDecided message the app received, the
decision row and dataset version recorded in the store, and the decision event reaching the screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.fixture_run import curriculum_rows, qc_report
from person_loop import rendered
from textual.widgets import Input, SelectionList, TextArea
from tui_helpers import settle

from engine.events import CurriculumProposed, EventBus, NodeAdded, RunStarted
from engine.models.base import TrainConfig
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.reviewer import Confirmation, CurriculumReview, Decision, apply_review, confirm
from pioneer_tui.app import EngineSession, create_app
from pioneer_tui.screens.confirm import GateConfirmScreen, render_review
from pioneer_tui.screens.review import CurriculumReviewScreen, RowEditorScreen, TextPromptScreen, VetoScreen
from store import Store

RUN_ID = "run-flow"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pipeline() -> Pipeline:
    return Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.3,
                                replay_fraction=0.2), TrainConfig(task="classification"))


def _engine(results: dict[str, Any], ask: Callable[[EventBus, EngineSession, str], Any]):
    """A StartRun hook: opens its own Store (engine thread), starts a run with one node, asks."""
    def hook(session: EngineSession) -> None:
        store = Store(session.workspace)
        try:
            store.runs.create("production", {"tau": 0.96}, run_id=RUN_ID)
            bus = EventBus(store, RUN_ID)
            bus.subscribe(session.on_event)
            bus.emit(RunStarted(mode="production", config={"tau": 0.96}))
            pipeline = _pipeline()
            node_id = f"{RUN_ID}.n0001"
            store.runs.add_node(RUN_ID, pipeline.to_dict(), pipeline.hash, node_id=node_id)
            bus.emit(NodeAdded(node_id=node_id, parent_id=None, operator="root", iteration=1,
                     pipeline=pipeline.to_dict(), rationale="fixture"))
            results["answer"] = ask(bus, session, node_id)
            results["store_thread_decisions"] = store.runs.decisions(RUN_ID)
        finally:
            store.close()
    return hook


def _review(bus: EventBus, node_id: str) -> CurriculumReview:
    rows = curriculum_rows("flow")
    version = bus.store.datasets.create(rows, run_id=RUN_ID, qc_report=qc_report(passed_dupes=False))
    bus.emit(CurriculumProposed(node_id=node_id, dataset_version_id=version,
             composition={"gold": 8, "hard_negative": 5, "replay": 3}, qc=qc_report(passed_dupes=False)))
    return CurriculumReview(node_id=node_id, pipeline=_pipeline(), rows=tuple(rows), dataset_version_id=version,
                            composition={"gold": 8, "hard_negative": 5, "replay": 3},
                            rationale="hard negatives for change_language/translate")


def ask_curriculum(bus: EventBus, session: EngineSession, node_id: str):
    return apply_review(bus, session.reviewer, _review(bus, node_id))


async def _start(tmp_path, ask) -> tuple[Any, dict[str, Any], Store]:
    store = Store(tmp_path / "ws")
    results: dict[str, Any] = {}
    app = create_app(store, start_demo=_engine(results, ask), offer_demo=False)
    return app, results, store


async def _finish(app, pilot, results) -> None:
    await app.workers.wait_for_complete()
    await settle(pilot, lambda: "answer" in results)
    await pilot.pause()


async def test_approve_returns_approve_and_records_it(tmp_path):
    app, results, store = await _start(tmp_path, ask_curriculum)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        summary = app.screen.summary_text()
        assert "16 rows" in summary and "✗ near duplicates 3" in summary  # counts and the QC report shown
        await pilot.press("a")
        await _finish(app, pilot, results)
        decision, version = results["answer"]
        assert decision == Decision("approve")
        assert version is not None and store.datasets.get(version) is not None
        assert [(m.kind, m.result) for m in app.review_log] == [("curriculum", Decision("approve"))]
        assert [(d["kind"], d["action"]) for d in results["store_thread_decisions"]] == [("curriculum", "approve")]
        main = app.main_screen
        await settle(pilot, lambda: main.state.decisions)
        assert main.state.run_id == RUN_ID
        assert main.state.decisions[-1].action == "approve"
        assert main.state.nodes[f"{RUN_ID}.n0001"].status == "approved"


async def test_veto_needs_a_reason_and_returns_it(tmp_path):
    app, results, store = await _start(tmp_path, ask_curriculum)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        await pilot.press("v")
        await settle(pilot, lambda: isinstance(app.screen, VetoScreen))
        await pilot.press("ctrl+s")  # no reason: refused, the dialog stays
        assert isinstance(app.screen, VetoScreen)
        app.screen.query_one(SelectionList).select("too_much_replay")
        app.screen.query_one(Input).value = "replay rows repeat one intent"
        await pilot.press("enter")  # a reason is picked: enter after the words vetoes
        await _finish(app, pilot, results)
        decision, version = results["answer"]
        assert decision == Decision("veto", "replay rows repeat one intent", reasons=("too_much_replay",))
        assert version is None
        assert app.review_log[-1].result == decision
        row = store.runs.decisions(RUN_ID)[-1]
        assert (row["action"], row["reason"]) == ("veto", "replay rows repeat one intent")
        assert row["diff"]["reasons"] == ["too_much_replay"]
        assert row["who"].startswith("tui:")
        await settle(pilot, lambda: app.main_screen.state.decisions)
        assert app.main_screen.state.nodes[f"{RUN_ID}.n0001"].status == "vetoed"


async def test_edit_remove_change_add_rows_makes_new_version_with_diff(tmp_path):
    app, results, store = await _start(tmp_path, ask_curriculum)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        review_screen = app.screen
        await pilot.press("x")  # remove row 1 (flow-gold-0)
        await pilot.press("e")  # edit what is now row 1 (flow-gold-1)
        await settle(pilot, lambda: isinstance(app.screen, RowEditorScreen))
        app.screen.query_one("#row-output", TextArea).text = "translate"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is review_screen)
        await pilot.press("n")  # add a row
        await settle(pilot, lambda: isinstance(app.screen, RowEditorScreen))
        app.screen.query_one("#row-input", TextArea).text = "put the whole app in portuguese"
        app.screen.query_one("#row-output", TextArea).text = "change_language"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is review_screen)
        assert review_screen.edited and "edited" in review_screen.summary_text()
        await pilot.press("a")  # approve with pending edits is refused: nothing is dismissed
        await pilot.pause()
        assert app.screen is review_screen and "answer" not in results
        await pilot.press("ctrl+s")
        await _finish(app, pilot, results)

        decision, version = results["answer"]
        assert decision.action == "edit"
        ids = [r["id"] for r in decision.rows]
        assert "flow-gold-0" not in ids and ids[-1] == "tui-added-1" and len(ids) == 16
        changed = next(r for r in decision.rows if r["id"] == "flow-gold-1")
        assert changed["output"] == "translate" and changed["input"] == "set my phone language to french please"
        assert decision.rows[-1] == {"id": "tui-added-1", "input": "put the whole app in portuguese",
                                     "output": "change_language", "slice": "gold"}
        saved = store.datasets.rows(version)
        assert saved == list(decision.rows)
        row = store.runs.decisions(RUN_ID)[-1]
        assert row["action"] == "edit" and row["dataset_version_id"] == version
        assert row["diff"]["removed"] == ["flow-gold-0"]
        assert [c["id"] for c in row["diff"]["changed"]] == ["flow-gold-1"]
        assert [a["id"] for a in row["diff"]["added"]] == ["tui-added-1"]
        assert app.review_log[-1].result == decision


async def test_slice_ratios_only_drop_rows(tmp_path):
    app, results, store = await _start(tmp_path, ask_curriculum)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        review_screen = app.screen
        await pilot.press("s")
        await settle(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = "gold=60 hard_negative=40 replay=0"
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen is review_screen)
        await pilot.press("ctrl+s")
        await _finish(app, pilot, results)
        decision, _ = results["answer"]
        slices = [r["slice"] for r in decision.rows]
        assert slices.count("replay") == 0
        assert (slices.count("gold"), slices.count("hard_negative")) == (7, 5)  # 60:40 of 12 (5 hard max)


def ask_rollback(bus: EventBus, session: EngineSession, node_id: str):
    info = Confirmation(node_id=node_id, summary="4 regressions > epsilon 2", details={
        "from_model": "m-4", "to_model": "m-2", "rollback_to": "run-flow.n0000",
        "before": {"failure_set.accuracy": 0.884, "regression_set.accuracy": 0.99},
        "after": {"failure_set.accuracy": 0.931, "regression_set.accuracy": 0.96},
        "regressions": [{"eval_set": "regression", "id": "t-9", "input": "send 20 to mom", "expected": '"transfer"',
                         "prediction": '"rollover_401k"'}],
        "gates": {"node_id": node_id, "passed": False, "results": [
            {"gate": "failure_set", "passed": False, "value": 0.931, "threshold": 0.96, "rule": ">="},
            {"gate": "regression_set", "passed": False, "value": 4.0, "threshold": 2.0, "rule": "<="}]},
    })
    return confirm(bus, session.reviewer, "rollback", info)


def ask_promotion(bus: EventBus, session: EngineSession, node_id: str):
    info = Confirmation(node_id=node_id, summary="all gates passed", details={"to_model": "m-5"})
    return confirm(bus, session.reviewer, "promotion", info)


@pytest.mark.parametrize(("ask", "kind", "key", "expected"), [
    (ask_rollback, "rollback", "y", True),
    (ask_rollback, "rollback", "n", False),
    (ask_promotion, "promotion", "n", False),
])
async def test_rollback_and_promotion_confirmations(tmp_path, ask, kind, key, expected):
    app, results, store = await _start(tmp_path, ask)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, GateConfirmScreen))
        review = app.screen.review
        assert review.kind == kind
        if kind == "rollback":
            assert review.title == "Roll back from m-4 to m-2?"
            assert [g["gate"] for g in review.gates] == ["failure_set", "regression_set"]
            assert review.regressions[0]["id"] == "t-9"
            assert review.before["regression_set.accuracy"] == 0.99
            assert review.rollback_to == "run-flow.n0000" and review.details == {}
            said = rendered(render_review(review))
            assert "Restore node n0000's dataset and configuration (model m-2) and grow from there" in said
            assert "transfer" in said and '"transfer"' not in said  # outputs as people read them
        await pilot.press("escape")  # escape decides nothing
        await pilot.pause()
        assert isinstance(app.screen, GateConfirmScreen) and "answer" not in results
        await pilot.press(key)
        await _finish(app, pilot, results)
        assert results["answer"] is expected
        assert [(m.kind, m.result) for m in app.review_log] == [(kind, expected)]
        row = store.runs.decisions(RUN_ID)[-1]
        assert (row["kind"], row["action"]) == (kind, "approve" if expected else "refuse")


async def test_closing_the_app_mid_review_vetoes(tmp_path):
    app, results, store = await _start(tmp_path, ask_curriculum)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        await pilot.press("q")
    deadline = time.monotonic() + 10
    while "answer" not in results and time.monotonic() < deadline:
        time.sleep(0.05)
    decision, version = results["answer"]
    assert decision == Decision("veto", "the TUI closed before a decision") and version is None
