"""Production mode on a deployed decoder (a tiny Llama built from a config): judged generative traces
-> taxonomy and triage -> a curriculum of gold corrections -> a trained candidate evaluated on exact
answers -> the same gates and decisions as the encoder path.

The deployment answers colour questions. Its training slice taught four facts that have since changed
(the stale answers), so traffic about those fails and the judge gives the current answer; traffic about
the other eight passes. Every traffic question repeats the training slice's questions, so the regression
set (half the passes) protects them all and nothing can be replayed: the candidate learns the corrections
and forgets the rest, and the traffic gate must refuse it.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from tiny_decoder import build_tiny_decoder

from engine.data.datasets_io import example_to_row
from engine.ingest import ingest_traces
from engine.models.base import TrainConfig
from engine.models.factory import train_and_register, trainer_for
from engine.models.predictor import load_predictor, read_manifest
from engine.production import ProductionConfig, improve, load_diagnosis
from engine.records import Example
from engine.search.reviewer import HeadlessReviewer
from store import Store

COLOURS = ["red", "blue", "green", "black", "white", "pink"]
THINGS = ["sky", "grass", "snow", "coal", "rose", "sea", "leaf", "milk", "ink", "cherry", "lime", "cloud"]


def question(thing: str) -> str:
    return f"What colour is the {thing}?"


@pytest.mark.slow
def test_a_decoder_candidate_is_trained_on_corrections_evaluated_on_answers_and_refused_when_it_regresses(tmp_path):
    rng = random.Random(0)
    facts = {t: rng.choice(COLOURS) for t in THINGS}
    stale = {t: next(c for c in COLOURS if c != facts[t]) for t in THINGS[8:]}
    corpus = [f"{question(t)} {c}" for t, c in facts.items()] * 10 + ["system user assistant"] * 5
    base = build_tiny_decoder(tmp_path / "llama", corpus, init=0.4)
    parent = [Example(question(t), facts[t]) for t in THINGS[:8]] * 4 + \
        [Example(question(t), c) for t, c in stale.items()] * 4
    with Store(tmp_path / "ws") as store:
        version = store.datasets.create([example_to_row(e) for e in parent], name="d_parent", task="generation",
                                        note="the deployed model's training slice")
        recipe = TrainConfig(task="generation", base_model=base, method="full", epochs=20.0, batch_size=8,
                             learning_rate=3e-3, warmup_ratio=0.0, seed=0)
        deployed = train_and_register(store, parent, recipe, dataset_version_id=version, name="colours-v1",
                                      trainer=trainer_for("generation", base, num_threads=1))
        store.models.set_status(deployed.model_id, "deployed")
        traffic = [THINGS[i % len(THINGS)] for i in range(48)]
        answers = load_predictor(deployed.artifact_dir).predict([question(t) for t in traffic])
        start = datetime(2026, 11, 1, tzinfo=UTC)
        records = [{"id": f"t{i:03d}", "ts": (start + timedelta(minutes=i)).isoformat(), "model_id": "colours-v1",
                    "task": "generation", "input": question(t), "prediction": a.output,
                    "verdict": "pass" if a.output == facts[t] else "fail",
                    **({} if a.output == facts[t] else {"correction": facts[t]})}
                   for i, (t, a) in enumerate(zip(traffic, answers, strict=True))]
        (tmp_path / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        ingest_traces(store, tmp_path / "traces.jsonl")
        failing = {r["input"] for r in records if r["verdict"] == "fail"}
        assert failing == {question(t) for t in stale}  # the deployment learned its slice, stale facts included

        summary = improve(store, ProductionConfig(model="colours-v1", max_iterations=1, trainer_threads=1,
                                                  embedder="tfidf"), reviewer=HeadlessReviewer("auto"))
        diagnosis = load_diagnosis(store, summary.run_id)
        assert summary.triage == {"fixable": 16}  # in-domain corrections: nothing triaged as poison
        assert set(diagnosis.fail_ids) == {r["id"] for r in records if r["verdict"] == "fail"}

        candidate = next(n for n in store.runs.nodes(summary.run_id) if n["parent_id"] is not None)
        rows = store.datasets.rows(candidate["dataset_version_id"])
        assert rows and {r["slice"] for r in rows} == {"gold"}
        # the current answers, on failing questions and their noisy variants (typos...)
        assert {r["output"] for r in rows} <= {facts[t] for t in stale}
        assert {(r["input"], r["output"]) for r in rows} & {(question(t), facts[t]) for t in stale}
        model = store.models.get(candidate["model_id"])
        assert read_manifest(model["artifact_path"])["backend"] == "decoder"

        events = store.runs.events(summary.run_id)
        evaluated = next(e.payload for e in events if e.type == "node_evaluated" and e.payload["node_id"] == candidate["id"])
        metrics = evaluated["metrics"]
        assert metrics["failure_set.fixed"] > 0 and metrics["regressions"] > 0  # fixes, and forgotten passes
        gates = {e.payload["gate"]: e.payload["passed"] for e in events
                 if e.type == "gate_checked" and e.payload["node_id"] == candidate["id"]}
        assert gates["regression_rate"] is False and not all(gates.values())
        assert summary.promoted_model is None and "kept the deployed model" in summary.outcome
        assert store.models.deployed()["id"] == deployed.model_id
