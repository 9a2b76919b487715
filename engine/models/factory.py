"""One entry point to train a pipeline's model and record it: pick the backend, train into a temp
folder, evaluate on held-out data when asked, rename into place, register with lineage.

A failed run leaves no artifact (the temp folder is removed) and a registry row with status
'failed', so the search sees the attempt and the database stays consistent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.datasets_io import train_eval_split
from engine.errors import ConfigError
from engine.models.base import Predictor, ProgressCallback, TrainConfig, Trainer, TrainResult
from engine.models.encoder import EncoderTrainer
from engine.models.predictor import CachedPredictor
from engine.models.resolve import ALIASES
from engine.models.runtime import peak_memory_mb
from engine.records import Example
from engine.tasks import task_type
from store import Store
from store.artifacts import atomic_write_dir
from store.jsoncols import new_id


@dataclass
class TrainedModel:
    model_id: str
    artifact_dir: Path
    result: TrainResult
    metrics: dict[str, Any]
    n_eval: int = 0


def trainer_for(task: str, base_model: str = "minilm", **options: Any) -> Trainer:
    """The backend of `task`'s type (encoders for classification / NER, decoders for generation),
    built with `options` (EncoderOptions / DecoderOptions fields; an unknown one is a ConfigError)."""
    backend = task_type(task).backend
    alias = ALIASES.get(base_model.strip().lower())
    if backend == "decoder":
        if alias == "minilm":
            raise ConfigError(f"base model 'minilm' is an encoder: {task} needs a decoder such as 'smollm2'")
        from engine.models.decoder import DecoderTrainer

        return DecoderTrainer(**options)
    if alias == "smollm2":
        raise ConfigError(f"base model 'smollm2' is a decoder: {task} trains an encoder such as 'minilm'")
    return EncoderTrainer(**options)


def evaluate(predictor: Predictor, examples: Sequence[Example], task: str,
             threshold: float | None = None) -> dict[str, float]:
    """Held-out metrics for a task (engine.eval.metrics definitions): the label report of a single-label
    task, the entity report of a span task, exact match and ROUGE-L of free text."""
    from engine.eval import metrics as m

    tt = task_type(task)
    predictions = predictor.predict([ex.input for ex in examples], threshold)
    expected = [ex.output for ex in examples]
    outputs = [p.output for p in predictions]
    if tt.single_label:
        report = m.classification_report(expected, outputs)
        return {"accuracy": report.accuracy, "macro_f1": report.macro_f1, "micro_f1": report.micro_f1}
    if tt.spans:
        ents = m.entity_report(expected, outputs)
        return {"entity_f1": ents.f1, "precision": ents.precision, "recall": ents.recall,
                "tp": ents.counts.tp, "fp": ents.counts.fp, "fn": ents.counts.fn}
    return {"exact_match": m.score(task, "exact_match", expected, outputs).value,
            "rougeL": m.score(task, "rougeL", expected, outputs).value}


def train_and_register(
    store: Store,
    examples: list[Example],
    config: TrainConfig,
    *,
    parent_id: str | None = None,
    dataset_version_id: str | None = None,
    name: str | None = None,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    eval_examples: Sequence[Example] | None = None,
    eval_fraction: float = 0.0,
    trainer: Trainer | None = None,
    model_id: str | None = None,
) -> TrainedModel:
    """Train from the base model, evaluate (on `eval_examples`, or a seeded `eval_fraction` split of
    `examples`), and register the model as `model_id` (default: a new id). A failure is registered
    under that id with status 'failed', then raised."""
    train_set, held_out = list(examples), list(eval_examples or [])
    if not held_out and eval_fraction > 0:
        train_set, held_out = train_eval_split(examples, eval_fraction, config.seed,
                                               by_label=task_type(config.task).single_label)
    model_id = model_id or new_id("m")
    target = store.artifacts / "models" / model_id
    started = time.perf_counter()
    outcome: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        backend = trainer or trainer_for(config.task, config.base_model)
        result = backend.train(train_set, config, Path(tmp), progress, should_stop)
        metrics = dict(result.metrics)
        if held_out:
            predictor = CachedPredictor.for_artifact(tmp, store.cache)
            metrics.update(evaluate(predictor, held_out, config.task, config.threshold))
        outcome.update(result=result, metrics=metrics)

    row = {"base_model": config.base_model, "task": config.task, "method": config.method,
           "parent_id": parent_id, "dataset_version_id": dataset_version_id,
           "hyperparameters": config.to_dict(), "name": name, "model_id": model_id}
    try:
        atomic_write_dir(target, build)
    except BaseException as exc:
        store.models.register(artifact_path=None, status="failed", metrics={"error": f"{type(exc).__name__}: {exc}"},
                              wall_time_s=time.perf_counter() - started, peak_memory_mb=peak_memory_mb(), **row)
        raise
    result: TrainResult = outcome["result"]
    result.artifact_dir = target
    metrics = {**outcome["metrics"], "n_train": result.n_train, "n_eval": len(held_out),
               "n_truncated": result.n_truncated, "steps": result.steps}
    store.models.register(artifact_path=target, metrics=metrics, wall_time_s=time.perf_counter() - started,
                          peak_memory_mb=max(result.peak_memory_mb, peak_memory_mb()), **row)
    return TrainedModel(model_id, target, result, metrics, len(held_out))
