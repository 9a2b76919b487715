"""Loading trained artifacts as Predictors, fast batched inference, and the prediction cache.

`load_predictor` reads an artifact's `pioneer.json` and returns the matching Predictor (encoder
here; decoders come from engine.models.decoder). Encoder inference tokenises once, runs
length-sorted padded batches under `torch.inference_mode` and restores input order. LoRA adapters
are merged into the base for serving (same outputs, no adapter overhead).

`CachedPredictor` puts any Predictor behind the store's PredictionCache, keyed by the artifact's
content (not its path or registry id), so re-evaluating an unchanged model costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.errors import ConfigError
from engine.models.base import MANIFEST, Predictor
from engine.models.encoder import (
    HEAD_NAMES,
    PROBE_HEAD,
    LinearProbeModel,
    decode_spans,
    encode,
    iter_batches,
    label_kwargs,
    load_quantized,
    load_tokenizer,
    task_model_class,
)
from engine.models.resolve import resolve_model
from engine.models.runtime import autocast, pick_device, resolve_precision
from engine.records import Prediction, Span
from engine.tasks import task_type
from store.artifacts import content_hash, file_hash
from store.traces import PredictionCache

# Manifest fields that describe the run, not the model: they do not change a prediction.
_VOLATILE = ("metrics", "wall_time_s", "created_at")


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    path = Path(artifact_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{artifact_dir} has no {MANIFEST}: not a model trained by pioneer-tui "
                          "(train one with `pioneer-tui train`)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}); the artifact is damaged") from None


def artifact_content_id(artifact_dir: str | Path) -> str:
    """A hash of everything in the artifact that can change a prediction (weights, tokenizer,
    labels, settings), independent of where the folder lives."""
    root = Path(artifact_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_hash(path)}\n".encode())
    manifest = {k: v for k, v in read_manifest(root).items() if k not in _VOLATILE}
    digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class EncoderPredictor:
    """Classification / NER inference for an encoder artifact."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, manifest: dict[str, Any], *,
                 batch_size: int = 64, precision: str | None = None, fallback_label: str | None = None) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} is invalid: use an integer >= 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task: str = manifest["task"]
        self.task_type = task_type(self.task)
        self.labels: list[str] = list(manifest["labels"])
        self.classes: list[str] = list(manifest["classes"])
        self.max_length: int = int(manifest["max_length"])
        self.fallback_label = fallback_label if fallback_label is not None else manifest.get("fallback_label")
        if self.task_type.single_label and self.fallback_label not in (None, *self.labels):
            raise ConfigError(f"fallback label {self.fallback_label!r} is not one of the model's labels")
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.precision = resolve_precision(precision or manifest.get("precision") or "fp32", self.device)

    @property
    def settings(self) -> dict[str, Any]:
        """Load-time choices that change outputs; part of the cache key."""
        return {"precision": self.precision, "fallback_label": self.fallback_label}

    def predict(self, inputs: list[str], threshold: float | None = None) -> list[Prediction]:
        """One Prediction per input, in input order.

        Classification: the top label and its softmax probability; under `threshold` the label
        becomes the fallback label (None when the model has none) and the confidence stays the top
        probability, so the caller sees why. NER: entity spans scoring at least `threshold`.
        """
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold={threshold} is invalid: use a number in [0, 1]")
        if not inputs:
            return []
        ner = self.task_type.spans
        enc = encode(self.tokenizer, inputs, self.max_length, with_offsets=ner)
        rows: list[Any] = [None] * len(inputs)
        with torch.inference_mode(), autocast(self.device, self.precision):
            for idx, batch in iter_batches(enc.ids, self.tokenizer.pad_token_id, self.batch_size, self.device):
                probs = torch.softmax(self.model(**batch).logits.float(), dim=-1)
                conf, top = probs.max(dim=-1)
                conf, top = conf.cpu(), top.cpu()
                for j, i in enumerate(idx):
                    rows[i] = (conf[j, :len(enc.ids[i])], top[j, :len(enc.ids[i])]) if ner else (conf[j], top[j])
        if ner:
            return [self._spans(enc.offsets[i], *rows[i], threshold) for i in range(len(inputs))]
        return [self._label(float(c), int(t), threshold) for c, t in rows]

    def probabilities(self, inputs: Sequence[str]) -> dict[str, list[float]]:
        """Classification: each label's softmax probability per input ({label: [p per input]}), what a
        new model is distilled towards."""
        if not self.task_type.single_label:
            raise ConfigError(f"label probabilities are for single-label classifiers, not {self.task}")
        enc = encode(self.tokenizer, list(inputs), self.max_length)
        rows: list[Any] = [None] * len(inputs)
        with torch.inference_mode(), autocast(self.device, self.precision):
            for idx, batch in iter_batches(enc.ids, self.tokenizer.pad_token_id, self.batch_size, self.device):
                probs = torch.softmax(self.model(**batch).logits.float(), dim=-1).cpu()
                for j, i in enumerate(idx):
                    rows[i] = probs[j]
        table = torch.stack(rows) if rows else torch.zeros(0, len(self.classes))
        return {label: table[:, k].tolist() for k, label in enumerate(self.classes)}

    def _label(self, conf: float, top: int, threshold: float | None) -> Prediction:
        if threshold is not None and conf < threshold:
            return Prediction(self.fallback_label, conf)
        return Prediction(self.classes[top], conf)

    def _spans(self, offsets: list, conf: torch.Tensor, top: torch.Tensor, threshold: float | None) -> Prediction:
        tags = [self.classes[t] for t in top.tolist()]
        spans, lowest = decode_spans(offsets, tags, conf.tolist(), threshold)
        return Prediction(spans, lowest)


def load_encoder_model(artifact_dir: Path, manifest: dict[str, Any], device: torch.device) -> torch.nn.Module:
    from transformers import AutoModel

    method, task, classes = manifest["method"], manifest["task"], manifest["classes"]
    base = Path(manifest["base_model_path"])
    if method != "full" and not (base / "config.json").is_file():
        base = resolve_model(manifest["base_model"])  # the venv (or cache) moved since training
    if method == "full":
        return task_model_class(task).from_pretrained(str(artifact_dir), dtype=torch.float32).to(device)
    if method == "linear_probe":
        from safetensors.torch import load_file

        encoder = AutoModel.from_pretrained(str(base), dtype=torch.float32)
        head = torch.nn.Linear(encoder.config.hidden_size, len(classes))
        head.load_state_dict(load_file(str(artifact_dir / PROBE_HEAD)))
        return LinearProbeModel(encoder, head, token_level=task_type(task).spans).to(device)
    from peft import PeftModel

    cls = task_model_class(task)
    if method == "qlora":  # serve on the same 4-bit base the adapter was trained against
        model = load_quantized(cls, base, HEAD_NAMES, device, allow_cpu=True, **label_kwargs(classes))
        return PeftModel.from_pretrained(model, str(artifact_dir))
    model = cls.from_pretrained(str(base), dtype=torch.float32, **label_kwargs(classes)).to(device)
    return PeftModel.from_pretrained(model, str(artifact_dir)).merge_and_unload()


def load_predictor(artifact_dir: str | Path, *, batch_size: int = 64, precision: str | None = None,
                   fallback_label: str | None = None) -> Predictor:
    """The Predictor for a trained artifact folder (encoder or decoder, from its pioneer.json)."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    if manifest.get("backend") == "decoder":
        from engine.models.decoder import load_decoder_predictor

        return load_decoder_predictor(artifact_dir)
    device = pick_device()
    model = load_encoder_model(artifact_dir, manifest, device)
    tokenizer = load_tokenizer(artifact_dir, manifest["task"])
    return EncoderPredictor(model, tokenizer, manifest, batch_size=batch_size, precision=precision,
                            fallback_label=fallback_label)


# ---------------------------------------------------------------- cache


def encode_output(output: Any) -> str:
    if isinstance(output, tuple | list) and all(isinstance(s, Span) for s in output):
        return json.dumps({"spans": [[s.start, s.end, s.label, s.score] for s in output]})
    return json.dumps({"value": output}, ensure_ascii=False)


def decode_output(text: str) -> Any:
    data = json.loads(text)
    if "spans" in data:
        return tuple(Span(start, end, label, score) for start, end, label, score in data["spans"])
    return data["value"]


def model_key(artifact_dir: str | Path, predictor: Any) -> str:
    """Artifact content plus the predictor's output-changing settings."""
    settings = json.dumps(getattr(predictor, "settings", {}), sort_keys=True, default=str)
    return content_hash(f"{artifact_content_id(artifact_dir)}\0{settings}")


class CachedPredictor:
    """Any Predictor behind PredictionCache: only inputs never seen by this exact model run."""

    def __init__(self, inner: Predictor, cache: PredictionCache, model_key: str) -> None:
        self.inner = inner
        self.cache = cache
        self.model_key = model_key
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_artifact(cls, artifact_dir: str | Path, cache: PredictionCache, **load_kwargs: Any) -> CachedPredictor:
        inner = load_predictor(artifact_dir, **load_kwargs)
        return cls(inner, cache, model_key(artifact_dir, inner))

    @property
    def labels(self) -> list[str]:
        return self.inner.labels

    def predict(self, inputs: Sequence[str], threshold: float | None = None) -> list[Prediction]:
        tkey = "" if threshold is None else repr(float(threshold))
        hashes = [content_hash(text) for text in inputs]
        unique = dict(zip(hashes, inputs, strict=True))
        found = self.cache.get_many(self.model_key, list(unique), tkey)
        missing = [h for h in unique if h not in found]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = self.inner.predict([unique[h] for h in missing], threshold)
            items = [(h, encode_output(p.output), float(p.confidence)) for h, p in zip(missing, fresh, strict=True)]
            self.cache.put_many(self.model_key, items, tkey)
            found.update({h: (text, conf) for h, text, conf in items})
        return [Prediction(decode_output(found[h][0]), found[h][1]) for h in hashes]
