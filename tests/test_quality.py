"""Every quality control on small datasets: label-ratio cap, length distance, NER surface repeats,
surface patterns, exact and near duplicates (MinHash/LSH, also at 10k rows), and leakage."""

from __future__ import annotations

import json
import random

import pytest

from engine.data.quality import (
    QCConfig,
    input_hash,
    length_distance,
    normalise,
    run_quality_controls,
    surface_pattern,
)


def row(text, out, slice_="gold", source=None):
    return {"input": text, "output": out, "slice": slice_, "source": source or text, "cluster": "C1"}


def test_normalise_and_hash_ignore_case_punctuation_and_spacing():
    assert normalise("  What's  the WEATHER?! ") == "whats the weather"
    assert input_hash("Book a flight!") == input_hash("book   a flight")
    assert input_hash("book a flight") != input_hash("book a hotel")


def test_label_ratio_cap_downsamples_replay_first_and_never_gold():
    rows = ([row(f"alpha gold item {i}", "A") for i in range(4)]
            + [row(f"alpha replay item {i}", "A", "replay") for i in range(8)]
            + [row(f"beta gold item {i}", "B") for i in range(3)])
    kept, report = run_quality_controls(rows, "classification")
    counts = report.label_ratio["after"]
    assert counts == {"A": 9, "B": 3} and report.label_ratio["downsampled"] == {"A": 3}
    assert sum(r["slice"] == "gold" and r["output"] == "A" for r in kept) == 4  # only replay was cut
    assert report.label_ratio["violations"] == [] and report.dropped == {"label_ratio": 3}
    only_gold = [row(f"alpha gold item {i}", "A") for i in range(10)] + [row("beta gold", "B")]
    kept, report = run_quality_controls(only_gold, "classification")
    assert len(kept) == 11  # gold corrections are the failures being fixed: reported, not dropped
    assert report.label_ratio["violations"][0]["label"] == "A"
    kept, report = run_quality_controls(only_gold, "classification", config=QCConfig(protect_slices=()))
    assert report.label_ratio["after"] == {"A": 3, "B": 1}


def test_length_distance_reports_wasserstein_and_ks():
    same = length_distance(["a b c", "a b c d"], ["x y z", "x y z w"])
    assert same["wasserstein"] == 0 and same["ks"] == 0
    far = length_distance(["a b c"] * 5, ["one two three four five six seven eight nine ten"] * 5)
    assert far["wasserstein"] == 7 and far["ks"] == 1.0 and far["target_mean"] == 10
    _, report = run_quality_controls([row("a b c", "A"), row("d e f g", "B")], "classification",
                                     target_inputs=["x y z", "x y z w"])
    assert report.length["wasserstein"] == 0 and report.length["n_target"] == 2
    assert length_distance([], ["x"])["wasserstein"] is None


def test_ner_surface_forms_repeat_at_most_three_times():
    def ent(text, word, label="location"):
        start = text.index(word)
        return [{"start": start, "end": start + len(word), "label": label}]

    texts = [f"we flew to Paris on day {i} of the trip number {i * 7}" for i in range(6)]
    rows = [row(t, ent(t, "Paris"), "hard_negative") for t in texts]
    rows.append(row("the gold sentence about PARIS today", ent("the gold sentence about PARIS today", "PARIS")))
    kept, report = run_quality_controls(rows, "ner")
    paris = [r for r in kept if "paris" in r["input"].lower()]
    assert len(paris) == 3 and any(r["slice"] == "gold" for r in paris)
    assert report.surface_repeats["dropped"] == 4 and report.surface_repeats["over_cap_protected"] == {}


def test_surface_patterns_per_label_report_labels_outside_the_range():
    uniform = [row(f"set an alarm for {h} am", "alarm") for h in range(1, 6)]
    varied = [row(t, "weather") for t in ["what is the weather", "will it rain", "forecast for paris please",
                                          "is it cold outside today in the north of the city", "tell me the weather",
                                          "how hot is it"]]
    mid = [row(t, "transfer") for t in ["send money now", "move cash", "transfer funds"]]
    _, report = run_quality_controls(uniform + varied + mid, "classification",
                                     config=QCConfig(max_label_ratio=10))
    assert report.patterns["per_label"] == {"alarm": 1, "transfer": 3, "weather": 6}
    assert report.patterns["below"] == ["alarm"] and report.patterns["above"] == ["weather"]
    assert surface_pattern("What is the weather?") == "q:what is:short"


def test_exact_duplicates_keep_the_gold_row_and_count_conflicts():
    rows = [row("What's the weather?", "weather", "replay", "r1"), row("whats the weather", "weather", "gold", "g1"),
            row("WHATS THE WEATHER!!", "alarm", "hard_negative", "h1")]
    kept, report = run_quality_controls(rows, "classification", config=QCConfig(max_label_ratio=10))
    assert [r["source"] for r in kept] == ["g1"]
    assert report.exact_duplicates == 2 and report.conflicts == 1


def test_near_duplicates_with_the_same_output_are_dropped_contrastive_pairs_kept():
    a = "please set an alarm for 7 am tomorrow morning"
    b = "please set an alarm for 7 am tomorrow"  # bigram Jaccard 7/8
    c = "please set an alarm for 9 pm next friday"  # far below 0.8
    kept, report = run_quality_controls([row(a, "alarm"), row(b, "alarm", "replay"), row(c, "alarm", "replay")],
                                        "classification")
    assert [r["input"] for r in kept] == [a, c] and report.near_duplicates == 1
    kept, report = run_quality_controls([row(a, "alarm"), row(b, "reminder", "hard_negative")], "classification")
    assert len(kept) == 2 and report.near_duplicates == 0 and report.contrastive_pairs == 1


def test_near_duplicate_removal_scales_to_10k_rows():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    base = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(9500)]
    dups = []
    for text in rng.sample(base, 500):
        words = text.split()
        words[-1] = "changed"  # 10 of 11 bigrams shared (Jaccard 10/12 > 0.8)
        dups.append(" ".join(words))
    rows = [row(t, "x", "replay") for t in base] + [row(t, "x", "replay") for t in dups]
    kept, report = run_quality_controls(rows, "generation")
    assert report.near_duplicates == 500 and len(kept) == 9500
    assert report.exact_duplicates == 0


def test_leaked_eval_and_regression_inputs_are_dropped_and_reported():
    rows = [row("Book a flight to Rome!", "book_flight", "gold", "t1"),
            row("what time is it", "time", "replay", "d7"),
            row("set a timer", "timer", "hard_negative", "p3"),
            row("cancel my order", "cancel", "replay", "d9")]
    kept, report = run_quality_controls(rows, "classification", config=QCConfig(max_label_ratio=10),
                                        protected={"regression": ["WHAT TIME IS IT?", "unrelated"],
                                                   "eval": ["book a flight to rome"]})
    assert [r["source"] for r in kept] == ["p3", "d9"]
    assert report.leakage == {"eval": 1, "regression": 1}
    assert sorted(report.leaked) == ["d7", "t1"] and report.dropped["leakage"] == 2
    assert report.n_in == 4 and report.n_out == 2
    json.dumps(report.to_dict())


def test_bad_rows_and_config_fail_clearly():
    with pytest.raises(ValueError, match="row 1: field input"):
        run_quality_controls([row("ok", "a"), {"input": None, "output": "a"}], "classification")
    with pytest.raises(ValueError, match="max_label_ratio"):
        QCConfig(max_label_ratio=0.5)
