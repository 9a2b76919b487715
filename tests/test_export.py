"""`pioneer-tui export` (issue 17): what the workbench holds leaves as a folder plain libraries load with
the right labels — a full model through `pipeline()`, a LoRA adapter merged or as an adapter naming its
base, a linear probe as a standard model — with a card from the registry and readable permissions.

Fast: models registered with `models add` (no training). Slow: every training method of the tiny BERT,
exported and loaded back in a fresh virtualenv that holds only torch / transformers / peft /
sentence-transformers, whose predictions must be the workbench's own."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_models_add import TOPICS, adapter, classifier
from tiny_bert import build_tiny_bert, ner_examples, topic_examples

from engine.models.base import TrainConfig
from engine.models.decoder import load_decoder_predictor
from engine.models.factory import train_and_register
from engine.models.predictor import load_predictor
from engine.records import Example
from pioneer_tui.cli import main
from store import Store

TEXTS = ["rain today", "play the song", "the team won", "alice lives in paris"]


def cli(tmp_path, *args):
    return main(["--workspace", str(tmp_path / "ws"), *args])


def added(tmp_path, source, *extra):
    assert cli(tmp_path, "models", "add", str(source), "--task", "classification", "--json", *extra) == 0


def test_a_full_model_exports_for_pipeline_with_its_labels_and_a_card(tmp_path, capsys):
    added(tmp_path, classifier(tmp_path / "served"), "--name", "served`v1")
    capsys.readouterr()
    out = tmp_path / "out"
    assert cli(tmp_path, "export", "served`v1", "--to", str(out)) == 0
    assert "pipeline(\"text-classification\"" in capsys.readouterr().out
    from transformers import pipeline

    assert pipeline("text-classification", model=str(out))("rain today")[0]["label"] in TOPICS
    card = (out / "README.md").read_text()
    assert card.startswith("# ``served`v1``") and "accuracy" not in card and "transformers" in card and "imported from" in card
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 and not (out / "pioneer.json").exists()


def test_an_adapter_exports_merged_or_as_an_adapter_over_its_named_base(tmp_path, capsys):
    added(tmp_path, adapter(tmp_path / "adapter"), "--labels", ",".join(TOPICS), "--name", "lora")
    with Store(tmp_path / "ws") as store:
        ours = [p.output for p in load_predictor(store.models.get("lora")["artifact_path"]).predict(TEXTS)]
    assert cli(tmp_path, "export", "lora", "--to", str(tmp_path / "merged")) == 0
    assert run_loader(tmp_path / "merged") == ours
    assert cli(tmp_path, "export", "lora", "--to", str(tmp_path / "peft"), "--format", "peft") == 0
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "adapter-base")  # a folder base stays a folder
    assert run_loader(tmp_path / "peft") == ours


def run_loader(folder) -> list:
    """The card's loading code, run here, and its answers for TEXTS (labels, or tags per text for NER)."""
    scope: dict = {}
    exec(loader_of(folder).replace("FOLDER = '.'", f"FOLDER = {str(folder)!r}"), scope)  # noqa: S102 - our card
    exec(ANSWERS, scope)  # noqa: S102
    return scope["answers"]


NEW_TOKENS = 8
ANSWERS = textwrap.dedent(f"""
    import torch
    TEXTS = {TEXTS!r}
    if "CausalLM" in type(model if "model" in dir() else None).__name__:  # greedy, as the workbench serves
        answers = []
        for text in TEXTS:
            prompt = tokenizer.apply_chat_template([{{"role": "user", "content": text}}], tokenize=False,
                                                   add_generation_prompt=True)
            ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens={NEW_TOKENS}, do_sample=False)
            answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    elif "classify" in dir():
        found = classify(TEXTS)
        answers = [[e["entity"] for e in r] if isinstance(r, list) else r["label"] for r in found]
    elif "labels" in dir():
        answers = [labels[row.argmax()] for row in model.encode(TEXTS)]
    else:
        batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**batch).logits
        answers = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
""")


def loader_of(folder):
    card = (folder / "README.md").read_text()
    return card.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory) -> Path:
    """A new virtualenv holding only torch, transformers, peft and sentence-transformers, at the versions
    tested here (from the index pip uses): what a team's serving machine has, and nothing of this project."""
    from importlib import metadata

    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{p}=={metadata.version(p).split('+')[0]}" for p in ("transformers", "peft", "sentence-transformers")]
    for batch in ([f"torch=={metadata.version('torch').split('+')[0]}"], pins):  # torch first: the CPU build
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *batch],
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-2000:]
    return venv / "bin" / "python"


def predictions_elsewhere(folder, python: Path) -> list:
    """run_loader in another Python (isolated mode, run from the export folder), failing on any import of
    this project: the export must load with the libraries alone."""
    script = textwrap.dedent("""
        import builtins, json
        real = builtins.__import__
        def guard(name, *a, **k):
            if name.split(".")[0] in ("engine", "store", "pioneer_tui", "widgets"):
                raise ImportError("the export needs " + name)
            return real(name, *a, **k)
        builtins.__import__ = guard
    """) + loader_of(folder) + ANSWERS + "\nprint(json.dumps(answers))\n"
    out = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, cwd=folder,
                         timeout=300, env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "gguf"], "llama.cpp"),
    (["--format", "peft"], "not an adapter: export it with --format hf"),
])
def test_what_cannot_be_exported_says_why_in_one_line(tmp_path, capsys, args, message):
    added(tmp_path, classifier(tmp_path / "served"), "--name", "m")
    capsys.readouterr()
    assert cli(tmp_path, "export", "m", "--to", str(tmp_path / "out"), *args) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and message in err and not (tmp_path / "out").exists()


def test_a_non_empty_target_is_refused_and_kept(tmp_path, capsys):
    added(tmp_path, classifier(tmp_path / "served"), "--name", "m")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert cli(tmp_path, "export", "m", "--to", str(tmp_path / "out")) == 2
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


@pytest.mark.slow
@pytest.mark.parametrize(("task", "method"), [("classification", "full"), ("classification", "lora"),
                                              ("classification", "linear_probe"), ("ner", "linear_probe"),
                                              ("ner", "lora"), ("generation", "full"), ("generation", "lora")])
def test_every_trained_method_exports_and_loads_in_a_fresh_virtualenv_with_the_same_answers(tmp_path, task, method,
                                                                                         fresh_python):
    if task == "generation":
        from test_coldstart_mode import tiny_decoder

        base = tiny_decoder(tmp_path / "llama")
        rows = [Example(f"Calculate {a} + {b}.", str(a + b), f"s{a}{b}") for a in range(6) for b in range(4)]
    else:
        base = build_tiny_bert(tmp_path / "base")
        rows = topic_examples(8) if task == "classification" else ner_examples(18)
    with Store(tmp_path / "ws") as store:
        trained = train_and_register(store, rows, TrainConfig(task=task, base_model=str(base), method=method,
                                                              epochs=2.0, batch_size=8, learning_rate=1e-3),
                                     eval_fraction=0.0, name="m")
    predictor = load_decoder_predictor(trained.artifact_dir, max_new_tokens=NEW_TOKENS) if task == "generation" \
        else load_predictor(trained.artifact_dir)
    assert cli(tmp_path, "export", "m", "--to", str(tmp_path / "out")) == 0
    elsewhere = predictions_elsewhere(tmp_path / "out", fresh_python)
    if task != "ner":
        assert elsewhere == [p.output for p in predictor.predict(TEXTS)]
    else:  # a token classifier's tags: B-/I- of the entity types the workbench finds
        assert all(tag[2:] in ("person", "location") for tags in elsewhere for tag in tags)


@pytest.mark.slow
def test_a_model_trained_elsewhere_is_added_improved_and_its_successor_exported(tmp_path, capsys, fresh_python):
    """The issue's path end to end: a plain transformers Trainer trains the model a team serves; `models add`
    brings it in with its data; its judged traffic is ingested; `improve` promotes a better model; `export`
    writes that one, and a separate Python loads it and answers as the workbench does."""
    from production_fixture import SEEN, parent_examples, production_inputs
    from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments

    from engine.data.datasets_io import example_to_row

    base = build_tiny_bert(tmp_path / "bert", hidden_size=64)
    labels = list(SEEN)
    parent = parent_examples(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = BertForSequenceClassification.from_pretrained(str(base), num_labels=len(labels),
                                                          id2label=dict(enumerate(labels)),
                                                          label2id={x: i for i, x in enumerate(labels)})
    rows = [{**tokenizer(ex.input, truncation=True, max_length=32, padding="max_length"),
             "labels": labels.index(ex.output)} for ex in parent]
    Trainer(model=model, args=TrainingArguments(str(tmp_path / "trainer"), num_train_epochs=15, learning_rate=2e-3,
                                                per_device_train_batch_size=8, report_to=[], save_strategy="no",
                                                use_cpu=True, seed=0),
            train_dataset=rows).train()
    model.save_pretrained(str(tmp_path / "served"))
    tokenizer.save_pretrained(str(tmp_path / "served"))
    data = tmp_path / "parent.jsonl"
    data.write_text("".join(json.dumps(example_to_row(ex)) + "\n" for ex in parent))
    assert cli(tmp_path, "models", "add", str(tmp_path / "served"), "--task", "classification", "--data", str(data),
               "--name", "intent-v1") == 0
    with Store(tmp_path / "ws") as store:
        added_row = store.models.get("intent-v1")
    served = load_predictor(added_row["artifact_path"])
    traffic = production_inputs(1)
    traces = tmp_path / "traces.jsonl"
    with traces.open("w") as f:
        for i, ((text, gold), pred) in enumerate(zip(traffic, served.predict([t for t, _ in traffic]), strict=True)):
            ok = pred.output == gold
            f.write(json.dumps({"id": f"t{i}", "ts": f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
                                "input": text, "prediction": pred.output, "verdict": "pass" if ok else "fail",
                                **({} if ok else {"correction": gold})}) + "\n")
    assert cli(tmp_path, "ingest", str(traces), "--map", "model_id=const:intent-v1",
               "--map", "task=const:classification") == 0
    assert cli(tmp_path, "improve", "--model", "intent-v1", "--headless", "--approve", "auto",
               "--max-iterations", "4") == 0
    with Store(tmp_path / "ws") as store:
        promoted = store.models.deployed()
    assert promoted["id"] != added_row["id"] and promoted["parent_id"] == added_row["id"]
    capsys.readouterr()
    assert cli(tmp_path, "export", promoted["id"], "--to", str(tmp_path / "v2")) == 0
    assert predictions_elsewhere(tmp_path / "v2", fresh_python) == [p.output for p in load_predictor(
        promoted["artifact_path"]).predict(TEXTS)]
