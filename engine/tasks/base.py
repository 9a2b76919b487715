"""What every task type provides (engine.tasks), and the parts most of them share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Errors:
    """How one wrong output counts in the planner's error balance: false positives (said something that
    is not there), false negatives (missed something), and the (expected, predicted) confusions."""

    false_positives: int = 0
    false_negatives: int = 0
    confusions: tuple[tuple[str, str], ...] = ()


class TaskType:
    """The defaults are a free-text task's; subclasses override what their outputs need."""

    name: ClassVar[str]
    backend: ClassVar[str]            # "encoder" | "decoder"
    default_metric: ClassVar[str]     # what production and cold-start score a node with
    metrics: ClassVar[tuple[str, ...]]
    labelled: ClassVar[bool] = False  # outputs carry labels (classes or entity types) a model must know
    label_noun: ClassVar[str] = "labels"  # what a person calls this task's labels
    single_label: ClassVar[bool] = False  # an output is one label (neighbours can vote on it)
    spans: ClassVar[bool] = False  # an output marks spans of its input (surface forms can repeat)
    thresholded: ClassVar[bool] = False  # a confidence threshold applies at inference
    distillable: ClassVar[bool] = False  # focal distillation from the deployed model is implemented
    generative: ClassVar[bool] = False  # the model writes text (so it can be taught to reason first)

    # -- outputs ------------------------------------------------------------------------------
    def parse(self, value: Any, where: str) -> Any:
        """A stored prediction / correction in canonical form; `where` names the field in errors."""
        if value is None or isinstance(value, str):
            return value
        raise ValueError(f"{where}: expected text, got {type(value).__name__}; store the text as a string")

    def key(self, output: Any) -> Any:
        """A hashable form for equality, ignoring scores and incidental whitespace."""
        return None if output is None else " ".join(str(output).split())

    def labels(self, output: Any) -> tuple[str, ...]:
        """The labels an output carries (sorted, unique)."""
        return ()

    def stratum(self, output: Any) -> str:
        """One stratum key per output, for stratified samples."""
        return "all"

    def to_json(self, output: Any) -> Any:
        return output

    def resembles(self, output: Any, targets: Sequence[Any]) -> bool:
        """Whether a known-answer example with `output` shows what failures that should have said
        `targets` need (surgical augmentation picks its targeted examples among these)."""
        return True

    # -- training -----------------------------------------------------------------------------
    def target_labels(self, output: Any, text: str) -> tuple[str, ...]:
        """The labels a training row's `output` teaches (with `text` its input); a ValueError saying
        what is wrong when the row cannot be trained on."""
        if not isinstance(output, str):
            raise ValueError(f"output must be text, got {type(output).__name__}")
        return ()

    def check_label_set(self, labels: Sequence[str]) -> None:
        """A ValueError when a training set's labels are too few to learn this task from."""

    # -- evaluation ---------------------------------------------------------------------------
    def check_metric(self, metric: str) -> None:
        from engine.errors import ConfigError

        if metric not in self.metrics:
            raise ConfigError(f"metric={metric!r} does not apply to task {self.name!r}: use one of "
                              f"{', '.join(self.metrics)}")

    def errors(self, expected: Any, output: Any, negative: str | None) -> Errors:
        """How a wrong `output` counts; `negative` is the label meaning "none of the others", if any."""
        return Errors()
