"""Metrics (engine.eval.metrics) and regression counting (engine.eval.regressions).

Classification figures are checked against scikit-learn on random data; entity F1 on hand-counted
cases and hypothesis properties; ROUGE on strings counted by hand; the GSM extractor on the real
GSM8K test answers when ../shared/data is present.
"""

from __future__ import annotations

import json
import math
import random
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from engine.errors import ConfigError
from engine.eval.metrics import (
    ClassificationReport,
    EntityReport,
    RougeReport,
    as_spans,
    classification_report,
    entity_report,
    exact_match,
    example_correct,
    extract_final_number,
    final_number_match,
    normalize_text,
    rouge_report,
    rouge_scores,
    score,
)
from engine.eval.regressions import compare, correctness
from engine.records import Example, Prediction, Span

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def _random_labels(seed: int, n: int = 200) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    gold_labels = ["a", "b", "c", "d"]
    # "e" only ever appears as a prediction: sklearn counts it in the macro average with F1 0.
    expected = [rng.choice(gold_labels) for _ in range(n)]
    predicted = [e if rng.random() < 0.55 else rng.choice(gold_labels + ["e"]) for e in expected]
    return expected, predicted


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_scikit_learn(seed):
    expected, predicted = _random_labels(seed)
    report = classification_report(expected, predicted)
    assert report.accuracy == pytest.approx(accuracy_score(expected, predicted))
    assert report.macro_f1 == pytest.approx(f1_score(expected, predicted, average="macro", zero_division=0))
    assert report.micro_f1 == pytest.approx(f1_score(expected, predicted, average="micro", zero_division=0))
    labels = sorted(set(expected) | set(predicted))
    p, r, f, s = precision_recall_fscore_support(expected, predicted, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = report.per_label[label]
        assert (got.precision, got.recall, got.f1, got.support) == pytest.approx((p[i], r[i], f[i], s[i]))


@pytest.mark.parametrize("seed", range(3))
def test_restricted_labels_and_positive_label_match_scikit_learn(seed):
    expected, predicted = _random_labels(seed)
    subset = ["a", "c", "e"]
    report = classification_report(expected, predicted, labels=subset)
    assert list(report.per_label) == subset
    assert report.macro_f1 == pytest.approx(
        f1_score(expected, predicted, labels=subset, average="macro", zero_division=0))
    # Restricting labels makes micro F1 differ from accuracy, as in scikit-learn.
    assert report.micro_f1 == pytest.approx(
        f1_score(expected, predicted, labels=subset, average="micro", zero_division=0))
    assert report.micro_f1 != pytest.approx(report.accuracy)
    spam = score("classification", "f1:b", expected, predicted)
    assert spam.value == pytest.approx(f1_score(expected, predicted, labels=["b"], average=None,
                                                zero_division=0)[0])


def test_spam_f1_on_a_hand_counted_case():
    expected = ["spam", "spam", "ham", "ham", "ham", "spam"]
    predicted = ["spam", "ham", "spam", "ham", "ham", "spam"]
    result = score("classification", "f1:spam", expected, predicted)
    # tp 2, fp 1, fn 1 -> P = R = F1 = 2/3
    assert result.value == pytest.approx(2 / 3)
    assert isinstance(result.details, ClassificationReport)
    assert result.details.f1_of("never-seen") == 0.0
    assert score("classification", "accuracy", expected, predicted).value == pytest.approx(4 / 6)


def test_predictions_are_unwrapped():
    predicted = [Prediction("x", 0.9), Prediction("y", 0.6)]
    assert score("classification", "accuracy", ["x", "x"], predicted).value == 0.5
    assert example_correct("classification", "macro_f1", "x", Prediction("x", 0.1))


def test_bad_metric_task_and_lengths_are_rejected():
    with pytest.raises(ConfigError, match="entity_f1.*classification"):
        score("classification", "entity_f1", ["a"], ["a"])
    with pytest.raises(ConfigError, match="task 'summarise' is not a task type"):
        score("summarise", "accuracy", ["a"], ["a"])
    with pytest.raises(ConfigError, match="f1:"):
        score("classification", "f1:", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 expected outputs but 1 predictions"):
        score("classification", "accuracy", ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="0 examples"):
        score("generation", "rougeL", [], [])


# ---------------------------------------------------------------- exact match


def test_exact_match_strict_and_normalised():
    assert exact_match("Paris", "  Paris\n")
    assert not exact_match("Paris", "paris")
    assert exact_match("The Eiffel  Tower!", "eiffel tower", normalize=True)
    assert not exact_match("Eiffel Tower", "Eiffel", normalize=True)
    assert normalize_text("An apple, a day.") == "apple day"
    expected, predicted = ["The cat.", "dog", "Bird"], ["cat", "dog", "fish"]
    assert score("generation", "exact_match", expected, predicted).value == pytest.approx(1 / 3)
    assert score("generation", "exact_match_normalized", expected, predicted).value == pytest.approx(2 / 3)
    assert score("generation", "accuracy", expected, predicted).value == pytest.approx(1 / 3)


# ---------------------------------------------------------------- NER


def test_entity_f1_hand_counted():
    expected = [
        [Span(0, 5, "PER"), Span(10, 15, "LOC")],
        [],
        [],
        [{"start": 3, "end": 8, "label": "ORG"}],
    ]
    predicted = [
        [Span(0, 5, "PER"), Span(10, 14, "LOC"), Span(20, 25, "ORG")],  # 1 tp, boundary miss, extra
        [Span(1, 2, "PER"), Span(4, 6, "LOC")],  # hallucinations on an empty ground truth
        [],
        [{"start": 3, "end": 8, "label": "PER"}],  # right boundaries, wrong type: 1 fp + 1 fn
    ]
    result = score("ner", "entity_f1", expected, predicted)
    report = result.details
    assert isinstance(report, EntityReport)
    assert (report.counts.tp, report.counts.fp, report.counts.fn) == (1, 5, 2)
    assert report.precision == pytest.approx(1 / 6)
    assert report.recall == pytest.approx(1 / 3)
    assert result.value == pytest.approx(2 * 1 / (2 * 1 + 5 + 2))
    assert report.fp_fn_ratio == pytest.approx(2.5)
    assert {k: (c.tp, c.fp, c.fn) for k, c in report.per_type.items()} == {
        "LOC": (0, 2, 1), "ORG": (0, 1, 1), "PER": (1, 2, 0)}
    assert (report.empty_truth_examples, report.hallucinated_examples, report.hallucinated_spans) == (2, 1, 2)
    # accuracy on NER = the whole span set of an example is right (only the empty/empty one here)
    assert score("ner", "accuracy", expected, predicted).value == pytest.approx(1 / 4)


def test_entity_threshold_filters_predicted_spans():
    expected = [[Span(0, 3, "PER"), Span(5, 9, "LOC")]]
    predicted = [[Span(0, 3, "PER", 0.9), Span(5, 9, "LOC", 0.4), Span(12, 15, "ORG", 0.3)]]
    assert entity_report(expected, predicted).f1 == pytest.approx(0.8)  # tp 2, fp 1
    high = entity_report(expected, predicted, min_score=0.5)
    assert (high.counts.tp, high.counts.fp, high.counts.fn) == (1, 0, 1)
    assert high.fp_fn_ratio == 0.0
    assert example_correct("ner", "entity_f1", expected[0], predicted[0], min_score=0.35)
    assert not example_correct("ner", "entity_f1", expected[0], predicted[0], min_score=0.5)


def test_entity_edge_cases():
    nothing = entity_report([[], []], [[], []])
    assert (nothing.f1, nothing.fp_fn_ratio, nothing.hallucinated_examples) == (1.0, None, 0)
    only_fp = entity_report([[]], [[Span(0, 1, "X")]])
    assert only_fp.f1 == 0.0 and math.isinf(only_fp.fp_fn_ratio)
    missed = entity_report([[Span(0, 1, "X")]], [[]])
    assert (missed.precision, missed.recall, missed.f1) == (0.0, 0.0, 0.0)
    duplicated = entity_report([[Span(0, 1, "X")]], [[Span(0, 1, "X"), Span(0, 1, "X", 0.5)]])
    assert (duplicated.counts.tp, duplicated.counts.fp) == (1, 1)
    with pytest.raises(ValueError, match="span #1"):
        as_spans([Span(0, 1, "X"), {"start": 0, "end": 2}])


_spans = st.lists(
    st.builds(Span, st.integers(0, 6), st.integers(7, 9), st.sampled_from(["PER", "LOC", "ORG"])),
    max_size=4,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_spans, _spans), min_size=1, max_size=6))
def test_entity_counts_are_consistent(pairs):
    expected = [g for g, _ in pairs]
    predicted = [p for _, p in pairs]
    report = entity_report(expected, predicted)
    c = report.counts
    assert c.tp + c.fn == sum(len(g) for g in expected)
    assert c.tp + c.fp == sum(len(p) for p in predicted)
    assert sum(t.tp for t in report.per_type.values()) == c.tp
    assert sum(t.fp for t in report.per_type.values()) == c.fp
    assert sum(t.fn for t in report.per_type.values()) == c.fn
    assert 0.0 <= report.f1 <= 1.0
    if c.tp:
        assert report.f1 == pytest.approx(2 * c.precision * c.recall / (c.precision + c.recall))
    assert entity_report(expected, expected).f1 == 1.0
    assert report.hallucinated_spans == sum(len(p) for g, p in pairs if not g)


# ---------------------------------------------------------------- ROUGE


def test_rouge_on_hand_counted_strings():
    scores = rouge_scores("the cat sat on the mat", "the cat on the mat")
    # unigrams: 5 of 5 predicted match, 5 of 6 reference -> F = 10/11; bigrams 3/4 and 3/5 -> 2/3;
    # the longest common subsequence is the 5 predicted words -> same as ROUGE-1 here.
    assert scores == pytest.approx({"rouge1": 10 / 11, "rouge2": 2 / 3, "rougeL": 10 / 11})
    # ROUGE-L differs from ROUGE-1 when order changes: "mat the cat" vs "the cat mat"
    swapped = rouge_scores("the cat mat", "mat the cat")
    assert swapped["rouge1"] == pytest.approx(1.0)
    assert swapped["rougeL"] == pytest.approx(2 / 3)
    assert rouge_scores("Running dogs", "run dog")["rouge1"] == pytest.approx(1.0)  # Porter stemming
    assert rouge_scores("alpha beta", "gamma delta") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_report_averages_and_dispatch():
    expected = ["the cat sat on the mat", "alpha beta"]
    predicted = ["the cat on the mat", "alpha beta"]
    report = rouge_report(expected, predicted)
    assert isinstance(report, RougeReport)
    assert report.rouge2 == pytest.approx((2 / 3 + 1.0) / 2)
    assert score("generation", "rougeL", expected, predicted).value == pytest.approx((10 / 11 + 1) / 2)
    assert example_correct("generation", "rouge2", expected[0], predicted[0])  # 0.667 >= 0.5
    assert not example_correct("generation", "rouge2", expected[0], predicted[0], threshold=0.7)


# ---------------------------------------------------------------- GSM-style final number


@pytest.mark.parametrize(("text", "number"), [
    ("She makes $18 a day.\n#### 18", "18"),
    ("#### 1,234,567", "1234567"),
    ("The answer is $1,234.50.", "1234.5"),
    ("so the total is 18.0", "18"),
    ("it drops by -7 degrees", "-7"),
    ("owes -$3.25", "-3.25"),
    ("first 3 then 4 then 5", "5"),
    ("#### 42\nI hope that helps with 3 things", "42"),
    ("values 1, 2, 3", "3"),
    ("the total is 2,125, so", "2125"),
    ("x.5 is not a number but .5 is", "0.5"),
])
def test_extract_final_number(text, number):
    assert extract_final_number(text) == Decimal(number)


def test_final_number_match():
    assert final_number_match("reasoning\n#### 1,080", "So she pays $1080.00.")
    assert final_number_match(72, "The answer is 72")
    assert not final_number_match("#### 72", "The answer is 720")
    assert not final_number_match("#### 72", "I do not know")
    assert not final_number_match("no number here", "no number here")  # no gold number: never right
    assert extract_final_number("#### 2,1251") is None  # malformed grouping is not a number
    assert extract_final_number("1,2,3") is None
    assert score("generation", "final_number", ["#### 5", "#### 6"], ["5", "7"]).value == 0.5


@pytest.mark.skipif(not GSM8K.exists(), reason="../shared/data/gsm8k not present")
def test_final_number_on_the_gsm8k_test_answers():
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    assert len(rows) == 1319
    for row in rows:
        final = row["answer"].rsplit("####", 1)[1].strip()
        assert extract_final_number(row["answer"]) == Decimal(final.replace(",", "")), row["answer"]
        assert final_number_match(row["answer"], f"The answer is {final}.")
        assert not final_number_match(row["answer"], f"The answer is {final}1.")


# ---------------------------------------------------------------- regressions


def test_compare_counts_regressions_and_fixes():
    before = {"a": True, "b": True, "c": False, "d": False, "e": True}
    after = {"a": True, "b": False, "c": True, "d": False, "e": False}
    report = compare(before, after)
    assert report.count == 2
    assert report.regressed == ("b", "e")
    assert report.fixed == ("c",)
    assert report.n == 5


def test_compare_refuses_different_example_sets():
    with pytest.raises(ValueError, match="new evaluation lacks 1 example id.*'b'"):
        compare({"a": True, "b": True}, {"a": True})
    with pytest.raises(ValueError, match="old evaluation lacks"):
        compare({"a": True}, {"a": True, "z": False})


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.tuples(st.booleans(), st.booleans())))
def test_compare_properties(flags):
    before = {k: b for k, (b, _) in flags.items()}
    after = {k: a for k, (_, a) in flags.items()}
    forward, backward = compare(before, after), compare(after, before)
    assert forward.count == sum(b and not a for b, a in flags.values())
    assert forward.regressed == backward.fixed and forward.fixed == backward.regressed
    assert sum(after.values()) - sum(before.values()) == len(forward.fixed) - forward.count


def test_correctness_maps_feed_the_regression_count():
    examples = [
        Example("Paris is nice", (Span(0, 5, "LOC"),), id="n1"),
        Example("Bob ran", (Span(0, 3, "PER"),), id="n2"),
        Example("nothing here", (), id="n3"),
    ]
    old = [[Span(0, 5, "LOC", 0.9)], [Span(0, 3, "LOC", 0.8)], []]
    new = [[Span(0, 5, "LOC", 0.9)], [Span(0, 3, "PER", 0.8)], [Span(0, 7, "ORG", 0.7)]]
    before = correctness("ner", "entity_f1", examples, old)
    after = correctness("ner", "entity_f1", examples, new)
    assert before == {"n1": True, "n2": False, "n3": True}
    report = compare(before, after)
    assert (report.regressed, report.fixed) == (("n3",), ("n2",))
    # options reach example_correct: a confidence threshold removes the hallucinated span
    assert correctness("ner", "entity_f1", examples, new, min_score=0.75)["n3"] is True


def test_correctness_needs_unique_ids():
    with pytest.raises(ValueError, match="#1 has no id"):
        correctness("classification", "accuracy", [Example("x", "a", id="1"), Example("y", "b")], ["a", "b"])
    with pytest.raises(ValueError, match="'1' appears twice"):
        correctness("classification", "accuracy", [Example("x", "a", id="1")] * 2, ["a", "b"])
