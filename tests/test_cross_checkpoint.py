"""The cross-checkpoint set: what the deployed model got right in earlier runs, minus what it was trained on."""

from __future__ import annotations

import json

from engine.production import previous_checkpoint_set
from store import Store


def _evaluate(store: Store, run: str, model: str, eval_set: str, items: list[tuple[str, str, bool]]) -> None:
    store.runs.add_evaluations([{"run_id": run, "model_id": model, "eval_set": eval_set, "example_id": tid,
                                 "input": text, "expected": json.dumps("label"), "prediction": json.dumps("label"),
                                 "correct": int(ok)} for tid, text, ok in items])


def test_the_set_accumulates_over_earlier_runs_and_leaves_out_trained_on_inputs(tmp_path):
    with Store(tmp_path / "ws") as store:
        version = store.datasets.create([{"input": "fixed gold input", "output": "label"}], task="classification")
        model = store.models.register(base_model="b", artifact_path=None, task="classification",
                                      dataset_version_id=version, status="deployed")
        run1, run2, now = (store.runs.create("production") for _ in range(3))
        # run 1: the model as a candidate; its failure item was trained on (gold), the regression item not
        _evaluate(store, run1, model, "failure", [("f1", "fixed gold input", True)])
        _evaluate(store, run1, model, "regression", [("r1", "kept pass", True)])
        # run 2: the model kept as the deployed root; its new failure is wrong, the old item evaluated again
        _evaluate(store, run2, model, "failure", [("f2", "still failing", False)])
        _evaluate(store, run2, model, "regression", [("r2", "another pass", True)])
        _evaluate(store, run2, model, "cross_checkpoint", [("r1", "kept pass", False)])
        _evaluate(store, now, model, "regression", [("r3", "this run", True)])  # the current run is not earlier
        other = store.models.register(base_model="b", artifact_path=None, task="classification")
        _evaluate(store, run2, other, "regression", [("x", "someone else", True)])

        items = {r["id"]: r for r in previous_checkpoint_set(store, model, now)}
        # r1 was right, then wrong (the latest evaluation wins); f2 was never right; f1 was trained on
        assert items == {"r2": {"id": "r2", "input": "another pass", "expected": "label", "correct": True}}
        _evaluate(store, run2, model, "regression", [("r4", "right again", True)])
        assert set(r["id"] for r in previous_checkpoint_set(store, model, now)) == {"r2", "r4"}
        assert previous_checkpoint_set(store, "never-evaluated", now) == []
