"""The regression budget raised to the deployed model's retraining churn (engine.production.mode.churn_budget)."""

from __future__ import annotations

import pytest

from engine.curation_log import render_curation_log
from engine.errors import ConfigError
from engine.production import ProductionConfig
from engine.production.mode import CHURN_SECTION, churn_budget
from engine.production.runner import Churn
from engine.search.gates import GateConfig
from engine.search.loop import open_run
from store import Store


class Retrainer:
    """Stands in for ProductionRunner.retraining_churn (the real one trains: tests/test_production.py)."""

    def __init__(self, churn: Churn | None) -> None:
        self.churn, self.calls = churn, 0

    def retraining_churn(self, root):
        self.calls += 1
        return self.churn


def notes(store, run_id):
    return [e.payload for e in store.runs.events(run_id) if e.payload.get("section") == CHURN_SECTION]


def test_the_budget_rises_to_the_churn_once_and_a_resumed_run_reads_it_back(tmp_path):
    with Store(tmp_path / "ws") as store:
        bus = open_run(store, "production", {})
        runner = Retrainer(Churn("run-1.churn", seed=1, rows=300, broken=8, guarded=37))
        assert churn_budget(store, bus, runner, None, GateConfig()) == pytest.approx(8 / 37, abs=1e-6)
        assert churn_budget(store, bus, Retrainer(None), None, GateConfig()) == pytest.approx(8 / 37, abs=1e-6)
        assert runner.calls == 1
        started, note = notes(store, bus.run_id)
        assert started["markdown"].startswith("- measuring the deployed model's retraining churn")
        assert note["data"]["budget"] == note["data"]["rate"] == round(8 / 37, 6) and note["data"]["configured"] == 0.05
        assert note["markdown"] == (
            "- retraining the deployed model's recipe on its own 300 training rows with seed 1 (model run-1.churn) "
            "broke 8 of the 37 held-out items the budget guards (the regression set and the previous checkpoint's; "
            "21.6%): the regression budget is 21.6% (configured 5.0%); a candidate that breaks no more than a "
            "retrain of the same recipe is within retraining noise")
        log = render_curation_log(store.runs.events(bus.run_id))
        assert log.count("## Regression budget") == 1  # the start and the measurement, one section
        assert log.index("measuring the deployed model's retraining churn") < log.index("broke 8 of the 37")


def test_a_budget_above_the_churn_stays_and_an_unknown_churn_leaves_it(tmp_path):
    with Store(tmp_path / "ws") as store:
        low = Retrainer(Churn("run-1.churn", seed=1, rows=40, broken=1, guarded=50))
        assert churn_budget(store, open_run(store, "production", {}), low, None, GateConfig()) == 0.05
        bus = open_run(store, "production", {})
        assert churn_budget(store, bus, Retrainer(None), None, GateConfig(max_regression_rate=0.1)) == 0.1
        assert "no recorded training data" in notes(store, bus.run_id)[-1]["markdown"]


def test_churn_budget_needs_the_traffic_rule_and_a_rate_to_raise():
    ProductionConfig(model="m", churn_budget=True)
    for kw in ({"gate": "strict"}, {"max_regression_rate": None}):
        with pytest.raises(ConfigError, match="ProductionConfig.churn_budget=True is invalid: use false with the strict"):
            ProductionConfig(model="m", churn_budget=True, **kw)
