"""Probes for a fixable cluster (neighbours, variants, boundary pairs) and live confirmation through a
predict function standing in for the deployed model."""

from __future__ import annotations

import json

import pytest

from engine.data.quality import normalise
from engine.diagnosis.probing import ProbeConfig, generate_probes, run_probes
from engine.diagnosis.taxonomy import build_taxonomy
from engine.diagnosis.traces import LabelledText, Trace
from engine.records import Prediction, Span

TRANSLATE = ["how do you say hello in french", "translate good morning into german", "what is thank you in spanish",
             "translate this sentence to italian", "how would i say goodbye in dutch", "translate cheers to greek"]
CHANGE = ["change your language to french", "switch the language setting to german", "can you speak spanish now",
          "set your language to italian", "i want you to talk in dutch", "switch to greek language please"]
WEATHER = ["what's the weather in paris", "will it rain in oslo tomorrow", "how hot is it in lima today"]


def keyword_model(texts):
    """A stand-in deployed model with the cluster's bug: anything mentioning 'language' or 'say' is
    change_language."""
    out = []
    for t in texts:
        low = t.lower()
        out.append("change_language" if ("language" in low or " say " in f" {low} " or "speak" in low)
                   else "translate" if ("translat" in low or " in " in f" {low} ") and "weather" not in low
                   else "weather")
    return out


@pytest.fixture
def scenario():
    fail = [Trace(f"f{i}", t, "change_language", "translate", "fail", "classification")
            for i, t in enumerate(["how do i say thanks in japanese", "say good night in korean please",
                                   "translate the word language into german"])]
    fail.append(Trace("g0", "speak in french from now on", "translate", "change_language", "fail", "classification"))
    tax = build_taxonomy(fail, task="classification")
    cluster = next(c for c in tax.clusters if c.kind == "bidirectional_confusion")
    pool = ([LabelledText(f"t{i}", x, "translate", "trace") for i, x in enumerate(TRANSLATE)]
            + [LabelledText(f"c{i}", x, "change_language", "parent") for i, x in enumerate(CHANGE)]
            + [LabelledText(f"w{i}", x, "weather", "trace") for i, x in enumerate(WEATHER)])
    return fail, cluster, pool


def test_probes_cover_neighbours_variants_and_boundary_pairs(scenario):
    fail, cluster, pool = scenario
    probes = generate_probes(cluster, fail, pool, "classification", config=ProbeConfig(boundary_pairs=2))
    kinds = {p.kind.split(":")[0] for p in probes}
    assert kinds == {"neighbour", "variant", "boundary"}
    fail_inputs = {normalise(t.input) for t in fail}
    by_id = {t.id: t for t in fail}
    for p in probes:
        assert p.cluster == cluster.id and p.task == "classification"
        if p.kind.startswith("variant"):
            assert p.input != by_id[p.source].input and p.expected == by_id[p.source].correction
        else:
            assert normalise(p.input) not in fail_inputs
    boundary = [p for p in probes if p.kind == "boundary"]
    assert 2 <= len(boundary) <= 4 and {p.expected for p in boundary} == {"translate", "change_language"}
    assert len({normalise(p.input) for p in probes}) == len(probes)  # each input is run once
    typo = [p for p in probes if p.kind == "variant:typo"]
    assert typo and all(len(p.input) == len(by_id[p.source].input) for p in typo)
    neighbours = [p for p in probes if p.kind == "neighbour"]
    assert len(fail) <= len(neighbours) <= 2 * len(fail)  # an input already probed as a boundary is not rerun


def test_probe_generation_is_seeded_and_capped_across_kinds(scenario):
    fail, cluster, pool = scenario
    a = generate_probes(cluster, fail, pool, "classification", config=ProbeConfig(seed=3))
    b = generate_probes(cluster, fail, pool, "classification", config=ProbeConfig(seed=3))
    assert a == b
    capped = generate_probes(cluster, fail, pool, "classification", config=ProbeConfig(max_probes=6))
    assert len(capped) == 6 and {p.kind.split(":")[0] for p in capped} == {"neighbour", "variant", "boundary"}


def test_ner_variants_keep_gold_span_offsets_valid():
    text = "I met Taylor Swift in Paris yesterday evening"
    gold = [{"start": 6, "end": 18, "label": "person"}, {"start": 22, "end": 27, "label": "location"}]
    t = Trace.from_row({"id": "n1", "input": text, "prediction": "[]", "correction": json.dumps(gold),
                        "verdict": "fail", "task": "ner"})
    tax = build_taxonomy([t], task="ner")
    probes = generate_probes(tax.clusters[0], [t], [], "ner", config=ProbeConfig(variants_per_trace=3, seed=1))
    assert {p.kind for p in probes} >= {"variant:casing", "variant:typo"}
    for p in probes:
        for s in p.expected:
            assert p.input[s.start:s.end].lower() == text[s.start:s.end].lower()


def test_run_probes_confirms_a_systematic_cluster_and_returns_candidates(scenario):
    fail, cluster, pool = scenario
    probes = generate_probes(cluster, fail, pool, "classification")
    report = run_probes(cluster, probes, keyword_model)
    expected_failures = sum(keyword_model([p.input])[0] != p.expected for p in probes)
    assert report.n_probes == len(probes) and report.n_failed == expected_failures
    assert report.failure_rate >= 0.3 and report.confirmed
    assert sum(v["failed"] for v in report.by_kind.values()) == report.n_failed
    rows = report.candidates()
    assert len(rows) == report.n_failed
    assert all(r["slice"] == "gold" and r["cluster"] == cluster.id and r["source"].startswith("probe:") for r in rows)
    assert report.to_dict()["confirmed"] is True


def test_run_probes_not_confirmed_when_the_model_handles_the_probes(scenario):
    fail, cluster, pool = scenario
    probes = generate_probes(cluster, fail, pool, "classification")
    truth = {p.input: p.expected for p in probes}

    def oracle(texts):
        return [Prediction(truth[t], 0.9) for t in texts]  # Predictions are accepted as well as outputs

    report = run_probes(cluster, probes, oracle)
    assert report.n_failed == 0 and not report.confirmed and report.candidates() == []
    strict = run_probes(cluster, probes, keyword_model, threshold=1.0)
    assert not strict.confirmed
    empty = run_probes(cluster, [], keyword_model)
    assert empty.n_probes == 0 and not empty.confirmed


def test_run_probes_custom_expected_and_bad_input(scenario):
    fail, cluster, pool = scenario
    probes = generate_probes(cluster, fail, pool, "classification")
    always_weather = run_probes(cluster, probes, keyword_model, expected_fn=lambda p: "weather")
    assert always_weather.n_failed == sum(out != "weather" for out in keyword_model([p.input for p in probes]))
    with pytest.raises(ValueError, match="returned 1 outputs"):
        run_probes(cluster, probes, lambda texts: ["weather"])
    with pytest.raises(ValueError, match="threshold"):
        run_probes(cluster, probes, keyword_model, threshold=1.5)


def test_run_probes_compares_ner_span_sets():
    text = "Paris is lovely"
    t = Trace.from_row({"id": "n", "input": text, "prediction": "[]",
                        "correction": json.dumps([{"start": 0, "end": 5, "label": "location"}]),
                        "verdict": "fail", "task": "ner"})
    cluster = build_taxonomy([t], task="ner").clusters[0]
    probes = generate_probes(cluster, [t], [], "ner")
    right = run_probes(cluster, probes, lambda xs: [(Span(0, 5, "location", 0.7),) for _ in xs])
    wrong = run_probes(cluster, probes, lambda xs: ["[]" for _ in xs])  # JSON text is decoded too
    assert right.n_failed == 0 and wrong.n_failed == len(probes) > 0
