"""The iteration policy: each band, its boundaries, rollback on any regression, configurable thresholds."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.search.policy import IterationPolicy, Outcome, PolicyConfig


@pytest.mark.parametrize(("score", "kind"), [
    (0.10, "rework_data"), (0.7999, "rework_data"),
    (0.80, "tune_hyperparams"), (0.90, "tune_hyperparams"), (0.95, "tune_hyperparams"),
    (0.9501, "surgical_augmentation"), (1.0, "surgical_augmentation"),
])
def test_score_bands(score, kind):
    action = IterationPolicy().decide(Outcome("n1", score))
    assert action.kind == kind == action.band
    assert action.rollback_to is None


def test_rework_and_tune_reasons_say_what_to_change():
    policy = IterationPolicy()
    assert "rework the data" in policy.decide(Outcome("n", 0.5)).reason
    assert "data fixed" in policy.decide(Outcome("n", 0.9)).reason


def test_surgical_adds_two_or_three_examples_per_remaining_failure_pattern():
    action = IterationPolicy().decide(Outcome("n", 0.97), failure_patterns={"typos": 5, "preamble": 1, "caps": 3})
    assert action.targets == (("caps", 3), ("preamble", 2), ("typos", 3))
    assert "3 remaining failure pattern(s)" in action.reason
    assert action.to_dict()["targets"] == [["caps", 3], ["preamble", 2], ["typos", 3]]


def test_any_score_drop_rolls_back_to_the_previous_dataset_and_configuration():
    action = IterationPolicy().decide(Outcome("n2", 0.97), Outcome("n1", 0.98))
    assert action.kind == "rollback" and action.rollback_to == "n1"
    assert action.band == "surgical_augmentation"  # the band of the restored score
    assert "score fell from 0.9800 to 0.9700" in action.reason


def test_more_regressions_roll_back_even_when_the_score_rose():
    action = IterationPolicy().decide(Outcome("n2", 0.90, regressions=3), Outcome("n1", 0.85, regressions=1))
    assert (action.kind, action.band, action.rollback_to) == ("rollback", "tune_hyperparams", "n1")
    assert "regressions rose from 1 to 3" in action.reason


def test_no_regression_keeps_going_in_the_current_band():
    policy = IterationPolicy()
    assert policy.decide(Outcome("n2", 0.85, 1), Outcome("n1", 0.85, 1)).kind == "tune_hyperparams"
    assert policy.decide(Outcome("n2", 0.70), Outcome("n1", 0.60)).kind == "rework_data"


def test_thresholds_and_tolerance_are_configurable():
    policy = IterationPolicy(PolicyConfig(rework_below=0.5, surgical_above=0.7, score_tolerance=0.02,
                                          min_per_pattern=1, max_per_pattern=4))
    assert policy.decide(Outcome("n", 0.6)).kind == "tune_hyperparams"
    assert policy.decide(Outcome("n", 0.71), failure_patterns={"a": 4, "b": 2}).targets == (("a", 4), ("b", 1))
    assert policy.decide(Outcome("n2", 0.69), Outcome("n1", 0.70)).kind == "tune_hyperparams"  # within tolerance
    assert policy.decide(Outcome("n2", 0.67), Outcome("n1", 0.70)).kind == "rollback"


@pytest.mark.parametrize("kwargs", [{"rework_below": 0.96}, {"min_per_pattern": 0}, {"score_tolerance": -0.1},
                                    {"min_per_pattern": 4}])
def test_bad_policy_config_is_refused(kwargs):
    with pytest.raises(ConfigError, match="PolicyConfig"):
        PolicyConfig(**kwargs)
