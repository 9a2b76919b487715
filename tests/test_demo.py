"""The demo project: a fresh workspace gets the traces and the deployed model the traces describe; after a
promotion the promoted model answers the demo's next week, judged against its labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.demo import (
    DEMO_DIR,
    NEXT_WEEK,
    NEXT_WEEK_SOURCE,
    NextWeek,
    next_week,
    prepare_demo,
    serve_next_week,
)
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


def _demo_folder(tmp_path, model_id: str, rows: list[dict]) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "deployed.json").write_text(json.dumps({"model_id": model_id, "task": "classification"}))
    (folder / NEXT_WEEK).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_next_week_is_offered_once_and_only_to_a_model_that_descends_from_the_demos(tmp_path):
    with Store(tmp_path / "ws") as store:
        demo = store.models.register(base_model="minilm", artifact_path=None, status="deployed", model_id="demo-v1")
        folder = _demo_folder(tmp_path, demo, [{"id": "w0", "input": "hi", "output": "a", "metadata": {}}])
        assert next_week(store, folder) is None  # the demo's own model has its week already
        child = store.models.register(base_model="minilm", artifact_path=None, parent_id=demo, model_id="demo-v1.m1")
        store.models.set_status(demo, "retired")
        store.models.set_status(child, "deployed")
        assert next_week(store, folder) == NextWeek(child, folder / NEXT_WEEK, 1)
        assert next_week(store, tmp_path / "elsewhere") is None
        store.conn.execute("INSERT INTO trace_records (id, ts, model_id, input, prediction, auto_verdict, source, "
                           "content_hash, ingested_at) VALUES ('w0', 't', ?, 'hi', 'a', 'pass', ?, 'h', 'now')",
                           (child, NEXT_WEEK_SOURCE))
        assert next_week(store, folder) is None  # served: it is new traffic only once
        stranger = store.models.register(base_model="minilm", artifact_path=None, model_id="other")
        store.conn.execute("DELETE FROM trace_records")
        store.models.set_status(child, "retired")
        store.models.set_status(stranger, "deployed")
        assert next_week(store, folder) is None  # not the demo's lineage


@pytest.mark.slow
def test_the_promoted_model_answers_next_week_and_its_answers_are_judged_by_the_labels(tmp_path):
    """The tiny-BERT deployment stands in for the demo: a promoted child of its deployed model serves
    next week's requests; each trace is the child's real answer, judged by exact match on the label."""
    from production_fixture import build_template, production_inputs

    template = build_template(tmp_path / "deployment")
    rows = [{"id": f"w{i}", "input": text, "output": gold, "metadata": {}}
            for i, (text, gold) in enumerate(production_inputs(seed=5, per_intent=4))]
    with Store(template.workspace) as store:
        parent = store.models.get(template.model_id)
        child = store.models.register(base_model=parent["base_model"], artifact_path=parent["artifact_path"],
                                      task="classification", parent_id=parent["id"], model_id="run-x.n0001.m1")
        store.models.set_status(parent["id"], "retired")
        store.models.set_status(child, "deployed")
        folder = _demo_folder(tmp_path, template.model_id, rows)
        week = next_week(store, folder)
        assert week is not None and week.model_id == child
        config = serve_next_week(store, week, folder)
        assert config.model == child and next_week(store, folder) is None
        traces = {t["id"]: t for t in store.db.query("SELECT * FROM traces WHERE model_id = ?", [child])}
        answers = load_predictor(parent["artifact_path"]).predict([r["input"] for r in rows])
        primary = {r["id"]: (r, a.output) for r, a in zip(rows, answers, strict=True)}
        assert set(primary) <= set(traces)
        for trace_id, (row, answer) in primary.items():
            trace = traces[trace_id]
            assert trace["prediction"] == answer and trace["source"] == NEXT_WEEK_SOURCE
            assert trace["verdict"] == ("pass" if answer == row["output"] else "fail")
            assert trace["correction"] == (None if answer == row["output"] else row["output"])
