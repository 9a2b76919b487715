"""A Trainer double at the trainer boundary (engine.models.base.Trainer) for mode-logic tests that must not
train: it "learns" its rows as a lookup table (an input seen in training gets its output; any other input
gets the output of the training row sharing the most words with it, else the most common output), reports
progress step by step and honours `should_stop` like the real trainers, and writes the table as its artifact.

`use_fake_trainer(monkeypatch)` routes engine.models.factory.trainer_for and the cold-start runner's model
loading to it; everything else (setup, E, curricula, the loop, the registry, events) is the real thing.
The real trainers have their own (slow) tests.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import TrainingError
from engine.models.base import Progress, ProgressCallback, TrainConfig, TrainResult
from engine.records import Example, Prediction

ARTIFACT = "fake-model.json"


class FakeTrainer:
    def __init__(self) -> None:
        self.trained: list[int] = []  # rows per finished training run

    def train(self, examples: list[Example], config: TrainConfig, out_dir: Path,
              progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None) -> TrainResult:
        if not examples:
            raise TrainingError("dataset is empty")
        total = max(1, math.ceil(config.epochs * math.ceil(len(examples) / config.batch_size)))
        for step in range(1, total + 1):
            if should_stop is not None and should_stop():
                raise TrainingError(f"stopped on request at step {step}/{total}; nothing was saved")
            if progress is not None:
                progress(Progress(step, total, step * config.epochs / total, 1.0 / step, 1000.0,
                                  0.001 * (total - step)))
        outputs = [_key(ex.output) for ex in examples]
        table = {"rows": [[ex.input, out] for ex, out in zip(examples, outputs, strict=True)],
                 "majority": Counter(outputs).most_common(1)[0][0], "method": config.method}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ARTIFACT).write_text(json.dumps(table), encoding="utf-8")
        self.trained.append(len(examples))
        labels = sorted({o for o in outputs if isinstance(o, str)})
        return TrainResult(out_dir, config, labels, metrics={"train_loss": 1.0 / total}, n_train=len(examples),
                           steps=total)


class FakePredictor:
    def __init__(self, artifact: str | Path) -> None:
        table = json.loads((Path(artifact) / ARTIFACT).read_text(encoding="utf-8"))
        self.rows: list[tuple[str, Any]] = [(i, o) for i, o in table["rows"]]
        self.majority = table["majority"]
        self.labels = sorted({o for _, o in self.rows if isinstance(o, str)})

    def predict(self, inputs: list[str], threshold: float | None = None) -> list[Prediction]:
        return [self._one(text) for text in inputs]

    def _one(self, text: str) -> Prediction:
        words = set(text.lower().split())
        best, overlap = self.majority, 0
        for row_input, output in self.rows:
            if row_input == text:
                return Prediction(output, 1.0)
            shared = len(words & set(row_input.lower().split()))
            if shared > overlap:
                best, overlap = output, shared
        return Prediction(best, 0.9 if overlap else 0.5)


def _key(output: Any) -> Any:
    return output if isinstance(output, str) else json.dumps(output, default=str)


def use_fake_trainer(monkeypatch) -> FakeTrainer:
    """Every trainer the engine asks for is one FakeTrainer (returned); the cold-start runner loads its tables."""
    from engine.coldstart.runner import ColdStartRunner

    trainer = FakeTrainer()
    monkeypatch.setattr("engine.models.factory.trainer_for", lambda *args, **options: trainer)
    monkeypatch.setattr(ColdStartRunner, "_predictor", lambda self, artifact, node: FakePredictor(artifact))
    return trainer
