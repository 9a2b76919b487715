"""Generation: an output is free text, scored by a match, ROUGE, a final number or tests."""

from __future__ import annotations

from typing import ClassVar

from engine.tasks.base import TaskType


class Generation(TaskType):
    name: ClassVar[str] = "generation"
    backend: ClassVar[str] = "decoder"
    default_metric: ClassVar[str] = "exact_match_normalized"
    metrics: ClassVar[tuple[str, ...]] = ("exact_match", "exact_match_normalized", "rouge1", "rouge2", "rougeL",
                                          "final_number", "pass@1", "accuracy")
    generative: ClassVar[bool] = True
