"""Pipelines pi = (D, H, S): validation with named fields, JSON round trip, stable hashing, dotted edits."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.search.pipeline import CurationConstraints, DatasetSpec, Pipeline, Strategy


def production(**data) -> Pipeline:
    spec = {"mode": "production", "gold_fraction": 0.5, "hard_negative_fraction": 0.33, "replay_fraction": 0.17,
            **data}
    return Pipeline(DatasetSpec(**spec), TrainConfig(task="classification"))


def test_defaults_are_a_valid_cold_start_pipeline_with_the_papers_numbers():
    p = Pipeline(DatasetSpec(), TrainConfig(task="classification"))
    assert (p.data.gold_fraction, p.data.hard_negative_fraction, p.data.replay_fraction) == (0.65, 0.35, 0.0)
    c = p.data.constraints
    assert (c.max_label_ratio, c.near_dup_jaccard, c.max_surface_repeats) == (3.0, 0.8, 3)
    assert (c.min_patterns_per_label, c.max_patterns_per_label) == (3, 5)
    assert p.strategy == Strategy("direct", None, "accuracy", None)


def test_round_trip_through_json_keeps_equality_and_hash():
    p = production(source_versions=["ds-1", "ds-2"], focus_pairs=[["translate", "change_language"]],
                   targeted=[["typos", 2], ["preambles", 3]])
    raw = json.loads(json.dumps(p.to_dict()))
    back = Pipeline.from_dict(raw)
    assert back == p
    assert back.hash == p.hash
    assert back.data.focus_pairs == (("translate", "change_language"),)


def test_hash_is_sha256_of_canonical_json_and_sensitive_to_every_field():
    p = production()
    assert len(p.hash) == 64
    shuffled = dict(reversed(list(p.to_dict().items())))
    assert Pipeline.from_dict(shuffled).hash == p.hash
    assert p.modify({"hyperparams.epochs": 2.0}).hash != p.hash
    assert p.modify({"strategy.eval_method": "macro_f1"}).hash != p.hash
    assert p.modify({"data.constraints.near_dup_jaccard": 0.9}).hash != p.hash


@pytest.mark.parametrize(("changes", "field"), [
    ({"gold_fraction": 0.70, "hard_negative_fraction": 0.25, "replay_fraction": 0.05}, "gold_fraction"),
    ({"gold_fraction": 0.55, "hard_negative_fraction": 0.20, "replay_fraction": 0.25}, "hard_negative_fraction"),
    ({"gold_fraction": 0.60, "hard_negative_fraction": 0.35, "replay_fraction": 0.05}, "replay_fraction"),
    ({"gold_fraction": 0.40, "hard_negative_fraction": 0.25, "replay_fraction": 0.10}, "sum to 1"),
])
def test_production_composition_bands_are_enforced(changes, field):
    with pytest.raises(ConfigError, match=field):
        production(**changes)


def test_cold_start_band_is_about_65_35_without_replay():
    DatasetSpec(gold_fraction=0.6, hard_negative_fraction=0.4)
    with pytest.raises(ConfigError, match=r"replay_fraction=0.1 .*\[0.00, 0.00\] for cold_start"):
        DatasetSpec(gold_fraction=0.55, hard_negative_fraction=0.35, replay_fraction=0.1)
    with pytest.raises(ConfigError, match="gold_fraction"):
        DatasetSpec(gold_fraction=0.9, hard_negative_fraction=0.1)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_label_ratio": 0.5}, "max_label_ratio"),
    ({"near_dup_jaccard": 0.0}, "near_dup_jaccard"),
    ({"max_surface_repeats": 0}, "max_surface_repeats"),
    ({"min_patterns_per_label": 6}, "min_patterns_per_label"),
])
def test_curation_constraints_are_validated(kwargs, field):
    with pytest.raises(ConfigError, match=f"constraints.{field}"):
        CurationConstraints(**kwargs)


def test_targeted_examples_and_focus_pairs_are_validated():
    with pytest.raises(ConfigError, match="targeted"):
        DatasetSpec(targeted=[["typos", 0]])
    with pytest.raises(ConfigError, match="distinct patterns"):
        DatasetSpec(targeted=[["typos", 2], ["typos", 3]])
    with pytest.raises(ConfigError, match="focus_pairs"):
        DatasetSpec(focus_pairs=[["only-one"]])
    with pytest.raises(ConfigError, match="source_versions"):
        DatasetSpec(source_versions="ds-1")


def test_strategy_rules():
    with pytest.raises(ConfigError, match="supervision"):
        Strategy(supervision="socratic")
    with pytest.raises(ConfigError, match="judge_model"):
        Strategy(eval_method="judge")
    with pytest.raises(ConfigError, match="chain-of-thought needs a generative model"):
        Pipeline(DatasetSpec(), TrainConfig(task="classification"), Strategy("chain_of_thought", "teacher-x"))
    cot = Pipeline(DatasetSpec(), TrainConfig(task="generation"), Strategy("chain_of_thought", "teacher-x"))
    assert cot.strategy.teacher == "teacher-x"


def test_from_dict_names_unknown_and_badly_typed_fields():
    raw = production().to_dict()
    with pytest.raises(ConfigError, match="pipeline.data has unknown field.*gold"):
        Pipeline.from_dict({**raw, "data": {**raw["data"], "gold": 0.5}})
    with pytest.raises(ConfigError, match="pipeline.hyperparams"):
        Pipeline.from_dict({**raw, "hyperparams": {"epochs": 2}})
    with pytest.raises(ConfigError, match="wrong type"):
        Pipeline.from_dict({**raw, "hyperparams": {**raw["hyperparams"], "epochs": "three"}})
    with pytest.raises(ConfigError, match="TrainConfig.learning_rate"):
        Pipeline.from_dict({**raw, "hyperparams": {**raw["hyperparams"], "learning_rate": 5.0}})
    with pytest.raises(ConfigError, match="JSON object"):
        Pipeline.from_dict(["not", "a", "dict"])


def test_modify_and_diff_use_dotted_keys():
    p = production()
    q = p.modify({"hyperparams.epochs": 2.0, "data.focus_pairs": [["a", "b"]]})
    assert q.hyperparams.epochs == 2.0 and q.data.focus_pairs == (("a", "b"),)
    assert p.diff(q) == {"data.focus_pairs": [[], [["a", "b"]]], "hyperparams.epochs": [3.0, 2.0]}
    assert p.diff(p) == {}
    with pytest.raises(ConfigError, match="pipeline field 'hyperparams.epoch'"):
        p.modify({"hyperparams.epoch": 2})
    with pytest.raises(ConfigError, match="gold_fraction"):
        p.modify({"data.gold_fraction": 0.9})


def test_to_train_config_is_h_with_an_optional_seed():
    p = production()
    assert p.to_train_config() is p.hyperparams
    assert p.to_train_config(seed=7).seed == 7
    assert p.to_train_config(seed=7).learning_rate == p.hyperparams.learning_rate
