"""Data types and Protocols shared by every model backend (encoder, decoder).

The search engine and the loops talk to backends only through these, so a backend can be swapped
without touching them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from engine.errors import ConfigError
from engine.records import TASKS, Example, Prediction, Task
from engine.tasks import task_type

Method = Literal["full", "lora", "qlora", "linear_probe"]
METHODS: tuple[str, ...] = ("full", "lora", "qlora", "linear_probe")
# Label names that mean "no intent applies": the fallback below a decision threshold.
NEGATIVE_LABELS = ("oos", "out_of_scope", "out-of-scope", "none", "other", "no_intent", "unknown")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters H of a pipeline; validates itself so a bad value fails before training."""

    task: Task
    base_model: str = "minilm"
    method: Method = "lora"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    learning_rate: float = 5e-4
    head_learning_rate: float | None = None
    batch_size: int = 32
    epochs: float = 3.0
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    threshold: float | None = None
    system_prompt: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.task in TASKS, "task", f"one of {', '.join(TASKS)}"),
            (self.method in METHODS, "method", f"one of {', '.join(METHODS)}"),
            (self.lora_rank >= 1, "lora_rank", "an integer >= 1"),
            (self.lora_alpha >= 1, "lora_alpha", "an integer >= 1"),
            (0.0 <= self.lora_dropout < 1.0, "lora_dropout", "in [0, 1)"),
            (0.0 < self.learning_rate < 1.0 and math.isfinite(self.learning_rate), "learning_rate",
             "a finite number in (0, 1)"),
            (self.head_learning_rate is None or 0.0 < self.head_learning_rate < 10.0,
             "head_learning_rate", "a number in (0, 10) or unset"),
            (self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (0.0 < self.epochs <= 1000, "epochs", "a number in (0, 1000]"),
            (8 <= self.max_length <= 32768, "max_length", "an integer in [8, 32768]"),
            (0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "in [0, 1)"),
            (self.weight_decay >= 0.0, "weight_decay", "a number >= 0"),
            (self.threshold is None or 0.0 <= self.threshold <= 1.0, "threshold", "in [0, 1] or unset"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MANIFEST = "pioneer.json"  # what every trained artifact says about itself (backend, task, config, labels)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8")


def head_init(task: str, method: str, probe_head: bool) -> str:
    """Where a fine-tuned encoder's new head starts: from the linear probe of the same rows for a
    classifier (from a random head the encoder is pulled around while the head catches up: on CLINC30,
    4+ regressions against 2), from random for NER (on WNUT-17 the probe's head made a full fine-tune
    hallucinate: unseen entity F1 0.280 and 67 of 205 regressions against 0.455 and 31, same rows)."""
    single_label = task_type(task).single_label
    return "probe" if probe_head and single_label and method != "linear_probe" else "random"


@dataclass(frozen=True)
class Progress:
    """One training progress report; a UI can draw a progress bar from it."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    examples_per_s: float
    eta_s: float
    tokens_per_s: float = 0.0  # non-padding tokens: a decoder's natural throughput unit


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    """What a training run produced: an artifact directory loadable without this project."""

    artifact_dir: Path
    config: TrainConfig
    labels: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    peak_memory_mb: float = 0.0
    n_train: int = 0
    n_truncated: int = 0
    steps: int = 0


class Trainer(Protocol):
    def train(
        self,
        examples: list[Example],
        config: TrainConfig,
        out_dir: Path,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult: ...


class Predictor(Protocol):
    labels: list[str]

    def predict(self, inputs: list[str], threshold: float | None = None) -> list[Prediction]: ...
