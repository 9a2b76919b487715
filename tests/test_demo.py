"""The demo project: a fresh workspace gets the traces and the deployed model the traces describe."""

from __future__ import annotations

import json

import pytest

from engine.demo import DEMO_DIR, prepare_demo
from engine.models.predictor import load_predictor
from store import Store


@pytest.mark.slow
def test_prepare_demo_registers_the_model_the_traces_describe(tmp_path):
    with Store(tmp_path) as store:
        config = prepare_demo(store)
        traces = [json.loads(line) for line in (DEMO_DIR / "traces.jsonl").open(encoding="utf-8")]
        assert store.traces.count() == len(traces)
        deployed = store.models.deployed()
        assert deployed["id"] == config.model == "demo-intent-v1"
        parent = store.datasets.get(deployed["dataset_version_id"])
        assert parent["n_rows"] == sum(1 for _ in (DEMO_DIR / "train.jsonl").open())

        # Retrained from deployed.json with its seed, the model answers as the logged one did.
        answered = [t for t in traces if t["prediction"]]
        predictions = load_predictor(deployed["artifact_path"]).predict([t["input"] for t in answered])
        agree = sum(p.output == t["prediction"] for p, t in zip(predictions, answered, strict=True))
        assert agree / len(answered) >= 0.95

        models_before = store.models.list()
        prepare_demo(store)  # a second start reuses everything
        assert store.models.list() == models_before
        assert store.traces.count() == len(traces)


def test_missing_demo_folder_says_what_is_missing(tmp_path):
    with Store(tmp_path / "ws") as store, pytest.raises(FileNotFoundError, match="deployed.json is missing"):
        prepare_demo(store, tmp_path / "nowhere")
