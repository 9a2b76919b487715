"""`pioneer-tui models add` (issue 17): a model trained elsewhere (a transformers folder, a PEFT LoRA
adapter) is copied, checked by loading and running it, and registered as the deployed model with its
training data as D_parent; each way it can be wrong fails in one line naming what to fix."""

from __future__ import annotations

import json
import stat

import pytest
from tiny_bert import build_tiny_bert, topic_examples

from engine.data.datasets_io import example_to_row
from engine.models.predictor import load_predictor
from pioneer_tui.cli import main
from store import Store

TOPICS = ("weather", "music", "sports")


def classifier(folder, labels=TOPICS, head="seq"):
    """A tiny BERT with a classification head, saved as a plain transformers folder (as a Trainer would)."""
    from transformers import AutoTokenizer, BertForSequenceClassification, BertForTokenClassification

    base = build_tiny_bert(folder.parent / f"{folder.name}-base")
    cls = BertForSequenceClassification if head == "seq" else BertForTokenClassification
    model = cls.from_pretrained(str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
                                label2id={x: i for i, x in enumerate(labels)})
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(folder))
    return folder


def adapter(folder):
    """A LoRA adapter over the tiny BERT (head in modules_to_save), saved by peft: no config.json beside it."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    base = build_tiny_bert(folder.parent / "adapter-base")
    model = BertForSequenceClassification.from_pretrained(str(base), num_labels=3)
    peft = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    peft.save_pretrained(str(folder))
    return folder


def data_file(tmp_path, rows=None):
    path = tmp_path / "d_parent.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows or [example_to_row(ex) for ex in topic_examples(4)]))
    return path


def add(tmp_path, *args):
    return main(["--workspace", str(tmp_path / "ws"), "models", "add", *args])


def test_a_transformers_folder_becomes_the_deployed_model_with_its_data(tmp_path, capsys):
    source = classifier(tmp_path / "served")
    assert add(tmp_path, str(source), "--task", "classification", "--data", str(data_file(tmp_path)),
               "--name", "served-v1") == 0
    out = capsys.readouterr().out
    assert "registered served-v1" in out and "improve --model served-v1" in out
    with Store(tmp_path / "ws") as store:
        row = store.models.get("served-v1")
        assert row["status"] == "deployed" and row["method"] == "full" and "accuracy" in row["metrics"]
        assert len(store.datasets.rows(row["dataset_version_id"])) == 12
        artifact = row["artifact_path"]
    assert stat.S_IMODE((tmp_path / "ws" / "artifacts" / "models" / row["id"]).stat().st_mode) == 0o755
    predictor = load_predictor(artifact)
    assert predictor.labels == list(TOPICS)
    assert predictor.predict(["rain today"])[0].output in TOPICS
    (source / "model.safetensors").unlink()  # the copy is the model: the original may go
    assert load_predictor(artifact).predict(["rain today"])[0].output in TOPICS


def test_a_lora_adapter_needs_its_labels_and_then_loads_over_its_base(tmp_path, capsys):
    source = adapter(tmp_path / "adapter")
    assert add(tmp_path, str(source), "--task", "classification") == 2
    assert "labels are not in its config" in capsys.readouterr().err
    assert add(tmp_path, str(source), "--task", "classification", "--labels", "weather,music") == 2
    assert "--labels names 2 classes but" in capsys.readouterr().err
    assert add(tmp_path, str(source), "--task", "classification", "--labels", ",".join(TOPICS), "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert row["method"] == "lora" and row["status"] == "deployed"
    assert load_predictor(row["artifact_path"]).predict(["song"])[0].output in TOPICS


def test_an_ner_model_reads_entity_types_from_its_bio_tags(tmp_path, capsys):
    source = classifier(tmp_path / "tagger", ("O", "B-person", "I-person", "B-location", "I-location"), head="token")
    assert add(tmp_path, str(source), "--task", "ner", "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert load_predictor(row["artifact_path"]).labels == ["person", "location"]


@pytest.mark.parametrize(("labels", "task", "data", "message"), [
    (("LABEL_0", "LABEL_1"), "classification", None, "set id2label in its config.json"),
    (TOPICS, "ner", None, "has no *ForTokenClassification head"),
    (TOPICS, "generation", None, "has no *ForCausalLM head"),
    (TOPICS, "classification", [{"input": "hi", "output": "greeting"}], "the data's labels greeting are not among"),
])
def test_what_cannot_be_served_fails_in_one_line_and_registers_nothing(tmp_path, capsys, labels, task, data, message):
    source = classifier(tmp_path / "bad", labels)
    extra = ["--data", str(data_file(tmp_path, data))] if data else []
    capsys.readouterr()  # transformers' own progress bars while the source was saved
    assert add(tmp_path, str(source), "--task", task, *extra) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and message in err
    with Store(tmp_path / "ws") as store:
        assert store.models.list() == []
    assert not list((tmp_path / "ws" / "artifacts" / "models").glob("*")) if (tmp_path / "ws" / "artifacts" /
                                                                             "models").exists() else True


def test_a_folder_that_is_not_a_model_says_what_to_point_at(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert add(tmp_path, str(tmp_path / "empty"), "--task", "classification") == 2
    assert "no config.json or adapter_config.json" in capsys.readouterr().err


def test_adding_a_model_retires_the_one_deployed_before(tmp_path, capsys):
    assert add(tmp_path, str(classifier(tmp_path / "v1")), "--task", "classification", "--name", "v1") == 0
    assert add(tmp_path, str(classifier(tmp_path / "v2")), "--task", "classification", "--name", "v2") == 0
    with Store(tmp_path / "ws") as store:
        assert [(m["name"], m["status"]) for m in store.models.list()] == [("v1", "retired"), ("v2", "deployed")]
    capsys.readouterr()
    assert add(tmp_path, str(classifier(tmp_path / "v3")), "--task", "classification", "--name", "v1") == 2
    assert "--name v1 is taken by model" in capsys.readouterr().err


def test_traces_already_ingested_under_the_name_must_be_answers_the_model_can_give(tmp_path, capsys):
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"id": "t1", "ts": "2026-11-01T00:00:00Z", "model_id": "v9", "input": "hi",
                                  "prediction": "greeting", "verdict": "pass", "task": "classification"}) + "\n")
    assert main(["--workspace", str(tmp_path / "ws"), "ingest", str(traces)]) == 0
    source = classifier(tmp_path / "v9")
    capsys.readouterr()
    assert add(tmp_path, str(source), "--task", "classification", "--name", "v9") == 2
    err = capsys.readouterr().err
    assert "the traces of v9 predict greeting, which this model cannot output" in err
