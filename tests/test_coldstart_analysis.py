"""Task analysis: task type, metric and label set from a description and the data's schema, by the
rules or by an LLM (litellm mock_response), with the reason recorded."""

from __future__ import annotations

import json

import pytest

from engine.coldstart.analysis import (
    DataSchema,
    TaskAnalysis,
    analyse,
    analyse_by_rules,
    classify_description,
    system_prompt_for,
)
from engine.errors import ConfigError
from engine.records import Example, Span

DESCRIPTIONS = [
    ("detect spam in SMS messages", "classification"),
    ("classify customer support emails by department", "classification"),
    ("identify the intent of banking chatbot queries", "classification"),
    ("decide whether a product review is positive or negative", "classification"),
    ("route tickets to the right team", "classification"),
    ("flag toxic comments", "classification"),
    ("sentiment of tweets", "classification"),
    ("what is the topic of this article", "classification"),
    ("extract company and person names from news", "ner"),
    ("find all drug names in clinical notes", "ner"),
    ("tag locations and organizations in tweets", "ner"),
    ("recognize people and places in historical letters", "ner"),
    ("named entity recognition for legal contracts", "ner"),
    ("translate English sentences into French", "generation"),
    ("summarize news articles in two sentences", "generation"),
    ("solve grade school math word problems", "generation"),
    ("calculate the result of arithmetic expressions", "generation"),
    ("write a Python function from its docstring", "generation"),
    ("answer questions about our refund policy", "generation"),
    ("convert dates into ISO format", "generation"),
]


@pytest.mark.parametrize(("description", "task"), DESCRIPTIONS)
def test_the_description_alone_names_the_task_type(description, task):
    found, reason = classify_description(description)
    assert found == task, reason
    assert reason


def test_a_description_without_a_task_verb_and_no_data_is_refused_with_what_to_do():
    assert classify_description("stuff about my company")[0] is None
    with pytest.raises(ConfigError, match="pass --data"):
        analyse_by_rules("stuff about my company")


def _schema(rows: list[Example], **kw) -> DataSchema:
    return DataSchema.of(rows, **kw)


SPAM = [Example(f"msg {i}", "spam" if i % 7 == 0 else "ham") for i in range(70)]


def test_binary_detector_scores_f1_of_the_named_class_and_knows_its_negative():
    a = analyse_by_rules("detect spam in SMS messages", _schema(SPAM))
    assert (a.task, a.metric, a.positive_label, a.negative_label) == ("classification", "f1:spam", "spam", "ham")
    assert a.labels == ("ham", "spam")
    assert "F1" in a.reason and a.decided_by == "rules"


def test_balanced_multiclass_uses_accuracy_imbalanced_uses_macro_f1_and_oos_is_the_negative():
    balanced = [Example(f"q{i}", lab) for i in range(30) for lab in ("no", "oos", "yes", "maybe")]
    a = analyse_by_rules("identify the intent of a query", _schema(balanced))
    assert a.metric == "accuracy" and a.negative_label == "oos"  # 'no' is an intent, not 'nothing'
    skewed = [Example(f"q{i}", "a") for i in range(40)] + [Example(f"r{i}", lab) for i in range(4) for lab in "bc"]
    assert analyse_by_rules("categorize the requests", _schema(skewed)).metric == "macro_f1"


def test_the_data_wins_over_the_description_and_the_reason_says_so():
    spans = [Example("alice lives in paris", (Span(0, 5, "person"), Span(15, 20, "location")))] * 5
    a = analyse_by_rules("classify the sentences", _schema(spans))
    assert (a.task, a.metric, a.labels) == ("ner", "entity_f1", ("location", "person"))
    assert "suggested classification" in a.reason and "data decides" in a.reason


def test_generation_metrics_follow_the_answers():
    numbers = [Example(f"Calculate {i} + 1.", str(i + 1)) for i in range(50)]
    a = analyse_by_rules("compute sums", _schema(numbers))
    assert (a.task, a.metric) == ("generation", "exact_match") and "bare number" in a.output_format
    gsm = _schema([Example(f"q{i}", str(i)) for i in range(10)], n_rationales=10)
    a = analyse_by_rules("solve word problems", gsm)
    assert (a.metric, a.reasoning) == ("final_number", True)
    code = _schema([Example("def f():", "    return 1")], format="human-eval")
    assert analyse_by_rules("write python functions", code).metric == "pass@1"
    prose = [Example(f"article {i}", " ".join(["word"] * 30) + str(i)) for i in range(20)]
    assert analyse_by_rules("summarize articles", _schema(prose)).metric == "rougeL"


def test_a_small_repeated_answer_set_is_a_label_set_even_if_numeric():
    ratings = [Example(f"review {i}", str(1 + i % 5)) for i in range(100)]
    a = analyse_by_rules("predict the star rating of a review", _schema(ratings))
    assert a.task == "classification" and a.labels == ("1", "2", "3", "4", "5")
    sums = [Example(f"Calculate {i % 4} + {i % 3}.", str(i % 4 + i % 3)) for i in range(60)]
    assert analyse_by_rules("calculate sums", _schema(sums)).task == "generation"  # computed, not chosen


def test_user_overrides_win_and_are_recorded():
    a = analyse_by_rules("detect spam", _schema(SPAM), metric="accuracy")
    assert a.metric == "accuracy" and "set by the user" in a.reason
    with pytest.raises(ConfigError, match="metric"):
        TaskAnalysis("x", "classification", "rougeL")


def test_analysis_round_trips_and_prompts_state_the_answer_format():
    a = analyse_by_rules("detect spam in SMS messages", _schema(SPAM))
    assert TaskAnalysis.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert "ham, spam" in system_prompt_for(a)
    gen = analyse_by_rules("compute sums", _schema([Example(f"c{i}", str(i)) for i in range(50)]))
    assert "bare number" in system_prompt_for(gen)
    assert "####" in system_prompt_for(gen, "chain_of_thought")


# ---------------------------------------------------------------------------------------------
# The LLM planner's decision (litellm mock_response: the only test double, at the API boundary)
# ---------------------------------------------------------------------------------------------

def _llm(answer: str) -> dict:
    return {"mock_response": answer}


def test_llm_decision_is_used_when_valid_and_records_who_decided():
    answer = json.dumps({"task": "classification", "metric": "f1:spam", "labels": ["ham", "spam"],
                         "positive_label": "spam", "negative_label": "ham", "output_format": "one label",
                         "reason": "spam detection is a binary classification scored on the spam class"})
    a, usage = analyse("flag junk texts", _schema(SPAM), llm="gpt-4o-mini", completion_kwargs=_llm(answer))
    assert (a.task, a.metric, a.negative_label) == ("classification", "f1:spam", "ham")
    assert a.decided_by == "llm:gpt-4o-mini" and "binary" in a.reason
    assert usage.prompt_tokens + usage.completion_tokens > 0


@pytest.mark.parametrize(("answer", "why"), [
    ("this is not json", "JSONDecodeError"),
    (json.dumps({"task": "classification", "metric": "rougeL", "reason": "x"}), "does not apply"),
    (json.dumps({"task": "generation", "metric": "exact_match", "reason": "x"}), None),
    (json.dumps({"task": "classification", "metric": "accuracy", "labels": ["junk"], "reason": "x"}),
     "not in the data"),
])
def test_a_bad_or_contradicted_llm_answer_falls_back_to_the_rules_with_the_reason(answer, why):
    spans = [Example("alice lives in paris", (Span(0, 5, "person"), Span(15, 20, "location")))] * 3
    schema = _schema(spans) if why is None else _schema(SPAM)
    a, _ = analyse("detect spam" if why else "find people", schema, llm="gpt-4o-mini", completion_kwargs=_llm(answer))
    assert a.decided_by.startswith("rules (LLM gpt-4o-mini fell back")
    assert a.task == ("ner" if why is None else "classification")
    if why:
        assert why in a.decided_by
    else:
        assert "entity spans" in a.decided_by
