"""The task types (engine.tasks): each owns how its outputs are parsed, keyed, labelled, stratified,
serialised and counted as errors, and says what it can do; the engine asks them instead of branching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.records import Span
from engine.tasks import TASK_TYPES, task_type


def test_the_registry_names_every_task_and_refuses_others():
    assert list(TASK_TYPES) == ["classification", "ner", "generation"]
    assert {t.backend for t in TASK_TYPES.values()} == {"encoder", "decoder"}
    with pytest.raises(ConfigError, match="task 'summarise' is not a task type: use one of classification"):
        task_type("summarise")


def test_classification_outputs_are_one_label():
    c = task_type("classification")
    assert c.parse(' "book_flight" ', "x") == "book_flight" and c.parse(3, "x") == "3" and c.parse(None, "x") is None
    with pytest.raises(ValueError, match="x: expected text, got list"):
        c.parse(["a"], "x")
    assert (c.key("book  flight"), c.labels("a"), c.stratum("a"), c.to_json("a")) == ("book flight", ("a",), "a", "a")
    assert c.resembles("a", ["a", "b"]) and not c.resembles("c", ["a", "b"])
    assert c.single_label and c.labelled and c.thresholded and c.distillable and not c.generative


def test_ner_outputs_are_span_sets():
    n = task_type("ner")
    spans = n.parse('[{"start": 5, "end": 10, "label": "LOC"}, {"start": 0, "end": 4, "label": "PER"}]', "x")
    assert [s.label for s in spans] == ["PER", "LOC"]  # sorted by position
    assert n.key(spans) == ((0, 4, "PER"), (5, 10, "LOC")) and n.labels(spans) == ("LOC", "PER")
    assert n.stratum(spans) == "LOC" and n.stratum(()) == "none"  # most frequent type, ties alphabetical
    assert n.parse(n.to_json(spans), "x") == spans
    with pytest.raises(ValueError, match=r"x\[0\]: needs a non-empty label"):
        n.parse([{"start": 3, "end": 1, "label": "X"}], "x")
    assert n.resembles((Span(0, 2, "PER"),), [spans]) and not n.resembles((Span(0, 2, "ORG"),), [spans])
    assert n.spans and not n.single_label


def test_errors_count_as_each_task_counts_them():
    c, n = task_type("classification"), task_type("ner")
    assert c.errors("book_flight", "oos", "oos").false_negatives == 1  # a real intent said as none
    assert c.errors("oos", "book_flight", "oos").false_positives == 1
    assert c.errors("a", "b", None).confusions == (("a", "b"),)
    hallucinated = n.errors((), (Span(0, 3, "PER"),), None)
    missed = n.errors((Span(0, 3, "PER"),), (), None)
    assert (hallucinated.false_positives, missed.false_negatives) == (1, 1)
    assert task_type("generation").errors("x", "y", None).confusions == ()


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(1, 20), st.sampled_from(["PER", "LOC", "ORG"])),
                max_size=6))
def test_ner_json_round_trips(items):
    n = task_type("ner")
    spans = n.parse([{"start": a, "end": a + w, "label": lab} for a, w, lab in items], "x")
    assert n.key(n.parse(n.to_json(spans), "y")) == n.key(spans)
