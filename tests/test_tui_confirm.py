"""Promotion, rollback and the close call (issue 13, the person in the loop), through the real loop on the
fake runner: refusing a promotion keeps the search going; a candidate that failed only the regression
budget is promoted only with a person's reason; keeping the deployed model, or closing the app, never
promotes it. Gates read in words and numbers people use."""

from __future__ import annotations

import time

import pytest
from fake_runner import DEPLOYED, Result
from person_loop import ScreenHost, loop_app, rendered
from textual.pilot import Pilot
from textual.widgets import Button, Input, Static
from tui_helpers import settle

from engine.search.loop import promote_command
from engine.search.reviewer import Confirmation
from pioneer_tui.screens.confirm import GateConfirmScreen, PromoteAnywayScreen, gate_row, render_review
from pioneer_tui.screens.review import CurriculumReviewScreen
from pioneer_tui.tui_reviewer import ReviewDecided, gate_review
from store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _row(gate: str, value: float, threshold: float, rule: str, passed: bool = True) -> tuple[str, str, str]:
    mark, value_text, limit = gate_row({"gate": gate, "passed": passed, "value": value, "threshold": threshold,
                                        "rule": rule})
    return mark.plain, value_text, limit


def test_gates_read_in_words_and_numbers_people_use():
    assert _row("gain", 0.0771234, 0.0, ">") == ("✓ estimated gain on traffic, lower bound", "+7.7%", "must be > 0")
    assert _row("regression_rate", 0.05, 0.02, "<=", False) == ("✗ held-out passes broken", "5%", "must be ≤ 2%")
    assert _row("regression_budget", 1.0, 2.0, "<=")[1:] == ("1 regression", "must be ≤ 2")
    assert _row("regression_set", 2.0, 2.0, "<=")[1:] == ("2 regressions", "must be ≤ 2")
    assert _row("cross_budget", 0.0125, 0.02, "<=")[1:] == ("1.2%", "must be ≤ 2%")
    assert _row("failure_set", 0.93125, 0.96, ">=", False)[1:] == ("0.931", "must be ≥ 0.96")
    assert _row("monotone", 0.871, 0.39, ">=")[1:] == ("0.871", "must be ≥ 0.39")


async def _to_promotion(app, pilot: Pilot, screen_type: type) -> None:
    """Approve every curriculum until the run asks a `screen_type` question."""
    while not isinstance(app.screen, screen_type):
        if isinstance(app.screen, CurriculumReviewScreen):
            await pilot.press("a")
        await pilot.pause(0.05)


async def test_refusing_a_promotion_keeps_searching_and_the_next_candidate_is_offered(tmp_path):
    box: dict = {}
    app, store = loop_app(tmp_path, box, lambda p: Result(broken=1), iterations=4)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        await _to_promotion(app, pilot, GateConfirmScreen)
        refused = app.screen.review
        assert str(app.screen.query_one("#refuse", Button).label) == "Refuse: keep searching (n)"
        assert "the run continues with the budget left" in rendered(render_review(refused))
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        await _to_promotion(app, pilot, GateConfirmScreen)
        offered = app.screen.review
        assert offered.node_id != refused.node_id
        await pilot.press("y")
        await settle(pilot, lambda: "result" in box)
        assert box["result"].promoted_model == offered.to_model
        assert [(m.kind, m.result) for m in app.review_log if m.kind == "promotion"] == [
            ("promotion", False), ("promotion", True)]
    store.close()


def _close_call(tmp_path, box: dict):
    """A run whose one candidate breaks 5 of 100 held-out passes: a clear gain, over the 2% budget."""
    return loop_app(tmp_path, box, lambda p: Result(broken=5), iterations=1)


async def _at_close_call(app, pilot: Pilot) -> PromoteAnywayScreen:
    app.action_demo()
    await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
    await _to_promotion(app, pilot, PromoteAnywayScreen)
    return app.screen


def _override(store: Store, run_id: str) -> dict:
    return next(d for d in store.runs.decisions(run_id) if (d["diff"] or {}).get("override"))


async def test_promote_anyway_needs_a_reason_and_promotes_with_it(tmp_path):
    box: dict = {}
    app, store = _close_call(tmp_path, box)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _at_close_call(app, pilot)
        review = screen.review
        said = rendered(render_review(review))
        assert review.close_call and "estimated gain" in review.reason
        assert "✗ held-out passes broken" in said and "must be ≤ 2%" in said
        assert screen.query_one("#promote", Button).disabled
        await pilot.press("ctrl+s")  # no reason: refused, the dialog stays
        await pilot.press("escape")  # decides nothing
        await pilot.pause()
        assert app.screen is screen and "result" not in box
        assert "needs a reason" in str(screen.query_one("#override-check", Static).render())
        await pilot.press(*"fixes")
        assert not screen.query_one("#promote", Button).disabled
        screen.query_one(Input).value = "the gain outweighs five broken passes"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: "result" in box)
        result = box["result"]
        assert result.promoted_model == review.to_model
        assert app.review_log[-1] == ReviewDecided("override", review.node_id, True, "the gain outweighs five broken passes")
    assert store.models.deployed()["id"] == review.to_model
    override = _override(store, box["run_id"])
    assert (override["action"], override["reason"]) == ("approve", "the gain outweighs five broken passes")
    store.close()


async def test_keep_the_deployed_model_returns_none(tmp_path):
    box: dict = {}
    app, store = _close_call(tmp_path, box)
    async with app.run_test(size=(100, 30)) as pilot:
        node_id = (await _at_close_call(app, pilot)).review.node_id
        app.screen.query_one(Input).value = "typed, then thought better of it"
        await pilot.press("ctrl+n")
        await settle(pilot, lambda: "result" in box)
        assert box["result"].promoted_model is None and "failed only the regression budget" in box["result"].outcome
        assert app.review_log[-1] == ReviewDecided("override", node_id, False)
    assert store.models.deployed()["id"] == DEPLOYED
    finished = next(e.payload for e in store.runs.events(box["run_id"]) if e.type == "run_finished")
    assert finished["promote_command"] == promote_command(node_id)  # the run's log prints it, for later
    store.close()


async def test_closing_the_app_during_a_close_call_keeps_the_deployed_model(tmp_path):
    box: dict = {}
    app, store = _close_call(tmp_path, box)
    async with app.run_test(size=(100, 30)) as pilot:
        (await _at_close_call(app, pilot)).query_one(Input).value = "half a reason"
        app.exit()
    deadline = time.monotonic() + 10
    while "result" not in box and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box["result"].promoted_model is None
    assert store.models.deployed()["id"] == DEPLOYED
    assert _override(store, box["run_id"])["action"] == "refuse"
    store.close()


GATES = {"node_id": "run-1.n0007", "passed": False, "rule": "traffic", "close_call": True, "results": [
    {"gate": "gain", "passed": True, "value": 0.077123, "threshold": 0.0, "rule": ">"},
    {"gate": "regression_rate", "passed": False, "value": 0.05, "threshold": 0.02, "rule": "<="},
    {"gate": "monotone", "passed": True, "value": 0.871, "threshold": 0.39, "rule": ">="}]}
BROKEN = [{"eval_set": "regression", "id": f"t-{i}", "input": f"send [b]{i}0[/b] dollars to mom",
           "expected": '"transfer"', "prediction": '"rollover_401k"'} for i in range(5)]
PROMOTION = Confirmation(
    "run-1.n0007", "promote run-1.n0007.m1: estimated gain +14.5% on traffic like this run's (at least +7.7% at "
    "95%), 5 of 100 held-out passes broken",
    {"from_model": "m-deployed", "to_model": "run-1.n0007.m1", "before": {"score": 0.39}, "after": {"score": 0.871},
     "gates": GATES, "close_call": True, "regressions": BROKEN})
PASSED = Confirmation("run-1.n0007", PROMOTION.summary.replace("5 of 100", "1 of 100"), {
    **PROMOTION.details, "close_call": False, "regressions": BROKEN[:1], "gates": {**GATES, "passed": True, "results": [
        {**r, "passed": True, "value": 0.01 if r["gate"] == "regression_rate" else r["value"]} for r in GATES["results"]]}})
ROLLBACK = Confirmation("run-1.n0005", "4 regressions > epsilon 2", {
    "from_model": "run-1.n0005.m1", "to_model": "run-1.n0002.m1", "rollback_to": "run-1.n0002",
    "before": {"score": 0.91, "regressions": 1}, "after": {"score": 0.88, "regressions": 4}})


def test_broken_items_are_text_never_markup():
    said = rendered(render_review(gate_review("promotion", PROMOTION)))
    assert "send [b]00[/b] dollars to mom" in said and "rollover_401k" in said


@pytest.mark.parametrize(("make", "size"), [
    (lambda: PromoteAnywayScreen(gate_review("promotion", PROMOTION)), (100, 30)),
    (lambda: GateConfirmScreen(gate_review("promotion", PASSED)), (80, 24)),
    (lambda: GateConfirmScreen(gate_review("rollback", ROLLBACK)), (80, 24)),
], ids=["close_call", "promotion", "rollback"])
def test_confirm_snapshots(snap_compare, make, size):
    assert snap_compare(ScreenHost(make), terminal_size=size)
