"""NER: an output is a tuple of entity spans (start, end, label)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.records import Span
from engine.tasks.base import Errors, TaskType


class Ner(TaskType):
    name: ClassVar[str] = "ner"
    backend: ClassVar[str] = "encoder"
    default_metric: ClassVar[str] = "accuracy"  # exact span-set match per sentence: what regressions compare
    metrics: ClassVar[tuple[str, ...]] = ("entity_f1", "accuracy")
    labelled: ClassVar[bool] = True
    label_noun: ClassVar[str] = "entity types"
    thresholded: ClassVar[bool] = True
    spans: ClassVar[bool] = True

    def parse(self, value: Any, where: str) -> tuple[Span, ...] | None:
        if value is None:
            return None
        items = value
        if isinstance(value, str):
            try:
                items = json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg}); store NER outputs as a JSON list of "
                                 "{start, end, label} objects") from exc
        if not isinstance(items, list | tuple):
            raise ValueError(f"{where}: expected a JSON list of spans, got {type(items).__name__}")
        spans = []
        for i, item in enumerate(items):
            if isinstance(item, Span):
                spans.append(item)
                continue
            if not isinstance(item, Mapping):
                raise ValueError(f"{where}[{i}]: expected an object with start, end, label")
            label = item.get("label", item.get("type"))
            try:
                start, end = int(item["start"]), int(item["end"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}[{i}]: start and end must be integers") from exc
            if not isinstance(label, str) or not label or end <= start or start < 0:
                raise ValueError(f"{where}[{i}]: needs a non-empty label and 0 <= start < end")
            spans.append(Span(start, end, label, float(item.get("score", 1.0))))
        return tuple(sorted(spans, key=lambda s: (s.start, s.end, s.label)))

    def key(self, output: Any) -> Any:
        return None if output is None else tuple((s.start, s.end, s.label) for s in output)

    def labels(self, output: Any) -> tuple[str, ...]:
        return () if output is None else tuple(sorted({s.label for s in output}))

    def stratum(self, output: Any) -> str:
        """The most frequent entity type (ties alphabetical), 'none' for a sentence without entities."""
        counts = Counter(s.label for s in output or ())
        return min(counts, key=lambda lab: (-counts[lab], lab)) if counts else "none"

    def to_json(self, output: Any) -> Any:
        return None if output is None else [{"start": s.start, "end": s.end, "label": s.label} for s in output]

    def resembles(self, output: Any, targets: Sequence[Any]) -> bool:
        """An entity type in common."""
        return bool(set(self.labels(output)) & {lab for t in targets for lab in self.labels(t)})

    def target_labels(self, output: Any, text: str) -> tuple[str, ...]:
        if not isinstance(output, tuple | list) or not all(isinstance(s, Span) for s in output):
            raise ValueError(f"NER output must be a list of spans, got {type(output).__name__}")
        for s in output:
            if not 0 <= s.start < s.end <= len(text):
                raise ValueError(f"span [{s.start}, {s.end}) lies outside the input (length {len(text)})")
        return self.labels(output)

    def check_label_set(self, labels: Sequence[str]) -> None:
        if not labels:
            raise ValueError("NER data has no entity spans at all: add annotated examples")

    def errors(self, expected: Any, output: Any, negative: str | None) -> Errors:
        """Span-level: hallucinated or mistyped spans are false positives, missed ones false negatives."""
        e = ner_errors(output or (), expected or ())
        return Errors(e.fp, e.fn)


@dataclass(frozen=True)
class NerErrors:
    """Span errors of one output. fp / fn are strict (exact start, end, label); the other fields
    explain them: spurious / missed spans, same boundaries with another type, overlaps of one type."""

    fp: int
    fn: int
    spurious: tuple[Span, ...]
    missed: tuple[Span, ...]
    type_confusions: tuple[tuple[Span, Span], ...]
    boundary: tuple[tuple[Span, Span], ...]
    multi_label: tuple[tuple[int, int, tuple[str, ...]], ...]


def ner_errors(predicted: Sequence[Span], gold: Sequence[Span]) -> NerErrors:
    key = lambda s: (s.start, s.end, s.label)  # noqa: E731
    gold_keys, pred_keys = {key(s) for s in gold}, {key(s) for s in predicted}
    fp = [s for s in predicted if key(s) not in gold_keys]
    fn = [s for s in gold if key(s) not in pred_keys]
    confusions, boundary = [], []
    for g in list(fn):
        match = next((p for p in fp if (p.start, p.end) == (g.start, g.end)), None)
        if match is None:
            match = next((p for p in fp if p.label == g.label and p.start < g.end and g.start < p.end), None)
            if match is not None:
                boundary.append((g, match))
        else:
            confusions.append((g, match))
        if match is not None:
            fn.remove(g)
            fp.remove(match)
    by_offsets: dict[tuple[int, int], set[str]] = defaultdict(set)
    for s in predicted:
        by_offsets[(s.start, s.end)].add(s.label)
    multi = tuple((a, b, tuple(sorted(labs))) for (a, b), labs in sorted(by_offsets.items()) if len(labs) > 1)
    return NerErrors(
        fp=sum(1 for s in predicted if key(s) not in gold_keys),
        fn=sum(1 for s in gold if key(s) not in pred_keys),
        spurious=tuple(fp), missed=tuple(fn), type_confusions=tuple(confusions), boundary=tuple(boundary),
        multi_label=multi)
