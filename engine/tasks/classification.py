"""Classification: an output is one label."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from engine.tasks.base import Errors, TaskType


class Classification(TaskType):
    name: ClassVar[str] = "classification"
    backend: ClassVar[str] = "encoder"
    default_metric: ClassVar[str] = "accuracy"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1", "micro_f1", "f1:<label>")
    labelled: ClassVar[bool] = True
    single_label: ClassVar[bool] = True
    thresholded: ClassVar[bool] = True
    distillable: ClassVar[bool] = True

    def parse(self, value: Any, where: str) -> Any:
        """A label as text; a JSON-quoted label is unquoted; numbers and booleans become their text."""
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if len(text) >= 2 and text[0] == text[-1] == '"':
                try:
                    decoded = json.loads(text)
                except json.JSONDecodeError:
                    return text
                return decoded.strip() if isinstance(decoded, str) else text
            return text
        if isinstance(value, int | float | bool):
            return str(value)
        raise ValueError(f"{where}: expected text, got {type(value).__name__}; store the label as a string")

    def labels(self, output: Any) -> tuple[str, ...]:
        return () if output is None else (str(output),)

    def stratum(self, output: Any) -> str:
        return str(output)

    def resembles(self, output: Any, targets: Sequence[Any]) -> bool:
        """The same label."""
        return self.key(output) in {self.key(t) for t in targets}

    def target_labels(self, output: Any, text: str) -> tuple[str, ...]:
        if not isinstance(output, str) or not output:
            raise ValueError(f"output must be a label string, got {output!r}")
        return (output,)

    def check_label_set(self, labels: Sequence[str]) -> None:
        if len(labels) < 2:
            raise ValueError(f"classification needs at least 2 labels, the data has {list(labels)}: add examples "
                             "of the other classes")

    def errors(self, expected: Any, output: Any, negative: str | None) -> Errors:
        """A missed answer (no output, or the negative label for a real class) is a false negative; the
        negative label's true items said as a class are false positives; every error is a confusion."""
        fn = int(output is None or (negative is not None and output == negative != expected))
        fp = int(not fn and negative is not None and expected == negative)
        return Errors(fp, fn, ((str(expected), str(output)),))
