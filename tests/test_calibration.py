"""Per-label accuracy blended with raw confidence, and correction propagation by TF-IDF similarity
(suggestions only)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.diagnosis.calibration import LabelCalibrator, expected_calibration_error, propose_corrections
from engine.diagnosis.traces import Trace
from engine.records import Prediction, Span


def test_blend_formula_weights_and_unknown_labels():
    records = [("A", True)] * 9 + [("A", False)] + [("B", True)] * 4 + [("B", False)] * 6
    cal = LabelCalibrator.fit(records, weight=0.5, prior_strength=0.0)
    assert cal.accuracy == {"A": 0.9, "B": 0.4} and cal.global_accuracy == pytest.approx(0.65)
    assert cal.calibrate("A", 0.9) == pytest.approx(0.9)
    assert cal.calibrate("B", 0.9) == pytest.approx(0.65)
    assert cal.calibrate("never_seen", 0.9) == pytest.approx(0.5 * 0.9 + 0.5 * 0.65)
    assert LabelCalibrator.fit(records, weight=1.0).calibrate("B", 0.9) == pytest.approx(0.9)
    assert LabelCalibrator.fit(records, weight=0.0, prior_strength=0.0).calibrate("B", 0.9) == pytest.approx(0.4)
    shrunk = LabelCalibrator.fit(records, prior_strength=10.0)
    assert 0.4 < shrunk.accuracy["B"] < 0.65  # few observations lean on the global accuracy
    with pytest.raises(ValueError, match="weight"):
        LabelCalibrator.fit(records, weight=1.5)


def test_calibration_lowers_expected_calibration_error_for_an_overconfident_label():
    rng = np.random.default_rng(0)

    def sample(n):
        labels = rng.choice(["good", "bad"], size=n)
        raw = np.where(labels == "good", rng.uniform(0.85, 0.99, n), rng.uniform(0.85, 0.99, n))
        correct = np.where(labels == "good", rng.random(n) < 0.92, rng.random(n) < 0.45)
        return labels, raw, correct

    labels, _, correct = sample(2000)
    cal = LabelCalibrator.fit(zip(labels, correct, strict=True), weight=0.3)
    labels, raw, correct = sample(2000)
    calibrated = [cal.calibrate(lab, r) for lab, r in zip(labels, raw, strict=True)]
    before = expected_calibration_error(raw, correct)
    after = expected_calibration_error(calibrated, correct)
    assert after < before / 2, (before, after)
    assert expected_calibration_error([], []) == 0.0


def test_from_traces_for_classification_and_ner():
    traces = [Trace(f"p{i}", "x", "A", None, "pass", "classification") for i in range(3)]
    traces += [Trace("f", "y", "A", "B", "fail", "classification")]
    cal = LabelCalibrator.from_traces(traces, prior_strength=0.0)
    assert cal.accuracy == {"A": 0.75} and cal.support == {"A": 4}
    ner = [Trace("n", "Paris and Rome", (Span(0, 5, "location"), Span(10, 14, "person")),
                 (Span(0, 5, "location"), Span(10, 14, "location")), "fail", "ner")]
    ncal = LabelCalibrator.from_traces(ner, prior_strength=0.0)
    assert ncal.accuracy == {"location": 1.0, "person": 0.0}
    pred = ncal.calibrate_prediction(Prediction((Span(0, 5, "location", 0.8), Span(10, 14, "person", 0.8)), 0.8))
    assert [s.score for s in pred.output] == pytest.approx([0.9, 0.4]) and pred.confidence == pytest.approx(0.4)
    assert cal.calibrate_prediction(Prediction("A", 1.0)).confidence == pytest.approx(0.875)


def test_correction_propagation_proposes_for_similar_same_mistake_traces_only():
    corrected = Trace("c", "change the app language to french", "translate", "change_language", "fail",
                      "classification", human_verdict="fail")
    others = [
        Trace("near", "change the app language to german", "translate", None, "pass", "classification"),
        Trace("other_pred", "change the app language to greek", "weather", None, "pass", "classification"),
        Trace("done", "change the app language to dutch", "translate", "change_language", "fail", "classification"),
        Trace("far", "how much is a flight to tokyo", "translate", None, "pass", "classification"),
        corrected,
    ]
    before = [json.dumps(t.__dict__, default=str, sort_keys=True) for t in others]
    suggestions = propose_corrections(corrected, others)
    assert [s.trace_id for s in suggestions] == ["near"]
    s = suggestions[0]
    assert s.proposed_output == "change_language" and s.source_trace_id == "c" and s.similarity >= 0.5
    loose = propose_corrections(corrected, others, same_mistake_only=False)
    assert {x.trace_id for x in loose} == {"near", "other_pred"}
    assert loose == sorted(loose, key=lambda x: -x.similarity)
    assert propose_corrections(corrected, others, min_similarity=0.99) == []
    assert [json.dumps(t.__dict__, default=str, sort_keys=True) for t in others] == before  # nothing applied
    with pytest.raises(ValueError, match="no correction"):
        propose_corrections(Trace("z", "x", "a", None, "fail", "classification"), others)


def test_ner_correction_propagation_reanchors_spans_on_the_same_surface_text():
    corrected = Trace("c", "I love Apple products", (Span(7, 12, "location"),), (Span(7, 12, "corporation"),),
                      "fail", "ner")
    similar = Trace("s", "We love Apple products a lot", (Span(8, 13, "location"),), None, "pass", "ner")
    different_mistake = Trace("d", "I love Apple products", (Span(7, 12, "person"),), None, "pass", "ner")
    no_surface = Trace("n", "I love Pear products", (Span(7, 11, "location"),), None, "pass", "ner")
    out = propose_corrections(corrected, [similar, different_mistake, no_surface], min_similarity=0.3)
    assert [s.trace_id for s in out] == ["s"]
    assert out[0].proposed_output == [{"start": 8, "end": 13, "label": "corporation"}]
