"""A mode's own stop rule (LoopParts.stop_check, e.g. cold-start's plateau) ends a run like a spent
budget. It travels in LoopParts, so the shared resume path (which rebuilds the parts) keeps it."""

from __future__ import annotations

from engine.models.base import TrainConfig
from engine.search.budget import BudgetLimits
from engine.search.loop import LoopConfig, LoopParts, open_run, run_loop
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import RulePlanner
from engine.search.reviewer import HeadlessReviewer
from store import Store


class NeverRun:
    """The stop rule fires before the first step, so nothing may be built, trained or evaluated."""

    def baseline(self):
        raise AssertionError("the loop ran a step after its stop rule fired")

    build_curriculum = train = evaluate = baseline


def test_stop_check_ends_the_run_with_its_reason(tmp_path):
    with Store(tmp_path) as store:
        bus = open_run(store, "production", {})
        parts = LoopParts(Pipeline(DatasetSpec(), TrainConfig(task="classification")), RulePlanner(seed=0),
                          NeverRun(), LoopConfig(), stop_check=lambda: "plateau: no new best in 3 configurations")
        result = run_loop(bus, parts, HeadlessReviewer("auto"), BudgetLimits(iterations=5))
        assert result.status == "finished"
        assert result.reason == "plateau: no new best in 3 configurations"
        finished = [e for e in bus.history() if e.type == "run_finished"]
        assert [e.payload["reason"] for e in finished] == [result.reason]
