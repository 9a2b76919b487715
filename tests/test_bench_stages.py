"""AdaptFT-Bench stage construction: sizes, poison rates, disjoint splits, held-out = union of tests."""

from __future__ import annotations

import random

import pytest

from engine.bench.stages import StageConfig, build_stages, is_poisoned, poison_share
from engine.errors import ConfigError
from engine.records import Example

TOPICS = {"weather": ["rain", "sunny", "forecast", "cold", "windy", "storm"],
          "music": ["song", "album", "track", "play", "band", "guitar"],
          "sports": ["score", "game", "team", "match", "goal", "coach"]}
FILLERS = ["what", "is", "the", "today", "tomorrow", "please", "tell", "me", "about", "my"]


def synthetic(n: int = 3000, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = rng.choice(sorted(TOPICS))
        words = rng.sample(FILLERS, 3) + rng.sample(TOPICS[label], 2)
        rng.shuffle(words)
        out.append(Example(" ".join(words) + f" {i}", label, id=f"e{i}"))
    return out


@pytest.fixture(scope="module")
def bench():
    return build_stages(synthetic(), "classification", StageConfig(seed=3, clean_size=400, stage_size=400), "syn")


def test_sizes_and_poison_rates(bench):
    assert len(bench.clean) == 400
    assert [s.poison_rate for s in bench.stages] == [0.15, 0.25, 0.40]
    for stage in bench.stages:
        assert len(stage.rows) == 400
        assert abs(stage.measured_poison_rate - stage.poison_rate) <= 0.01
        assert abs(len(stage.test) / len(stage.rows) - 0.3) <= 0.03
        # stratified split: both halves keep roughly the stage's rate
        assert abs(poison_share(stage.train) - stage.poison_rate) <= 0.04
        assert abs(poison_share(stage.test) - stage.poison_rate) <= 0.06
    rates = [s.measured_poison_rate for s in bench.stages]
    assert rates == sorted(rates)


def test_clean_pool_is_clean_and_stages_are_perturbed(bench):
    assert all(not r["metadata"]["perturbations"] for r in bench.clean)
    for stage in bench.stages:
        assert sum(1 for r in stage.rows if r["metadata"]["perturbations"]) > 0.3 * len(stage.rows)
        assert all(not is_poisoned(r) for r in stage.rows if r["metadata"]["perturbations"] == [])


def test_splits_are_disjoint_and_held_out_is_their_union(bench):
    ids = [r["id"] for r in bench.clean] + [r["id"] for s in bench.stages for r in s.rows]
    assert len(ids) == len(set(ids))
    sources = lambda rows: {r["id"].split(":", 1)[-1].split("-")[0] for r in rows}  # noqa: E731
    assert not sources(bench.clean) & sources([r for s in bench.stages for r in s.rows])
    for stage in bench.stages:
        train_ids = {r["id"] for r in stage.train}
        # an extra row (duplicate, retry) sits in the same split as the row it copies
        for r in stage.test:
            parent = r["metadata"].get("duplicate_of") or r["metadata"].get("retry_of")
            assert parent is None or parent not in train_ids
        assert sources(stage.train).isdisjoint(sources(stage.test))
    assert [r["id"] for r in bench.held_out] == [r["id"] for s in bench.stages for r in s.test]


def test_seeded():
    a = build_stages(synthetic(), "classification", StageConfig(seed=5, clean_size=100, stage_size=100))
    b = build_stages(synthetic(), "classification", StageConfig(seed=5, clean_size=100, stage_size=100))
    c = build_stages(synthetic(), "classification", StageConfig(seed=6, clean_size=100, stage_size=100))
    assert [r["id"] for r in a.held_out] == [r["id"] for r in b.held_out]
    assert [r["input"] for r in a.stages[2].train] == [r["input"] for r in b.stages[2].train]
    assert [r["id"] for r in a.held_out] != [r["id"] for r in c.held_out]


def test_too_small_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="lower clean_size"):
        build_stages(synthetic(200), "classification", StageConfig(clean_size=100, stage_size=100))


def test_the_arithmetic_scenario_is_generation_with_one_row_per_question():
    from engine.bench.stages import load_dataset

    task, examples = load_dataset("arithmetic", "unused")
    assert task == "generation" and len(examples) > 4000
    assert len({ex.input for ex in examples}) == len(examples)
    a, op, b = examples[0].input.removeprefix("Calculate ").rstrip(".").split()
    assert op in "+-" and int(examples[0].output) == (int(a) + int(b) if op == "+" else int(a) - int(b))


def test_the_family_relationships_scenario_is_short_answer_generation_with_one_row_per_question():
    from engine.bench.stages import load_dataset

    task, examples = load_dataset("family_relationships", "unused")
    assert task == "generation" and len(examples) == 10000
    assert len({ex.input for ex in examples}) == len(examples)
    story, question = examples[0].input.split("\n\n")
    assert " is married to " in story and "word" in question
    assert {ex.output for ex in examples} >= {"son", "wife", "husband", "mother-in-law", "grandfather"}
    assert all(" " not in ex.output for ex in examples)  # one word
