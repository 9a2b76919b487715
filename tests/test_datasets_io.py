import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data.datasets_io import (
    bio_to_spans,
    example_to_row,
    read_examples,
    spans_to_bio,
    train_eval_split,
    whitespace_tokens,
)
from engine.errors import DatasetError
from engine.records import Example, Span


def _write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_classification_rows(tmp_path):
    path = _write(tmp_path, [{"input": "hi", "output": "greet", "id": "a"}, "", {"input": "bye", "output": 3}])
    examples = read_examples(path, "classification")
    assert examples == [Example("hi", "greet", "a"), Example("bye", "3")]


def test_ner_spans_bio_and_tokens_forms_agree(tmp_path):
    text = "alice visited new york today"
    spans = (Span(0, 5, "person"), Span(14, 22, "location"))
    path = _write(tmp_path, [
        {"input": text, "output": [{"start": 14, "end": 22, "label": "location"},
                                   {"start": 0, "end": 5, "label": "person"}]},
        {"input": text, "output": ["B-person", "O", "B-location", "I-location", "O"]},
        {"tokens": text.split(), "output": ["B-person", "O", "B-location", "I-location", "O"]},
        {"input": "alice  visited", "tokens": ["alice", "visited"], "output": ["B-person", "O"]},
    ])
    examples = read_examples(path, "ner")
    assert [ex.output for ex in examples[:3]] == [spans, spans, spans]
    assert examples[3].output == (Span(0, 5, "person"),)


def test_generation_text_and_chat_rows(tmp_path):
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}]
    path = _write(tmp_path, [{"input": "q", "output": "a"}, {"messages": chat}])
    plain, chat_ex = read_examples(path, "generation")
    assert plain == Example("q", "a")
    assert chat_ex.input == "2+2?" and chat_ex.output == "4" and len(chat_ex.messages) == 3


@pytest.mark.parametrize(("task", "row", "needle"), [
    ("classification", {"input": "x"}, "field 'output': missing"),
    ("classification", {"input": 5, "output": "a"}, "field 'input': expected a string"),
    ("classification", {"input": "x", "output": ["a"]}, "field 'output'"),
    ("ner", {"input": "abc", "output": [{"start": 2, "end": 9, "label": "x"}]}, "field 'output[0]'"),
    ("ner", {"input": "a b", "output": ["B-x"]}, "1 tags for 2 tokens"),
    ("ner", {"input": "a b", "output": ["B-x", "Q"]}, "not BIO"),
    ("ner", {"input": "abcdef", "output": [{"start": 0, "end": 4, "label": "x"},
                                          {"start": 2, "end": 6, "label": "y"}]}, "overlap"),
    ("ner", {"input": "a b", "tokens": ["a", "z"], "output": ["O", "O"]}, "field 'tokens'"),
    ("generation", {"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant"),
    ("generation", {"messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role"),
    ("classification", {"messages": [{"role": "user", "content": "hi"}]}, "chat rows are for generation"),
])
def test_errors_name_file_line_and_field(tmp_path, task, row, needle):
    path = _write(tmp_path, [{"input": "ok", "output": "fine"} if task != "ner" else
                             {"input": "ok", "output": []}, row])
    with pytest.raises(DatasetError) as err:
        read_examples(path, task)
    assert f"{path}:2" in str(err.value)
    assert needle in str(err.value)


def test_invalid_json_and_empty_file(tmp_path):
    with pytest.raises(DatasetError, match=r"data.jsonl:1: invalid JSON"):
        read_examples(_write(tmp_path, ["{nope"]), "classification")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_examples(empty, "classification")
    with pytest.raises(DatasetError, match="file not found"):
        read_examples(tmp_path / "missing.jsonl", "classification")


@given(st.lists(st.tuples(st.sampled_from(["O", "B", "I"]), st.sampled_from(["per", "loc"])),
                min_size=1, max_size=25))
@settings(max_examples=100, deadline=None)
def test_bio_span_bio_round_trip(tags_spec):
    words = [f"w{i}" for i in range(len(tags_spec))]
    tags = ["O" if p == "O" else f"{p}-{t}" for p, t in tags_spec]
    _, offsets = whitespace_tokens(" ".join(words))
    spans = bio_to_spans(offsets, tags)
    canonical = spans_to_bio(offsets, spans)
    # Canonical tags are the strict BIO reading of the same spans and map back to them.
    assert bio_to_spans(offsets, canonical) == spans
    assert all(not t.startswith("I-") or canonical[i - 1][2:] == t[2:] for i, t in enumerate(canonical))


def test_example_rows_round_trip(tmp_path):
    ner = [Example("alice ran", (Span(0, 5, "person"),), "x1"), Example("nobody", ())]
    assert read_examples(_write(tmp_path, [example_to_row(ex) for ex in ner], "ner.jsonl"), "ner") == ner
    labels = [Example("hello", "greet")]
    assert read_examples(_write(tmp_path, [example_to_row(ex) for ex in labels]), "classification") == labels


def test_split_is_seeded_and_stratified():
    examples = [Example(f"t{i}", "a" if i % 4 else "b") for i in range(200)]
    train, held = train_eval_split(examples, 0.1, seed=7, by_label=True)
    assert len(held) == 20 and len(train) == 180
    assert sum(ex.output == "b" for ex in held) == 5
    assert train_eval_split(examples, 0.1, seed=7, by_label=True) == (train, held)
    assert set(ex.input for ex in train).isdisjoint(ex.input for ex in held)
