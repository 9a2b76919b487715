"""Regression counting for the gates: r = examples right before and wrong now.

Both sides must cover the same example ids: an example that was right before and is missing now
was not shown to still be right, so a mismatch is an error rather than a silent pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.eval.metrics import example_correct
from engine.records import Example


@dataclass(frozen=True)
class RegressionReport:
    """`regressed`: right before, wrong now. `fixed`: wrong before, right now. Ids in input order."""

    regressed: tuple[str, ...]
    fixed: tuple[str, ...]
    n: int

    @property
    def count(self) -> int:
        return len(self.regressed)


def compare(before: Mapping[str, bool], after: Mapping[str, bool]) -> RegressionReport:
    """Compares two per-example correctness maps keyed by example id."""
    missing = [i for i in before if i not in after]
    extra = [i for i in after if i not in before]
    if missing or extra:
        sample = ", ".join(map(repr, (missing or extra)[:5]))
        side = "the new evaluation lacks" if missing else "the old evaluation lacks"
        raise ValueError(f"regression check: {side} {len(missing or extra)} example id(s) ({sample}); "
                         "evaluate both models on the same regression set")
    regressed = tuple(i for i, ok in before.items() if ok and not after[i])
    fixed = tuple(i for i, ok in before.items() if not ok and after[i])
    return RegressionReport(regressed, fixed, len(before))


def correctness(
    task: str, metric: str, examples: Sequence[Example], predicted: Sequence[Any], **options: Any
) -> dict[str, bool]:
    """{example id: correct} under `metric` (see metrics.example_correct; `options` go to it)."""
    if len(examples) != len(predicted):
        raise ValueError(f"regression check: {len(examples)} examples but {len(predicted)} predictions")
    result: dict[str, bool] = {}
    for index, (example, prediction) in enumerate(zip(examples, predicted, strict=True)):
        if example.id is None:
            raise ValueError(f"regression check: example #{index} has no id; give every evaluation "
                             "example a stable id")
        if example.id in result:
            raise ValueError(f"regression check: example id {example.id!r} appears twice (#{index})")
        result[example.id] = example_correct(task, metric, example.output, prediction, **options)
    return result
