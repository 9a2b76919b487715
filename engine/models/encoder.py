"""Encoder backend: sequence classification and NER on a BERT-family encoder.

Methods: `full` fine-tuning (a classifier's of every weight but a large word-embedding table:
`freeze_large_embedding_table`), `lora` (peft; LoRA on every linear layer of the encoder blocks, the
new classifier head trained in full through modules_to_save), `qlora` (the same on a 4-bit NF4
base: CUDA, or CPU by explicit opt-in) and `linear_probe` (frozen encoder, a linear head fitted on
mean-pooled / per-token features: the design notes' strong, cheap CPU baseline).

Training runs the project's one loop (engine.models.training_loop) rather than transformers.Trainer,
because on a small CPU model the time goes into padding and per-step overhead: batches are
length-grouped and padded only to their own longest row, AdamW is fused, and the loss is read back
only when progress is reported. This module supplies the batches and the loss.

Distillation: examples that carry `teacher` probabilities add `distill_weight` x T^2 x KL(teacher ||
student at temperature T) to their loss (every method, classification). The production loop sets them
on rows the deployed model got right, so the new model keeps the old one's answers there
(positive-congruent "focal distillation", Yan et al., CVPR 2021) while it learns the failures.

Artifacts are standard: transformers `save_pretrained` (full), a PEFT adapter (lora / qlora) or a
`head.safetensors` over the unchanged base (linear_probe), each with the tokenizer and a
`pioneer.json` manifest saying how to load it without this project.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from engine.data.datasets_io import spans_to_bio
from engine.errors import ConfigError, TrainingError
from engine.models import training_loop as loop
from engine.models.base import NEGATIVE_LABELS, ProgressCallback, TrainConfig, TrainResult, write_manifest
from engine.models.batching import pad_batch, sorted_batches
from engine.models.resolve import resolve_model
from engine.models.runtime import autocast, peak_memory_mb, resolve_precision
from engine.records import Example, Span
from engine.tasks import TaskType, task_type
from store.artifacts import atomic_write_dir

PROBE_HEAD = "head.safetensors"
FORMAT_VERSION = 1
HEAD_NAMES = ("classifier", "score")
HEAD_INITS = ("random", "probe")
DISTILL_TEMPERATURE = 2.0  # softens both distributions so the teacher's runner-up labels carry signal


@dataclass(frozen=True)
class EncoderOptions(loop.LoopOptions):
    """Backend settings that are not hyperparameters of the pipeline (they do not change the model
    that a given TrainConfig describes, except `labels` and `head_init`, which are recorded)."""

    head_init: str = "random"
    labels: tuple[str, ...] | None = None
    fallback_label: str | None = None
    allow_cpu_qlora: bool | None = None
    inference_batch_size: int = 64
    probe_max_iter: int = 200
    distill_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        loop.check_fields(self, [
            ("head_init", lambda v: v in HEAD_INITS, f"one of {', '.join(HEAD_INITS)}"),
            ("labels", lambda v: v is None or len(set(v)) == len(v) == len(tuple(v)), "distinct labels"),
            ("fallback_label", lambda v: v is None or isinstance(v, str), "a label or unset"),
            ("inference_batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
            ("probe_max_iter", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
            ("distill_weight", lambda v: 0.0 <= v <= 100.0, "a weight in [0, 100] (1)"),
        ])


# ---------------------------------------------------------------- tokens


@dataclass
class Encoded:
    """Token ids with special tokens; per-token character offsets ((0, 0) for special tokens)."""

    ids: list[list[int]]
    offsets: list[list[tuple[int, int]]] | None
    n_truncated: int = 0


def load_tokenizer(path: str | Path, task: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if task_type(task).spans and not tokenizer.is_fast:
        raise ConfigError(f"{task} needs a fast tokenizer (character offsets); {path} has a slow one")
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"the tokenizer of {path} has no padding token: pick an encoder model")
    return tokenizer


def max_length_for(tokenizer: Any, model_config: Any, requested: int) -> int:
    """The requested max_length capped by what the model's position embeddings can take."""
    limits = [requested, getattr(model_config, "max_position_embeddings", None) or requested]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def encode(tokenizer: Any, texts: Sequence[str], max_length: int, with_offsets: bool = False) -> Encoded:
    """Tokenise with special tokens; rows longer than max_length keep their leading and trailing
    special tokens and lose the end of their text (counted in n_truncated)."""
    enc = tokenizer(list(texts), return_special_tokens_mask=True, return_offsets_mapping=with_offsets,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    ids_out: list[list[int]] = []
    offs_out: list[list[tuple[int, int]]] = []
    truncated = 0
    for row, ids in enumerate(enc["input_ids"]):
        offsets = [tuple(o) for o in enc["offset_mapping"][row]] if with_offsets else None
        if len(ids) > max_length:
            truncated += 1
            special = enc["special_tokens_mask"][row]
            lead = next((i for i, s in enumerate(special) if not s), len(ids))
            trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
            keep = max(max_length - lead - trail, 0)
            cut = slice(0, lead + keep), slice(len(ids) - trail, len(ids))
            ids = ids[cut[0]] + ids[cut[1]]
            if offsets is not None:
                offsets = offsets[cut[0]] + offsets[cut[1]]
        ids_out.append(list(ids))
        if offsets is not None:
            offs_out.append(offsets)
    return Encoded(ids_out, offs_out if with_offsets else None, truncated)


# ---------------------------------------------------------------- labels and NER tags


def tag_names(entity_types: Sequence[str]) -> list[str]:
    return ["O", *(f"{p}-{t}" for t in entity_types for p in ("B", "I"))]


def token_tags(offsets: Sequence[tuple[int, int]], spans: Sequence[Span], tag_ids: dict[str, int]) -> list[int]:
    """Word-piece BIO tag ids for gold spans; special tokens get -100 (ignored by the loss)."""
    tags = spans_to_bio(offsets, spans)
    return [-100 if start == end else tag_ids[tag] for (start, end), tag in zip(offsets, tags, strict=True)]


def decode_spans(
    offsets: Sequence[tuple[int, int]],
    tags: Sequence[str],
    probs: Sequence[float],
    threshold: float | None,
) -> tuple[tuple[Span, ...], float]:
    """Entity spans from per-token tags and the probability of each chosen tag.

    An entity's score is the mean probability of its tokens' tags; it is emitted only when the
    score reaches `threshold`. The sequence confidence is the lowest tag probability in it (the
    least certain decision).
    """
    spans: list[Span] = []
    current: list[Any] | None = None  # [label, start, end, probs]

    def close() -> None:
        if current is not None:
            score = sum(current[3]) / len(current[3])
            if threshold is None or score >= threshold:
                spans.append(Span(current[1], current[2], current[0], score))

    lowest = 1.0
    for (start, end), tag, prob in zip(offsets, tags, probs, strict=True):
        if start == end:
            continue
        lowest = min(lowest, prob)
        prefix, label = tag[0], tag[2:]
        if prefix == "I" and current is not None and current[0] == label:
            current[2], current[3] = end, [*current[3], prob]
            continue
        close()
        current = [label, start, end, [prob]] if prefix in "BI" and tag != "O" else None
    close()
    return tuple(spans), lowest


def check_examples(examples: Sequence[Example], task: str, labels: Sequence[str] | None) -> list[str]:
    """Validate rows for `task` (its task type says what a trainable output is) and return the label
    set (given, else sorted from the data)."""
    if not examples:
        raise TrainingError("no training examples: the dataset is empty; add rows before training")
    tt = task_type(task)
    row_labels: list[tuple[str, ...]] = []
    for i, ex in enumerate(examples):
        name = f"example #{i}" + (f" (id {ex.id})" if ex.id else "")
        if not isinstance(ex.input, str):
            raise TrainingError(f"{name}: input must be text, got {type(ex.input).__name__}")
        try:
            row_labels.append(tt.target_labels(ex.output, ex.input))
        except ValueError as exc:
            raise TrainingError(f"{name}: {exc}") from None
    found = {label for row in row_labels for label in row}
    if labels is None:
        result = sorted(found)
    else:
        result = list(labels)
        unknown = sorted(found - set(result))
        if unknown:
            bad = next(i for i, row in enumerate(row_labels) if unknown[0] in row)
            raise TrainingError(f"example #{bad}: label {unknown[0]!r} is not in the label set "
                                f"({', '.join(result[:10])}{', ...' if len(result) > 10 else ''}); "
                                "fix the row or add the label")
    try:
        tt.check_label_set(result)
    except ValueError as exc:
        raise TrainingError(str(exc)) from None
    return result


def default_fallback(task: str, labels: Sequence[str]) -> str | None:
    """The label a thresholded single-label classifier falls back to: a conventional negative label
    when the set has one (e.g. CLINC150's `oos`); a span tagger falls back to emitting no entity."""
    if not task_type(task).single_label:
        return None
    lowered = {label.lower(): label for label in labels}
    return next((lowered[name] for name in NEGATIVE_LABELS if name in lowered), None)


# ---------------------------------------------------------------- models


FROZEN_TABLE_SHARE = 0.25


def freeze_large_embedding_table(model: Any) -> bool:
    """Freeze the word-embedding table of a full fine-tune when it is at least FROZEN_TABLE_SHARE of the
    weights. Training it costs a dense gradient and an AdamW update of the whole table every step, though
    a few hundred rows touch few of its tokens: in MiniLM it is 11.7M of 22.7M weights, and frozen, a
    full fine-tune trains ~1.25x as fast as a configured Trainer at the same held-out accuracy
    (scripts/bench_encoder.py, the README's figures). A small table costs little to train, and a model
    built from a config (random embeddings, as in the tests) needs it trained. Classification only: on the WNUT-17 production bench
    (scripts/bench_production_ner.py) the frozen table cost the tagger 0.04 entity F1 on the failure set
    and 0.02 on unseen traffic, and its promoted model fell below naive retraining. True when frozen."""
    table = model.get_input_embeddings().weight
    if table.numel() < FROZEN_TABLE_SHARE * sum(p.numel() for p in model.parameters()):
        return False
    table.requires_grad_(False)
    return True


def task_model_class(task: str) -> Any:
    """Token classification for a task whose outputs are spans of the input, else sequence classification."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if task_type(task).spans else AutoModelForSequenceClassification


def label_kwargs(names: Sequence[str]) -> dict[str, Any]:
    return {"num_labels": len(names), "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)}}


class LinearProbeModel(nn.Module):
    """A frozen encoder and a linear head over mean-pooled (sequence) or per-token features."""

    def __init__(self, encoder: nn.Module, classifier: nn.Linear, token_level: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier
        self.token_level = token_level

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.token_level:
            return hidden
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        feats = self.features(input_ids, attention_mask)
        return SequenceClassifierOutput(logits=self.classifier(feats.to(self.classifier.weight.dtype)))


def head_modules(model: nn.Module) -> list[str]:
    return [name for name in HEAD_NAMES if isinstance(getattr(model, name, None), nn.Module)]


def lora_targets(model: nn.Module, heads: Sequence[str]) -> list[str]:
    """Every linear layer outside the task head (attention query/key/value/output and the feed-forward
    denses for BERT): leaf names when they are unambiguous, else full module paths."""
    inside, outside = set(), {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if any(name == h or name.startswith(h + ".") for h in heads):
            inside.add(leaf)
        else:
            outside[name] = leaf
    if not outside:
        raise ConfigError(f"{type(model).__name__} has no linear layers for LoRA: use method='full'")
    leaves = set(outside.values())
    return sorted(leaves) if not leaves & inside else sorted(outside)


def load_quantized(model_cls: Any, path: Path, heads: Sequence[str], device: torch.device,
                   allow_cpu: bool | None, **kwargs: Any) -> Any:
    """The base in 4-bit NF4 with the task head kept in full precision (a 4-bit head cannot train)."""
    from engine.models.qlora import compute_dtype, quantization_config

    qconfig = quantization_config("qlora", device.type, allow_cpu=allow_cpu)
    qconfig.llm_int8_skip_modules = list(heads)
    return model_cls.from_pretrained(str(path), quantization_config=qconfig, device_map={"": device.type},
                                     dtype=compute_dtype(device.type), **kwargs)


def fit_linear_head(
    features: torch.Tensor,
    targets: torch.Tensor,
    n_classes: int,
    *,
    l2: float,
    max_iter: int,
    on_iter: Callable[[int, float], None] | None = None,
    teacher: Distillation | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by L-BFGS on standardised features (as scikit-learn would),
    returned as weight and bias for the raw features so the head is one plain nn.Linear. With a
    `teacher`, its rows are also distilled (see `Distillation.loss`); `weights` scale each item's
    cross-entropy (mean weight 1 keeps the L2's balance)."""
    x = features.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mean) / std
    weight = torch.zeros(n_classes, x.shape[1], requires_grad=True)
    bias = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)
    calls = [0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = x @ weight.T + bias
        ce = F.cross_entropy(logits, targets) if weights is None else \
            (F.cross_entropy(logits, targets, reduction="none") * weights).mean()
        loss = ce + 0.5 * l2 * weight.pow(2).sum()
        if teacher is not None:
            loss = loss + teacher.loss(logits, slice(None))
        loss.backward()
        calls[0] += 1
        if on_iter is not None:
            on_iter(calls[0], loss.item())
        return loss

    with torch.enable_grad():
        opt.step(closure)
    raw_weight = (weight / std).detach()
    return raw_weight, (bias - raw_weight @ mean).detach()


# ---------------------------------------------------------------- batched forward


def iter_batches(
    ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, device: torch.device
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Length-sorted padded batches (longest first) with the original row indices."""
    for idx in sorted_batches([len(x) for x in ids], batch_size):
        batch = pad_batch([ids[i] for i in idx], pad_id)
        yield idx, {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def classifier_inputs(
    model: nn.Module, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int, precision: str,
    on_batch: Callable[[int], None] | None = None,
) -> list[torch.Tensor]:
    """What the model's classifier layer sees for each row (pooled vector or per-token matrix),
    captured with a forward hook, in input order."""
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []
    hook = model.classifier.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    rows: list[torch.Tensor | None] = [None] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision):
            for idx, batch in iter_batches(ids, pad_id, batch_size, device):
                captured.clear()
                model(**batch)
                feats = captured[0].float().cpu()
                for j, i in enumerate(idx):
                    rows[i] = feats[j, :len(ids[i])] if feats.dim() == 3 else feats[j]
                if on_batch is not None:
                    on_batch(len(idx))
    finally:
        hook.remove()
        model.train(was_training)
    return [r for r in rows if r is not None]


# ---------------------------------------------------------------- the trainer


@dataclass
class Distillation:
    """Teacher probabilities for some rows of a training set (`mask`), and the loss's weight."""

    probs: torch.Tensor  # [rows, classes]
    mask: torch.Tensor   # [rows] bool: rows distilled
    weight: float

    @classmethod
    def of(cls, examples: Sequence[Example], n_classes: int, weight: float) -> Distillation | None:
        rows = [ex.teacher for ex in examples]
        if weight <= 0 or all(t is None for t in rows):
            return None
        bad = next((i for i, t in enumerate(rows) if t is not None and len(t) != n_classes), None)
        if bad is not None:
            raise TrainingError(f"example #{bad}: teacher has {len(rows[bad])} probabilities for {n_classes} labels")
        probs = torch.tensor([t if t is not None else [0.0] * n_classes for t in rows], dtype=torch.float32)
        return cls(probs, torch.tensor([t is not None for t in rows]), weight)

    def loss(self, logits: torch.Tensor, rows: Any) -> torch.Tensor:
        """weight x T^2 x KL(teacher || student at T), summed over distilled rows / all rows in `rows`."""
        mask = self.mask[rows].to(logits.device)
        if not bool(mask.any()):
            return logits.new_zeros(())
        t = DISTILL_TEMPERATURE
        student = F.log_softmax(logits.float()[mask] / t, dim=-1)
        teacher = self.probs[rows].to(logits.device)[mask]
        teacher = F.softmax(torch.log(teacher.clamp_min(1e-8)) / t, dim=-1)
        kl = F.kl_div(student, teacher, reduction="sum") * t * t
        return self.weight * kl / mask.numel()


@dataclass
class _Data:
    ids: list[list[int]]
    targets: list[Any]  # int per row (sequence labels) or list of tag ids per token (span tagging)
    n_truncated: int
    teacher: Distillation | None = None
    weights: torch.Tensor | None = None  # per row; None when every row weighs 1


@dataclass
class _Steps:
    """The encoder's part of the training loop (training_loop.Steps): padded batches and their loss."""

    data: _Data
    pad_id: int
    device: torch.device

    def collate(self, rows: list[int]) -> dict[str, Any]:
        batch = pad_batch([self.data.ids[i] for i in rows], self.pad_id, [self.data.targets[i] for i in rows])
        return {**{k: v.to(self.device, non_blocking=True) for k, v in batch.items()}, "rows": rows}

    def loss(self, model: Any, batch: dict[str, Any]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        weights = self.data.weights
        loss = _loss(logits, batch["labels"], None if weights is None else weights[batch["rows"]])
        if self.data.teacher is not None:
            loss = loss + self.data.teacher.loss(logits, torch.tensor(batch["rows"]))
        return loss


class EncoderTrainer:
    """Trainer (engine.models.base) for the encoder task types (classification and NER)."""

    def __init__(self, options: EncoderOptions | None = None, **overrides: Any) -> None:
        self.options = loop.build_options(EncoderOptions, options, overrides)

    def train(
        self,
        examples: list[Example],
        config: TrainConfig,
        out_dir: Path,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        opts = self.options
        tt = task_type(config.task)
        if tt.backend != "encoder":
            raise ConfigError(f"TrainConfig.task={config.task!r}: the encoder backend trains classification "
                              f"and NER; {config.task} needs a {tt.backend}")
        labels = check_examples(examples, config.task, opts.labels)
        fallback = opts.fallback_label if opts.fallback_label is not None else default_fallback(config.task, labels)
        if fallback is not None and tt.single_label and fallback not in labels:
            raise ConfigError(f"fallback label {fallback!r} is not one of the labels")
        started = time.perf_counter()
        device = loop.begin(config, opts)
        precision = resolve_precision(opts.precision, device, "EncoderOptions.precision")
        base_path = resolve_model(config.base_model)
        tokenizer = load_tokenizer(base_path, config.task)
        names = tag_names(labels) if tt.spans else labels

        with loop.oom_as_training_error(config):
            model = self._build(config, tt, base_path, names, device)
            max_length = max_length_for(tokenizer, model.config if hasattr(model, "config") else model.encoder.config,
                                        config.max_length)
            data = self._encode(tokenizer, examples, tt, names, max_length)
            if config.method == "linear_probe":
                steps, metrics = self._fit_probe(model, data, tokenizer.pad_token_id, config, precision, progress,
                                                 should_stop)
            else:
                if opts.head_init == "probe":
                    self._init_head_from_probe(model, data, tokenizer.pad_token_id, len(names), precision)
                if config.method in ("lora", "qlora"):
                    model = self._wrap_lora(model, config, tt)
                stats = loop.fit(model, [len(x) for x in data.ids], _Steps(data, tokenizer.pad_token_id, device),
                                 config, opts, head_names=HEAD_NAMES, progress=progress, should_stop=should_stop)
                steps, metrics = stats.steps, {"train_loss": stats.loss, "train_examples_per_s": stats.examples_per_s,
                                               "padding_fraction": stats.padding_fraction}

        wall = time.perf_counter() - started
        result = TrainResult(
            artifact_dir=Path(out_dir), config=config, labels=labels, metrics=metrics, wall_time_s=wall,
            peak_memory_mb=peak_memory_mb(device.type), n_train=len(examples), n_truncated=data.n_truncated, steps=steps,
        )
        self._save(model, tokenizer, Path(out_dir), result, base_path, names, fallback, max_length, data.teacher,
                   precision)
        return result

    # -- setup

    def _build(self, config: TrainConfig, tt: TaskType, base_path: Path, names: list[str], device: torch.device) -> Any:
        from transformers import AutoModel

        if config.method == "linear_probe":
            encoder = AutoModel.from_pretrained(str(base_path), dtype=torch.float32).to(device)
            encoder.requires_grad_(False)
            head = nn.Linear(encoder.config.hidden_size, len(names)).to(device)
            return LinearProbeModel(encoder, head, token_level=tt.spans).eval()
        cls = task_model_class(config.task)
        if config.method == "qlora":
            model = load_quantized(cls, base_path, HEAD_NAMES, device, self.options.allow_cpu_qlora,
                                   **label_kwargs(names))
            from peft import prepare_model_for_kbit_training

            return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = cls.from_pretrained(str(base_path), dtype=torch.float32, **label_kwargs(names)).to(device)
        if not tt.spans:  # tagging rare tokens leans on their own embeddings (the function says how much)
            freeze_large_embedding_table(model)
        return model

    def _encode(self, tokenizer: Any, examples: list[Example], tt: TaskType, names: list[str],
                max_length: int) -> _Data:
        enc = encode(tokenizer, [ex.input for ex in examples], max_length, with_offsets=tt.spans)
        index = {name: i for i, name in enumerate(names)}
        if tt.spans:
            targets: list[Any] = [token_tags(offs, ex.output, index) for offs, ex in zip(enc.offsets, examples,
                                                                                          strict=True)]
        else:
            targets = [index[ex.output] for ex in examples]
        if not tt.distillable and any(ex.teacher is not None for ex in examples):
            raise ConfigError(f"distillation from a teacher is for classification, not {tt.name}: drop the "
                              "teacher from the rows")
        weights = [float(ex.weight) for ex in examples]
        if any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise TrainingError(f"example #{next(i for i, w in enumerate(weights) if not w > 0)}: a row weight must "
                                "be a finite number > 0")
        return _Data(enc.ids, targets, enc.n_truncated,
                     Distillation.of(examples, len(names), self.options.distill_weight) if tt.distillable else None,
                     None if all(w == 1.0 for w in weights) else torch.tensor(weights))

    def _wrap_lora(self, model: Any, config: TrainConfig, tt: TaskType) -> Any:
        from peft import LoraConfig, TaskType, get_peft_model

        heads = head_modules(model)
        lora = LoraConfig(
            task_type=TaskType.TOKEN_CLS if tt.spans else TaskType.SEQ_CLS,
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=lora_targets(model, heads), modules_to_save=heads,
        )
        return get_peft_model(model, lora)

    def _init_head_from_probe(self, model: Any, data: _Data, pad_id: int, n_classes: int, precision: str) -> None:
        if not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ConfigError("head_init='probe' needs a single linear classifier head (BERT-style): "
                              "use head_init='random' for this model")
        feats = classifier_inputs(model, data.ids, pad_id, self.options.inference_batch_size, precision)
        x, y = _stack_targets(feats, data.targets)
        weight, bias = fit_linear_head(x, y, n_classes, l2=1.0 / len(y), max_iter=self.options.probe_max_iter)
        with torch.no_grad():
            model.classifier.weight.copy_(weight)
            model.classifier.bias.copy_(bias)

    # -- the linear probe: features once, then L-BFGS (the SGD loop does not apply)

    def _fit_probe(self, model: LinearProbeModel, data: _Data, pad_id: int, config: TrainConfig, precision: str,
                   progress: ProgressCallback | None, should_stop: Callable[[], bool] | None) -> tuple[int, dict]:
        opts = self.options
        every = opts.report_every or 10
        n_batches = math.ceil(len(data.ids) / opts.inference_batch_size)
        clock = loop.Clock(n_batches + opts.probe_max_iter, progress)
        done = [0]

        def on_batch(rows: int) -> None:
            done[0] += 1
            clock.examples += rows
            loop.check_stop(should_stop, done[0], clock.total_steps)
            if done[0] % every == 0:
                clock.report(done[0], 0.0, float("nan"))

        feats = classifier_inputs(model, data.ids, pad_id, opts.inference_batch_size, precision, on_batch)
        x, y = _stack_targets(feats, data.targets)
        l2 = config.weight_decay if config.weight_decay > 0 else 1.0 / len(y)
        weights = None if data.weights is None else _item_weights(data)
        losses: list[float] = []

        def on_iter(i: int, loss: float) -> None:
            losses.append(loss)
            if not math.isfinite(loss):
                raise TrainingError(f"linear probe loss became {loss}: check the data for empty inputs")
            if i % every == 0:
                clock.report(n_batches + i, 1.0, loss)

        weight, bias = fit_linear_head(x, y, model.classifier.out_features, l2=l2, max_iter=opts.probe_max_iter,
                                       on_iter=on_iter, teacher=data.teacher, weights=weights)
        with torch.no_grad():
            model.classifier.weight.copy_(weight)
            model.classifier.bias.copy_(bias)
        clock.report(clock.total_steps, 1.0, losses[-1])
        return n_batches + len(losses), {"train_loss": losses[-1],
                                         "train_examples_per_s": len(data.ids) / clock.elapsed()}

    # -- saving

    def _save(self, model: Any, tokenizer: Any, out: Path, result: TrainResult, base_path: Path,
              names: list[str], fallback: str | None, max_length: int, teacher: Distillation | None,
              precision: str) -> None:
        from safetensors.torch import save_file

        config = result.config
        token_level = task_type(config.task).spans

        def build(tmp: Path) -> None:
            if config.method == "linear_probe":
                save_file({"weight": model.classifier.weight.detach().cpu().contiguous(),
                           "bias": model.classifier.bias.detach().cpu().contiguous()}, str(tmp / PROBE_HEAD))
                how = (f"features = AutoModel.from_pretrained(base_model_path) last_hidden_state "
                       f"{'per token' if token_level else 'mean-pooled over the attention mask'}; "
                       "logits = features @ head.weight.T + head.bias (head.safetensors)")
            else:
                model.save_pretrained(str(tmp))
                cls = task_model_class(config.task).__name__
                how = (f"{cls}.from_pretrained(this folder)" if config.method == "full" else
                       f"PeftModel.from_pretrained({cls}.from_pretrained(base_model_path, num_labels={len(names)}), "
                       "this folder)")
            tokenizer.save_pretrained(str(tmp))
            manifest = {
                "format": FORMAT_VERSION, "backend": "encoder", "task": config.task, "method": config.method,
                "base_model": config.base_model, "base_model_path": str(base_path), "labels": result.labels,
                "classes": names, "fallback_label": fallback, "max_length": max_length,
                "precision": precision, "head_init": self.options.head_init,
                "distilled_rows": 0 if teacher is None else int(teacher.mask.sum()),
                "distill_weight": None if teacher is None else teacher.weight,
                "pooling": "mean" if config.method == "linear_probe" and not token_level else None,
                "frozen_word_embeddings": config.method == "full"
                and not model.get_input_embeddings().weight.requires_grad,
                "config": config.to_dict(), "metrics": result.metrics, "n_train": result.n_train,
                "n_truncated": result.n_truncated, "steps": result.steps,
                "wall_time_s": round(result.wall_time_s, 3), "load": how,
            }
            write_manifest(tmp, manifest)

        atomic_write_dir(out, build)


# ---------------------------------------------------------------- helpers


def _loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over labelled positions, each scaled by its row's weight when given; a batch
    with none gives 0, not NaN."""
    flat = labels.reshape(-1)
    if weights is None:
        total = F.cross_entropy(logits.float().reshape(flat.numel(), -1), flat, ignore_index=-100, reduction="sum")
        return total / (flat != -100).sum().clamp_min(1)
    per = F.cross_entropy(logits.float().reshape(flat.numel(), -1), flat, ignore_index=-100, reduction="none")
    scale = weights.to(per.device).reshape(-1, *([1] * (labels.dim() - 1))).expand_as(labels).reshape(-1)
    return (per * scale).sum() / (flat != -100).sum().clamp_min(1)


def _item_weights(data: _Data) -> torch.Tensor:
    """Row weights per item `_stack_targets` stacks: per sequence, or repeated per labelled token."""
    assert data.weights is not None
    if data.targets and isinstance(data.targets[0], int):
        return data.weights
    counts = torch.tensor([sum(1 for t in row if t != -100) for row in data.targets])
    return torch.repeat_interleave(data.weights, counts)


def _stack_targets(feats: list[torch.Tensor], targets: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """One feature row per labelled item: per sequence, or per token with a tag (not -100)."""
    if feats and feats[0].dim() == 1:
        return torch.stack(feats), torch.tensor(targets, dtype=torch.long)
    xs, ys = [], []
    for f, t in zip(feats, targets, strict=True):
        t = torch.tensor(t, dtype=torch.long)
        keep = t != -100
        xs.append(f[keep])
        ys.append(t[keep])
    return torch.cat(xs), torch.cat(ys)
