"""The held-out set E (built before training, never trained on, checked by hash), its subsets and
coverage, scoring on it, and D_cold (65:35 gold:hard under the quality controls, never overlapping E)."""

from __future__ import annotations

import random

import pytest

from engine.coldstart.analysis import DataSchema, analyse_by_rules
from engine.coldstart.curriculum import build_cold_curriculum
from engine.coldstart.eval_sets import (
    HeldOutSet,
    build_held_out_set,
    check_disjoint,
    check_unchanged,
    score_held_out,
    split_held_out,
)
from engine.coldstart.registry import LoadedData
from engine.data.quality import input_hash
from engine.diagnosis.embedders import fitted_tfidf
from engine.errors import LeakageError
from engine.records import Example, Span
from engine.search.pipeline import DatasetSpec

HAM = ["see you at {} tonight", "can you pick up milk at {}", "running late, meet at {}", "call me when at {}",
       "dinner at {} was lovely", "are we still on for {}"]
SPAM = ["WIN a free prize at {} now", "URGENT claim your cash reward {}", "free entry to win {} text WIN",
        "you have been selected for a {} prize call now"]
PLACES = ["home", "work", "the park", "noon", "six", "the station", "mum's", "the gym", "school", "the pub"]


def sms_data(n_places: int = 10) -> LoadedData:
    rows = []
    for i, place in enumerate(PLACES[:n_places]):
        rows += [Example(t.format(place), "ham", f"train:h{i}:{j}") for j, t in enumerate(HAM)]
        rows += [Example(t.format(place), "spam", f"train:s{i}:{j}") for j, t in enumerate(SPAM)]
    rows.append(Example("See you at home tonight!!", "ham", "train:dup"))  # a normalised duplicate
    return LoadedData("sms", "test", "tsv", {"train": rows})


def spam_analysis(data: LoadedData):
    return analyse_by_rules("detect spam in SMS messages", DataSchema.of(data.train))


def embedder_for(data: LoadedData):
    return fitted_tfidf([ex.input for ex in data.train])


def test_split_is_stratified_and_the_pool_never_shares_a_normalised_input_with_e():
    data = sms_data()
    analysis = spam_analysis(data)
    pool, held, info = split_held_out(data, analysis, fraction=0.2, seed=3)
    assert abs(len(held) - 0.2 * len(data.train)) <= 2
    assert {ex.output for ex in held} == {"ham", "spam"}
    assert not {input_hash(ex.input) for ex in pool} & {input_hash(ex.input) for ex in held}
    assert info["held_out"] == len(held) and info["pool"] == len(pool)
    assert len(pool) + len(held) + info["pool_duplicates_removed"] == len(data.train)


def test_a_validation_split_becomes_e_and_max_items_samples_it_stratified():
    data = sms_data()
    data.splits["validation"] = data.splits["train"][:30]
    data.splits["train"] = data.splits["train"][20:]
    pool, held, info = split_held_out(data, spam_analysis(data), max_items=10, seed=0)
    assert "validation split" in info["source"] and len(held) == 10
    assert {ex.output for ex in held} == {"ham", "spam"}
    held_hashes = {input_hash(ex.input) for ex in held}
    overlap = sum(input_hash(ex.input) in held_hashes for ex in data.train)
    assert overlap and info["pool_duplicates_removed"] == overlap  # E's items that were also training rows
    assert not {input_hash(ex.input) for ex in pool} & held_hashes


def test_subsets_cover_every_label_tag_negatives_and_pair_confusable_items():
    data = sms_data()
    analysis = spam_analysis(data)
    _, held, _ = split_held_out(data, analysis, seed=0)
    e = build_held_out_set(held, analysis, embedder=embedder_for(data), boundary_share=0.4, labels=analysis.labels)
    by_id = {i.id: i for i in e.items}
    assert e.report["neg_kind"] == "class 'ham'"
    assert all(i.expected == "ham" for i in e.subset("neg"))
    assert e.report["pos_covers"] == e.report["labels"] == 1 and e.report["missing_labels"] == []
    pairs = e.subset("boundary")
    assert pairs and e.report["boundary"] == len(pairs) == 2 * e.report["boundary_pairs"]
    for item in pairs:
        partner = by_id[item.partner]
        assert partner.partner == item.id and partner.expected != item.expected
        assert item.similarity == partner.similarity and item.similarity > 0
    assert e.report["size"] == len(e) == len(held)
    assert e.report["pos"] + e.report["neg"] + e.report["boundary"] == len(e)


def test_ner_negatives_are_sentences_without_entities():
    rows = [Example(f"{p} lives in {c}", (Span(0, len(p), "person"), Span(len(p) + 10, len(p) + 10 + len(c),
                                                                             "location")), f"r{i}")
            for i, (p, c) in enumerate([("alice", "paris"), ("bob", "rome"), ("carol", "oslo"), ("dan", "lima")])]
    rows += [Example(f"nothing to see here {i}", (), f"n{i}") for i in range(4)]
    analysis = analyse_by_rules("find people and places", DataSchema.of(rows))
    e = build_held_out_set(rows, analysis, embedder=fitted_tfidf([r.input for r in rows]), boundary_share=0.0)
    assert {i.id for i in e.subset("neg")} == {f"n{i}" for i in range(4)}
    assert e.report["pos_covers"] == 2 and e.report["neg_kind"] == "sentences without entities"


def test_generation_negatives_are_adversarial_rewrites_that_keep_the_answer():
    rows = [Example(f"Calculate {a} + {b}.", str(a + b), f"q{a}-{b}") for a in range(6) for b in range(3)]
    analysis = analyse_by_rules("calculate sums", DataSchema.of(rows))
    e = build_held_out_set(rows, analysis, embedder=fitted_tfidf([r.input for r in rows]), adversarial=12, seed=1)
    adversarial = e.subset("neg")
    assert adversarial and all(i.id.startswith("adv:") for i in adversarial)
    original = {ex.id: ex for ex in rows}
    for item in adversarial:
        source = original[item.id.removeprefix("adv:")]
        assert item.expected == source.output and item.input != source.input
        assert source.input.rstrip(".").lower() in item.input.lower()


def test_guards_catch_a_training_row_from_e_even_after_normalisation_and_any_change_to_e():
    data = sms_data()
    analysis = spam_analysis(data)
    _, held, _ = split_held_out(data, analysis, seed=0)
    e = build_held_out_set(held, analysis, embedder=None)
    recorded = e.content_hash()
    sneaky = {"id": "gold:x", "input": "  " + held[0].input.upper() + "!! ", "output": held[0].output}
    with pytest.raises(LeakageError, match="row 1 .*held-out evaluation set"):
        check_disjoint(e, [{"input": "fresh text"}, sneaky])
    check_unchanged(e, recorded)
    e.items.pop()
    with pytest.raises(LeakageError, match="changed since it was built"):
        check_unchanged(e, recorded)
    assert HeldOutSet.from_dict(e.to_dict()).content_hash() == e.content_hash()


def test_scoring_uses_the_analysis_metric_and_reports_each_subset():
    data = sms_data()
    analysis = spam_analysis(data)
    _, held, _ = split_held_out(data, analysis, seed=0)
    e = build_held_out_set(held, analysis, embedder=embedder_for(data), boundary_share=0.2)
    perfect = score_held_out(e, [i.expected for i in e.items], analysis)
    assert perfect.score == 1.0 and all(perfect.correct)
    # a decoder's answer text maps back to the label set; a miss on spam costs recall
    texts = [(" Spam." if i.expected == "spam" else "ham") for i in e.items]
    missed = next(n for n, i in enumerate(e.items) if i.expected == "spam")
    texts[missed] = "ham"
    scored = score_held_out(e, texts, analysis)
    spam_n = sum(i.expected == "spam" for i in e.items)
    assert scored.metrics["recall:spam"] == pytest.approx((spam_n - 1) / spam_n, abs=1e-6)
    assert scored.metrics["precision:spam"] == 1.0
    assert scored.score == pytest.approx(2 * (spam_n - 1) / (2 * spam_n - 1), abs=1e-6)
    assert {k for k in scored.metrics if k.startswith("E_")} >= {"E_neg.accuracy", "E_boundary.accuracy"}


def test_worked_answers_are_scored_on_their_final_answer():
    rows = [Example(f"Calculate {a} + 1.", str(a + 1), f"q{a}") for a in range(8)]
    analysis = analyse_by_rules("calculate sums", DataSchema.of(rows))
    e = build_held_out_set(rows, analysis, embedder=None, adversarial=0)
    outputs = [f"{a} plus one is {a + 1}.\n#### {a + 1}" for a in range(8)]
    assert score_held_out(e, outputs, analysis).score == 1.0


# ---------------------------------------------------------------------------------------------
# D_cold
# ---------------------------------------------------------------------------------------------

def test_d_cold_is_about_65_35_gold_hard_and_hard_negatives_cross_the_label_boundary():
    data = sms_data()
    analysis = spam_analysis(data)
    pool, held, _ = split_held_out(data, analysis, seed=0)
    spec = DatasetSpec(constraints=DatasetSpec().constraints.__class__(max_label_ratio=10.0))
    built = build_cold_curriculum(pool, "classification", spec, embedder=embedder_for(data),
                                  held_out=[ex.input for ex in held], labels=analysis.labels)
    comp = built.composition()
    share = comp["hard_negative"] / (comp["gold"] + comp["hard_negative"])
    assert 0.25 <= share <= 0.40, comp
    by_source = {str(ex.id): ex.output for ex in pool}
    for row in built.rows:
        if row["slice"] == "hard_negative":
            assert row["output"] != by_source[row["anchor"]]
    assert len({r["id"] for r in built.rows}) == len(built.rows)


def test_e_inputs_in_the_pool_are_never_mined_and_the_quality_controls_drop_them():
    data = sms_data()
    analysis = spam_analysis(data)
    pool, held, _ = split_held_out(data, analysis, seed=0)
    leaky_pool = pool + held  # as if E had not been removed from the pool
    built = build_cold_curriculum(leaky_pool, "classification", DatasetSpec(), embedder=embedder_for(data),
                                  held_out=[ex.input for ex in held], labels=analysis.labels)
    held_hashes = {input_hash(ex.input) for ex in held}
    assert not {input_hash(r["input"]) for r in built.rows} & held_hashes
    assert built.qc.leakage.get("eval", 0) > 0


def test_focus_pairs_take_their_hard_negatives_from_the_other_label_of_the_pair():
    rows = [Example(f"{w} {n}", lab, f"{lab}{n}") for n in range(12)
            for w, lab in (("weather rain", "weather"), ("weather song", "music"), ("score game", "sports"))]
    random.Random(0).shuffle(rows)
    spec = DatasetSpec(focus_pairs=(("weather", "music"),))
    built = build_cold_curriculum(rows, "classification", spec, embedder=fitted_tfidf([r.input for r in rows]),
                                  held_out=[], labels=("music", "sports", "weather"))
    labels = {str(ex.id): ex.output for ex in rows}
    focus = [r for r in built.rows if r["slice"] == "hard_negative" and r["cluster"] == "focus0"]
    assert focus
    assert all({labels[r["anchor"]], r["output"]} == {"weather", "music"} for r in focus)
