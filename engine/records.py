"""The records every layer of the engine passes around: a task's name, a labelled span, a training
row and a model's answer. They sit at the bottom (no engine imports) so that datasets, metrics and task
types can use them without importing a model backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["classification", "ner", "generation"]
TASKS: tuple[str, ...] = ("classification", "ner", "generation")


@dataclass(frozen=True)
class Span:
    """A labelled character span [start, end) of an input (NER)."""

    start: int
    end: int
    label: str
    score: float = 1.0


@dataclass(frozen=True)
class Example:
    """One training or evaluation row.

    `output` is a label (classification), a tuple of Spans (NER) or text (generation).
    `messages` carries an OpenAI-style chat for decoders when the row came in that form.
    `teacher` is another model's probability for each label, in the trainer's label order, that a
    classifier is also distilled towards (focal distillation: set only where that model was right).
    `weight` scales the row's share of the loss (a curriculum's slice shares; 1 for every row by default).
    """

    input: str
    output: Any
    id: str | None = None
    messages: tuple[dict, ...] | None = None
    teacher: tuple[float, ...] | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Prediction:
    """A model's answer with its confidence in [0, 1] (softmax probability; per-span for NER)."""

    output: Any
    confidence: float
