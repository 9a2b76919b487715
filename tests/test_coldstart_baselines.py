"""Baselines on E before training: majority class and nearest centroid on the base encoder's
embeddings (a tiny BERT built from a config), the training lexicon for NER, and a tiny decoder
answering zero- and few-shot through its prompt."""

from __future__ import annotations

import pytest
from tiny_bert import build_tiny_bert, ner_examples, topic_examples
from tiny_decoder import tiny_decoder

from engine.coldstart.analysis import DataSchema, analyse_by_rules
from engine.coldstart.baselines import (
    BaselineReport,
    _FewShot,
    decoder_baselines,
    encoder_baselines,
    majority_class,
    pick_shots,
    training_lexicon,
)
from engine.coldstart.eval_sets import build_held_out_set
from engine.diagnosis.embedders import MiniLMEmbedder
from engine.records import Example


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), hidden_size=32)


def _split(rows, every=4):
    return [r for i, r in enumerate(rows) if i % every], [r for i, r in enumerate(rows) if i % every == 0]


def test_majority_and_nearest_centroid_say_what_they_are_and_score_on_e(bert):
    rows = topic_examples(12)
    train, held = _split(rows)
    analysis = analyse_by_rules("classify requests by topic", DataSchema.of(rows))
    e = build_held_out_set(held, analysis, embedder=None)
    report = encoder_baselines(train, e, analysis, MiniLMEmbedder(model_dir=bert))
    majority, centroid = report.results
    assert majority.name == "majority_class" and "always predicts" in majority.description
    assert majority.score == pytest.approx(1 / 3, abs=0.01)  # balanced topics
    assert centroid.name == "nearest_centroid" and "embedding" in centroid.description
    assert len(centroid.outputs) == len(e) and all(o in analysis.labels for o in centroid.outputs)
    assert sum(centroid.correct) / len(e) == pytest.approx(centroid.score)
    assert all(0 < c <= 1 for c in centroid.confidences)
    assert report.best.score == max(majority.score, centroid.score)
    assert BaselineReport.from_dict(report.to_dict()).best == report.best
    assert "search starts from" in report.markdown()


def test_majority_class_of_a_skewed_detector_scores_zero_f1_on_the_rare_class():
    rows = [Example(f"hi {i}", "ham") for i in range(18)] + [Example(f"win {i}", "spam") for i in range(6)]
    analysis = analyse_by_rules("detect spam", DataSchema.of(rows))
    e = build_held_out_set(rows[::3], analysis, embedder=None)
    result = majority_class(rows, e, analysis)
    assert result.outputs == ["ham"] * len(e) and result.score == 0.0
    assert result.metrics["accuracy"] == pytest.approx(sum(i.expected == "ham" for i in e.items) / len(e))


def test_ner_baselines_are_no_entities_and_the_training_lexicon():
    rows = ner_examples(18)
    train, held = _split(rows, every=4)
    analysis = analyse_by_rules("find people and places", DataSchema.of(rows))
    e = build_held_out_set(held, analysis, embedder=None)
    report = encoder_baselines(train, e, analysis, embedder=None)
    assert [r.name for r in report.results] == ["majority_class", "training_lexicon"]
    assert report.results[0].score == 0.0
    lexicon = training_lexicon(train, e, analysis)
    assert lexicon.score == 1.0 and all(lexicon.correct)  # every held-out name was seen in training


def test_decoder_answers_zero_and_few_shot_through_its_prompt(tmp_path):
    base = tiny_decoder(tmp_path / "llama")
    rows = [Example(f"Calculate {a} + 1.", str(a + 1), f"q{a}") for a in range(9)]
    analysis = analyse_by_rules("calculate sums", DataSchema.of(rows))
    e = build_held_out_set(rows[:3], analysis, embedder=None, adversarial=0)
    report = decoder_baselines(rows[3:], e, analysis, base, system_prompt="Reply with the number.",
                               max_new_tokens=4, shots=2)
    zero, few = report.results
    assert (zero.name, few.name) == ("zero_shot", "few_shot")
    assert "2 training examples" in few.description
    assert len(zero.outputs) == len(few.outputs) == 3
    assert all(isinstance(o, str) for o in zero.outputs)


def test_few_shot_prompts_put_the_shots_before_the_question_as_chat_turns(tmp_path):
    from engine.models.decoder import ChatFormat, load_tokenizer

    tok = load_tokenizer(tiny_decoder(tmp_path / "llama"))
    fmt = ChatFormat(tok, "Reply briefly.", [tok.eos_token_id])
    shots = [Example("Calculate 1 + 1.", "2"), Example("Calculate 2 + 2.", "4")]
    text = tok.decode(_FewShot(fmt, shots).encode_prompt("Calculate 3 + 3."))
    assert text.index("Reply briefly.") < text.index("1 + 1") < text.index("4") < text.index("3 + 3")
    labelled = [Example(f"t{i}", lab) for i, lab in enumerate("aabbbcc")]
    picked = pick_shots(labelled, analyse_by_rules("classify", DataSchema.of(labelled * 3)), 3, seed=0)
    assert sorted(ex.output for ex in picked) == ["a", "b", "c"]
