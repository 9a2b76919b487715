"""A tiny end-to-end AdaptFT-Bench run on a tiny BERT (built from a config, no download)."""

from __future__ import annotations

import random

import pytest
from tiny_bert import build_tiny_bert
from tiny_decoder import tiny_decoder

from engine.bench.adaptft import HIDDEN, RunConfig, run_adaptft
from engine.bench.report import checkpoint_rows, markdown, perturbation_rows
from engine.bench.stages import StageConfig, build_stages
from engine.errors import ConfigError
from engine.models.predictor import read_manifest
from engine.records import Example
from store import Store

TOPICS = {"weather": ["weather", "rain", "sunny", "cold", "forecast"],
          "music": ["play", "song", "music", "album", "track"],
          "sports": ["score", "game", "team", "match", "won"]}
FILLERS = ["the", "a", "today", "tomorrow", "please", "my", "what", "is"]


def examples(n: int = 420, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = sorted(TOPICS)[i % 3]
        words = rng.sample(FILLERS, 2) + rng.sample(TOPICS[label], 2)
        rng.shuffle(words)
        out.append(Example(" ".join(words), label, id=f"e{i}"))
    return out


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    base = build_tiny_bert(tmp_path / "bert", hidden_size=64)
    bench = build_stages(examples(), "classification", StageConfig(seed=0, clean_size=60, stage_size=40), "tiny")
    config = RunConfig(seed=0, recipe={"base_model": str(base), "method": "full", "epochs": 10.0, "batch_size": 8,
                                       "learning_rate": 2e-3}, agent_minutes=3.0, arms=("naive", "naive_cumulative"), threads=1)
    result = run_adaptft(tmp_path / "ws", bench, config)
    assert [c.name for c in result.checkpoints] == ["C1", "C2", "C3", "C4"]
    assert all(set(c.scores) == {"agent", "naive", "naive_cumulative"} for c in result.checkpoints)
    assert all(0.0 <= s <= 1.0 for c in result.checkpoints for s in c.scores.values())
    assert result.checkpoints[0].scores["agent"] == result.checkpoints[0].scores["naive"]
    assert result.n_held_out == len(bench.held_out)
    # the agent saw every stage's training logs, with the truth hidden from it
    assert {log["stage"] for log in result.logs} == {"stage1", "stage2", "stage3"}
    with Store(tmp_path / "ws") as store:
        rows = store.conn.execute("SELECT metadata FROM traces").fetchall()
        assert rows and not any(h in (m or "") for (m,) in rows for h in HIDDEN)
        # the agent's deployed checkpoint is the registry's deployed model
        assert store.models.deployed()["id"] == result.checkpoints[-1].agent_model
        # naive keeps training its own checkpoint on each stage's logs; the cumulative arm starts from the base
        naive = [store.models.get(f"adaptft-naive-C{k}") for k in (2, 3, 4)]
        assert [m["base_model"] for m in naive[1:]] == [m["artifact_path"] for m in naive[:2]]
        assert store.models.get("adaptft-naive_cumulative-C4")["base_model"] == str(base)
        # every candidate the agent evaluated is scored on the held-out union; a promoted one is among them
        for c in result.checkpoints[1:]:
            evaluated = {n["model_id"] for n in store.runs.nodes(c.agent_run)
                         if n["parent_id"] and n["model_id"] and n["status"] == "evaluated"}
            assert {v["model"] for v in c.candidates.values()} == evaluated
            assert all(0.0 <= v["score"] <= 1.0 for v in c.candidates.values())
            if c.agent_promoted:
                assert c.candidates[next(k for k, v in c.candidates.items() if v["model"] == c.agent_model)][
                    "score"] == c.scores["agent"]
    assert len(checkpoint_rows(result)) == 4 and perturbation_rows(result)
    assert "| C4 |" in markdown(result)
    phases = result.seconds_by_phase  # where the time went: every phase that ran, and the training rates
    assert {"training: C1", "agent: production mode", "answering stage logs", "held-out scoring",
            "training: naive", "training: naive_cumulative"} <= set(phases) and all(v > 0 for v in phases.values())
    assert result.training_rates["models trained"] >= 7 and result.training_rates["training examples/s"] > 0


def test_the_naive_arm_needs_a_method_it_can_keep_training():
    with pytest.raises(ConfigError, match="continues training .* full on the encoder, not lora"):
        RunConfig(recipe={"method": "lora"}, backend="encoder")
    assert RunConfig(recipe={"method": "lora"}, backend="decoder").recipe["method"] == "lora"  # its adapter
    assert RunConfig(recipe={"method": "lora"}, backend="encoder", arms=("naive_cumulative", "oracle")).arms
    with pytest.raises(ConfigError, match="unknown arm"):
        RunConfig(arms=("naive", "bogus"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_tiny_generation_end_to_end(tmp_path, method):
    """The same protocol on a decoder: sums answered as text, scored by exact match; naive keeps
    fine-tuning its own checkpoint (its weights, or its adapter). The LoRA run also raises the agent's
    regression budget to its retraining churn, measured once a stage."""
    rng = random.Random(0)
    sums = [Example(f"Calculate {a} + {b}.", str(a + b), id=f"s{i}")
            for i, (a, b) in enumerate(rng.sample([(a, b) for a in range(40) for b in range(40)], 480))]
    base = tiny_decoder(tmp_path / "llama")
    bench = build_stages(sums, "generation", StageConfig(seed=0, clean_size=60, stage_size=40), "tiny-sums")
    recipe = {"base_model": base, "method": method, "epochs": 2.0, "batch_size": 8, "learning_rate": 3e-3}
    config = RunConfig(seed=0, recipe=recipe, agent_iterations=1, agent_minutes=3.0,
                       arms=("naive", "clean_only"), threads=1, churn_budget=method == "lora")
    result = run_adaptft(tmp_path / "ws", bench, config)
    assert result.metric == "exact_match" and [c.name for c in result.checkpoints] == ["C1", "C2", "C3", "C4"]
    assert all(0.0 <= s <= 1.0 for c in result.checkpoints for s in c.scores.values())
    assert {log["stage"] for log in result.logs} == {"stage1", "stage2", "stage3"}
    with Store(tmp_path / "ws") as store:
        naive = [store.models.get(f"adaptft-naive-C{k}") for k in (2, 3, 4)]
        assert [m["base_model"] for m in naive[1:]] == [m["artifact_path"] for m in naive[:2]]
        assert store.models.deployed()["id"] == result.checkpoints[-1].agent_model
        if method == "lora":  # each adapter continues the last, over the one base
            manifests = [read_manifest(m["artifact_path"]) for m in naive]
            starts = [store.models.get("adaptft-C1"), *naive[:2]]
            assert [m.get("continued_from") for m in manifests] == [m["artifact_path"] for m in starts]
            assert {m["base_model"] for m in manifests} == {base}
            runs = [c.agent_run for c in result.checkpoints[1:]]
            notes = [e for run in runs for e in store.runs.events(run) if e.payload.get("section") == "Regression budget"]
            measured = [n.payload["data"] for n in notes if "budget" in (n.payload.get("data") or {})]
            assert len(notes) == 6 and len(measured) == 3 and measured[0]["seed"] == 1
