"""Confidence calibration and correction propagation.

A softmax probability says how sure the model is, not how often it is right for that label; blending
it with the label's historical accuracy on judged traces gives a number a threshold (and a person)
can trust. When a person corrects one trace, the same correction is *proposed* for textually
similar traces that made the same mistake; nothing is applied without a person accepting it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from engine.diagnosis.traces import Trace
from engine.records import Prediction, Span
from engine.tasks import task_type


@dataclass(frozen=True)
class LabelCalibrator:
    """calibrated = weight x raw + (1 - weight) x accuracy(label), where accuracy is the label's
    judged accuracy shrunk toward the global accuracy by `prior_strength` pseudo-observations."""

    accuracy: dict[str, float]
    support: dict[str, int]
    global_accuracy: float
    weight: float = 0.5

    @classmethod
    def fit(cls, records: Iterable[tuple[str, bool]], *, weight: float = 0.5,
            prior_strength: float = 2.0) -> LabelCalibrator:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"calibration weight {weight} must be in [0, 1]")
        if prior_strength < 0:
            raise ValueError(f"prior_strength {prior_strength} must be >= 0")
        n, right = Counter(), Counter()
        for label, correct in records:
            n[label] += 1
            right[label] += bool(correct)
        total = sum(n.values())
        glob = sum(right.values()) / total if total else 0.5
        acc = {lab: (right[lab] + prior_strength * glob) / (n[lab] + prior_strength) for lab in n}
        return cls(dict(sorted(acc.items())), dict(sorted(n.items())), glob, weight)

    @classmethod
    def from_traces(cls, traces: Iterable[Trace], *, weight: float = 0.5,
                    prior_strength: float = 2.0) -> LabelCalibrator:
        """Classification: (predicted label, verdict == pass). NER: every predicted span, right when
        the gold output holds it exactly. Generation has no labels to calibrate."""
        records: list[tuple[str, bool]] = []
        for t in traces:
            kind = task_type(t.task)
            if kind.single_label and t.prediction is not None:
                records.append((str(t.prediction), t.verdict == "pass"))
            elif kind.spans and t.gold is not None:
                gold = {(s.start, s.end, s.label) for s in t.gold}
                records += [(s.label, (s.start, s.end, s.label) in gold) for s in t.prediction or ()]
        return cls.fit(records, weight=weight, prior_strength=prior_strength)

    def calibrate(self, label: str, raw: float) -> float:
        acc = self.accuracy.get(label, self.global_accuracy)
        return float(min(1.0, max(0.0, self.weight * raw + (1.0 - self.weight) * acc)))

    def calibrate_prediction(self, prediction: Prediction) -> Prediction:
        out = prediction.output
        if isinstance(out, tuple) and all(isinstance(s, Span) for s in out):
            spans = tuple(replace(s, score=self.calibrate(s.label, s.score)) for s in out)
            conf = min((s.score for s in spans), default=prediction.confidence)
            return Prediction(spans, conf)
        return Prediction(out, self.calibrate(str(out), prediction.confidence))


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf = np.asarray(confidences, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return 0.0
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return float(sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).sum()
                     for b in range(n_bins) if (bins == b).any()) / len(conf))


@dataclass(frozen=True)
class Suggestion:
    """A proposed correction for another trace; the UI shows it, a person accepts or rejects it."""

    trace_id: str
    proposed_output: Any  # JSON form
    similarity: float
    source_trace_id: str


def propose_corrections(corrected: Trace, candidates: Sequence[Trace], *, min_similarity: float = 0.5,
                        limit: int = 20, same_mistake_only: bool = True) -> list[Suggestion]:
    """TF-IDF cosine neighbours of a corrected trace that made the same mistake get the same
    correction proposed. Classification / generation: the same output. NER: the spans the person
    changed, re-anchored on the same surface text in the neighbour (a mistake is the same when the
    neighbour labelled those surface forms as the original did). Never writes anything."""
    if corrected.correction is None:
        raise ValueError(f"trace {corrected.id} has no correction to propagate")
    others = [t for t in candidates if t.id != corrected.id]
    if not others:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        x = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(
            [corrected.input] + [t.input for t in others])
    except ValueError:  # no text features anywhere
        return []
    sims = (x[1:] @ x[0].T).toarray().ravel()
    kind = task_type(corrected.task)
    out = []
    for t, sim in zip(others, sims, strict=True):
        if sim < min_similarity:
            continue
        if kind.spans:
            proposal = _ner_proposal(corrected, t, same_mistake_only)
        elif same_mistake_only and kind.key(t.prediction) != kind.key(corrected.prediction):
            continue
        else:
            proposal = corrected.correction
        current = t.correction if t.correction is not None else t.prediction
        if proposal is None or kind.key(proposal) == kind.key(current):
            continue
        out.append(Suggestion(t.id, kind.to_json(proposal), round(float(sim), 4), corrected.id))
    out.sort(key=lambda s: (-s.similarity, s.trace_id))
    return out[:limit]


def _surface_labels(text: str, spans: Iterable[Span], surfaces: set[str]) -> set[tuple[str, str]]:
    return {(text[s.start:s.end].lower(), s.label) for s in spans if text[s.start:s.end].lower() in surfaces}


def _ner_proposal(corrected: Trace, target: Trace, same_mistake_only: bool) -> tuple[Span, ...] | None:
    key = lambda s: (s.start, s.end, s.label)  # noqa: E731
    pred, gold = corrected.prediction or (), corrected.correction
    changed = {key(s) for s in pred} ^ {key(s) for s in gold}
    surfaces = {corrected.input[a:b].lower() for a, b, _ in changed} - {""}
    low = target.input.lower()
    present = {sf for sf in surfaces if sf in low}
    if not present:
        return None
    target_pred = target.prediction or ()
    if same_mistake_only and (_surface_labels(target.input, target_pred, present)
                              != _surface_labels(corrected.input, pred, present)):
        return None
    spans = {s for s in target_pred if target.input[s.start:s.end].lower() not in present}
    for s in gold:
        surface = corrected.input[s.start:s.end].lower()
        if surface not in present:
            continue
        start = low.find(surface)
        while start >= 0:
            spans.add(Span(start, start + len(surface), s.label))
            start = low.find(surface, start + len(surface))
    return tuple(sorted(spans, key=key))
