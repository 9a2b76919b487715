"""AdaptFT-Bench perturbations: every type's effect and class, NER span validity, rates over 10,000
samples, inference-log timing, and `pioneer-tui perturb` end to end."""

from __future__ import annotations

import difflib
import html
import json
import math
import re
import statistics
from collections import Counter
from datetime import datetime

import pytest

from engine.data import perturb_types as pt
from engine.data.perturb import (
    DEFAULT_RATES,
    LogTiming,
    exact_match_judge,
    load_rates,
    perturb_examples,
    summarize,
    to_trace_rows,
    validate_rates,
)
from engine.errors import ConfigError
from pioneer_tui.cli import main

# The Table 12 rates, written out independently of the registry.
PAPER_RATES = {
    "typos": 0.10, "phonetic_misspellings": 0.07, "syntactic_errors": 0.06, "grammatical_errors": 0.05,
    "punctuation_abuse": 0.05, "casing_errors": 0.04, "abbreviations_slang": 0.03, "code_switching": 0.02,
    "preamble_injection": 0.07, "instruction_following_attempts": 0.04, "truncated_inputs": 0.03,
    "html_markup_remnants": 0.02, "missing_modality_reference": 0.02, "intra_input_duplication": 0.015,
    "very_long_inputs": 0.015, "ocr_artifacts": 0.015, "empty_or_near_empty": 0.007, "utf8_anomalies": 0.007,
    "metadata_leakage": 0.007, "label_flipping_adversarials": 0.03, "decision_boundary_probes": 0.03,
    "false_premises": 0.03, "prompt_injection": 0.02, "cross_benchmark_contamination": 0.015,
    "jailbreak_attempts": 0.01, "off_domain_queries": 0.03, "meta_questions": 0.02,
    "context_assumption_queries": 0.015, "verbatim_benchmark_recall": 0.01, "gibberish": 0.007,
    "retry_storms": 0.007, "near_duplicates": 0.05, "exact_duplicates": 0.03,
}
POISONOUS = {
    "label_flipping_adversarials", "decision_boundary_probes", "false_premises", "prompt_injection",
    "cross_benchmark_contamination", "jailbreak_attempts", "off_domain_queries", "meta_questions",
    "context_assumption_queries", "verbatim_benchmark_recall", "gibberish", "empty_or_near_empty",
}
ROW_TYPES = {"exact_duplicates", "near_duplicates", "retry_storms"}

CLS = [
    ("how do I transfer money from my checking account to savings", "transfer"),
    ("what is the weather going to be like tomorrow in the city", "weather"),
    ("please book a table for four people at an italian restaurant tonight", "restaurant_reservation"),
    ("can you tell me my current credit card balance", "balance"),
    ("I need to change the language on my phone to spanish", "change_language"),
    ("set an alarm for seven in the morning please", "alarm"),
    ("why was my card declined at the store yesterday", "card_declined"),
    ("Tell me a fun fact about octopuses.", "fun_fact"),
]
CLS_EXAMPLES = [{"input": t, "output": label} for t, label in CLS]
LABELS = {label for _, label in CLS}


def ner_example(text: str, *entities: tuple[str, str]) -> dict:
    spans = []
    for surface, label in entities:
        start = text.index(surface)
        spans.append({"start": start, "end": start + len(surface), "label": label, "text": surface})
    return {"input": text, "output": spans}


NER_EXAMPLES = [
    ner_example("I flew to New York with Taylor Swift's band last week.", ("New York", "location"),
                ("Taylor Swift", "person")),
    ner_example("Apple's new iPhone is way too expensive for me", ("Apple", "corporation"), ("iPhone", "product")),
    ner_example("Paris was lovely this spring, said Emma.", ("Paris", "location"), ("Emma", "person")),
    ner_example("nothing much to report from here today"),
    ner_example("Going to watch Star Wars with Mike and Sarah tonight", ("Star Wars", "creative-work"),
                ("Mike", "person"), ("Sarah", "person")),
]


def only(*names: str) -> dict[str, float]:
    rates = dict.fromkeys(DEFAULT_RATES, 0.0)
    rates.update(dict.fromkeys(names, 1.0))
    return rates


def run(name: str, seed: int, examples=CLS_EXAMPLES, task: str = "classification") -> list[dict]:
    return perturb_examples(examples, seed=seed, task=task, rates=only(name))


def words(text: str) -> list[str]:
    return pt.WORD_RE.findall(text)


def changed(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    assert len(a) == len(b), (a, b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# ----------------------------------------------------------------------------- per-type effect checks


def is_typo(a: str, b: str) -> bool:
    near = pt.KEYBOARD_NEIGHBOURS
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            i = diff[0]
            return b[i].lower() in near.get(a[i].lower(), "")
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    if len(b) == len(a) - 1:
        return any(a[:i] + a[i + 1:] == b for i in range(len(a)))
    if len(b) == len(a) + 1:
        return any(b[:i + 1] + b[i + 2:] == a and (b[i + 1] == b[i] or b[i + 1].lower() in near.get(b[i].lower(), ""))
                   for i in range(len(a)))
    return False


def sound_alike(a: str, b: str) -> bool:
    lower = a.lower()
    rules = {pattern.sub(repl, lower, count=1) for pattern, repl in pt.SOUND_RULES}
    return b.lower() in set(pt.PHONETIC_MISSPELLINGS.get(lower, ())) | rules


MODALS = {"can", "could", "would", "should", "will", "must", "might"}


def grammar_slips(before: list[str], after: list[str]) -> list[tuple[str, str]]:
    """The changed word groups, each checked against the kinds of slip grammatical_errors makes."""
    slips = []
    if len(before) == len(after):  # word swaps only: align by position
        ops = [("replace", i, i + 1, i, i + 1) for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
    else:
        ops = difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
    for op, i1, i2, j1, j2 in ops:
        if op == "equal":
            continue
        a, b = " ".join(before[i1:i2]), " ".join(after[j1:j2])
        slips.append((a, b))
        if op == "insert":  # "would like" -> "would to like"
            assert b == "to" and before[i1 - 1].lower() in MODALS, (a, b)
            continue
        assert op == "replace", (op, a, b)
        pairs = zip(before[i1:i2], after[j1:j2], strict=True) if i2 - i1 == j2 - j1 else [(a, b)]
        for x, y in pairs:
            swap = pt.GRAMMAR_SWAPS["I"] if x in ("I", "i") else pt.GRAMMAR_SWAPS.get(x.lower())
            assert (swap is not None and y.lower() == swap.lower()) or (x.lower(), y.lower()) == ("a", "an") \
                or y.lower() in (x.lower() + "s", x.lower()[:-1], pt.third_person(x).lower(), pt.gerund(x)), (x, y)
    return slips


def ocr_misread(a: str, b: str) -> bool:
    return any(a[i:].startswith(src) and a[:i] + dst + a[i + len(src):] == b
               for src, dst in pt.OCR_CONFUSIONS for i in range(len(a)))


def check_typos(o, row, ex):
    slips = changed(words(o), words(row["input"]))
    assert 1 <= len(slips) <= 3 and all(is_typo(a, b) for a, b in slips), slips


def check_phonetic(o, row, ex):
    slips = changed(words(o), words(row["input"]))
    assert 1 <= len(slips) <= 2 and all(sound_alike(a, b) for a, b in slips), slips


def check_syntactic(o, row, ex):
    a, b = [w.lower() for w in words(o)], [w.lower() for w in words(row["input"])]
    if len(b) == len(a):
        assert Counter(a) == Counter(b) and a != b
    else:
        assert len(b) == len(a) - 1
        dropped = (Counter(a) - Counter(b))
        assert len(dropped) == 1 and next(iter(dropped)) in pt.FUNCTION_WORDS


def check_grammatical(o, row, ex):
    assert 1 <= len(grammar_slips(words(o), words(row["input"]))) <= 2


def check_punctuation(o, row, ex):
    assert re.sub(r"\W", "", o) == re.sub(r"\W", "", row["input"]) and o != row["input"]


def check_casing(o, row, ex):
    assert row["input"].lower() == o.lower() and row["input"] != o


SLANG_VALUES = {v for values in pt.SLANG.values() for v in values} | {t.strip() for t in pt.SLANG_TAGS}


def check_slang(o, row, ex):
    new = Counter(re.findall(r"[\w/]+", row["input"].lower())) - Counter(re.findall(r"[\w/]+", o.lower()))
    assert set(new) & SLANG_VALUES, new


FOREIGN = {v for pair in pt.CODE_SWITCH.values() for v in pair} | {
    t.strip(" ,?¿") for tags in pt.CODE_SWITCH_TAGS for t in tags}


def check_code_switching(o, row, ex):
    tokens = lambda text: set(re.findall(r"[\w'-]+", text.lower()))  # noqa: E731
    foreign = {w for v in FOREIGN for w in tokens(v)}
    assert (tokens(row["input"]) - tokens(o)) & foreign, row["input"]


def check_preamble(o, row, ex):
    n = row["input"]
    assert any(n.startswith(p) for p in pt.PREAMBLES) and n.endswith(o[1:])


def check_instruction(o, row, ex):
    assert row["input"].startswith(o) and any(row["input"].endswith(i) for i in pt.INSTRUCTIONS)


def check_truncated(o, row, ex):
    n = row["input"]
    assert o.startswith(n) and len(n) < len(o)
    total = len(o.split())
    assert len(n.split()) >= min(total - 1, math.ceil(0.7 * total))


def check_html(o, row, ex):
    n = row["input"]
    assert "<" in n or "&" in n
    assert html.unescape(re.sub(r"<[^>]+>", "", n)).replace("\xa0", " ").rstrip() == o


def check_modality(o, row, ex):
    n = row["input"]
    assert (any(n.startswith(p) for p in pt.MODALITY_PREFIXES) and n.endswith(o[1:])) or (
        n.startswith(o) and any(n.endswith(s) for s in pt.MODALITY_SUFFIXES))


def check_duplication(o, row, ex):
    n = row["input"]
    if any(n == o + sep + o for sep in (" ", "  ", "\n")):
        return
    a, b = words(o), words(n)
    assert any(b[i:i + k] == b[i + k:i + 2 * k] and b[:i + k] + b[i + 2 * k:] == a
               for k in (2, 3, 4) for i in range(len(b))), n


def check_very_long(o, row, ex):
    n = row["input"]
    assert len(n) >= 1200 and (n.endswith(o[1:]) or n.startswith(o))


def check_ocr(o, row, ex):
    slips = changed(re.split(r"[\s-]+", o), re.split(r"[\s-]+", row["input"].replace("-\n", "")))
    assert row["input"] != o and len(slips) <= 3 and all(ocr_misread(a, b) for a, b in slips), slips


MOJIBAKE = {pt._mojibake("\u2019"): "'", pt._mojibake("\u201c"): "", pt._mojibake("\u201d"): ""}


def check_utf8(o, row, ex):
    n = row["input"]
    assert n != o
    for bad, good in MOJIBAKE.items():
        n = n.replace(bad, good)
    n = re.sub("[\u200b\u200c\u200d\u2060\ufeff]", "", n).replace("\xa0", " ")
    assert len(n) == len(o) and all(x == y or y == "\ufffd" for x, y in zip(o, n, strict=True)), n


def check_metadata_leakage(o, row, ex):
    assert o in row["input"] and re.search(r"user_id=|req=|client=|request_id|ab_bucket=|uid=", row["input"])


def check_label_flip(o, row, ex):
    n, meta = row["input"], row["metadata"]
    assert n.startswith(o) and any(j in n for j in pt.FLIP_JOINERS)
    assert row["output"] in LABELS and row["output"] != ex["output"]
    assert meta["label_valid"] is False and meta["original_output"] == ex["output"]
    donors = [t for t, label in CLS if label == row["output"]]
    assert any(n.endswith(d) for d in donors)


def check_boundary(o, row, ex):
    n = row["input"]
    assert row["output"] is None and row["metadata"]["label_valid"] is False
    assert o.rstrip("?.!") in n
    assert any(t.rstrip("?.!") in n for t, label in CLS if label != ex["output"])


def check_false_premise(o, row, ex):
    assert any(row["input"].startswith(p) for p in pt.FALSE_PREMISES)
    assert row["output"] == ex["output"] and row["metadata"]["label_valid"] is True


def check_injection(o, row, ex):
    target = row["metadata"]["injected_target"]
    assert row["input"].startswith(o) and target in LABELS and target != ex["output"] and target in row["input"]
    assert row["output"] == ex["output"] and row["metadata"]["label_valid"] is True


def check_jailbreak(o, row, ex):
    assert any(p in row["input"] for p in pt.JAILBREAK_PAYLOADS) and row["input"].endswith(o[1:])
    assert row["output"] is None


def in_table(table):
    def check(o, row, ex):
        assert row["input"] in table and row["output"] is None
    return check


def check_recall(o, row, ex):
    assert any(b in row["input"] for b in pt.BENCHMARK_NAMES) and re.search(r"\d", row["input"])
    assert row["output"] is None


def check_gibberish(o, row, ex):
    n = row["input"]
    assert n.strip() and row["output"] is None
    assert not {w.lower() for w in words(n)} & {w.lower() for w in words(o) if len(w) > 1}


def check_near_empty(o, row, ex):
    assert 0 < len(row["input"].strip()) <= 3 and row["output"] is None


EFFECTS = {
    "typos": check_typos, "phonetic_misspellings": check_phonetic, "syntactic_errors": check_syntactic,
    "grammatical_errors": check_grammatical, "punctuation_abuse": check_punctuation, "casing_errors": check_casing,
    "abbreviations_slang": check_slang, "code_switching": check_code_switching, "preamble_injection": check_preamble,
    "instruction_following_attempts": check_instruction, "truncated_inputs": check_truncated,
    "html_markup_remnants": check_html, "missing_modality_reference": check_modality,
    "intra_input_duplication": check_duplication, "very_long_inputs": check_very_long, "ocr_artifacts": check_ocr,
    "utf8_anomalies": check_utf8, "metadata_leakage": check_metadata_leakage,
    "label_flipping_adversarials": check_label_flip, "decision_boundary_probes": check_boundary,
    "false_premises": check_false_premise, "prompt_injection": check_injection,
    "jailbreak_attempts": check_jailbreak, "cross_benchmark_contamination": in_table(pt.CROSS_BENCHMARK_ITEMS),
    "off_domain_queries": in_table(pt.OFF_DOMAIN_QUERIES), "meta_questions": in_table(pt.META_QUESTIONS),
    "context_assumption_queries": in_table(pt.CONTEXT_ASSUMPTION_QUERIES),
    "verbatim_benchmark_recall": check_recall, "gibberish": check_gibberish, "empty_or_near_empty": check_near_empty,
}


def test_registry_matches_table_12():
    assert len(pt.TYPES) == 33 and set(pt.BY_NAME) == set(PAPER_RATES)
    assert DEFAULT_RATES == PAPER_RATES
    assert {t.name for t in pt.TYPES if t.cls == pt.POISONOUS} == POISONOUS
    for t in pt.TYPES:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", t.name) and t.cls in (pt.FIXABLE, pt.POISONOUS) and t.reason
    assert set(EFFECTS) | ROW_TYPES == set(PAPER_RATES)


@pytest.mark.parametrize("name", sorted(EFFECTS))
def test_each_type_has_its_effect_and_class(name):
    cls = pt.BY_NAME[name].cls
    for seed in range(25):
        rows = run(name, seed)
        assert len(rows) == len(CLS_EXAMPLES)
        for ex, row in zip(CLS_EXAMPLES, rows, strict=True):
            assert row["metadata"]["perturbations"] == [{"type": name, "class": cls}], (seed, row)
            EFFECTS[name](ex["input"], row, ex)
            if cls == pt.FIXABLE:
                assert row["output"] == ex["output"] and row["metadata"]["label_valid"] is True


@pytest.mark.parametrize("name", sorted(PAPER_RATES))
def test_each_type_is_deterministic_per_seed(name):
    assert run(name, 11) == run(name, 11)
    if name != "exact_duplicates":  # a verbatim copy has nothing random in it
        outputs = {json.dumps(run(name, seed)) for seed in range(6)}
        assert len(outputs) > 1


def test_exact_duplicates_copy_the_finished_row():
    rows = perturb_examples(CLS_EXAMPLES, seed=3, task="classification", rates=only("exact_duplicates", "typos"))
    assert len(rows) == 2 * len(CLS_EXAMPLES)
    for source, copy in zip(rows[::2], rows[1::2], strict=True):
        assert copy["input"] == source["input"] and copy["output"] == source["output"]
        assert copy["id"] == source["id"] + "-dup" and copy["metadata"]["duplicate_of"] == source["id"]
        assert copy["metadata"]["perturbations"] == [*source["metadata"]["perturbations"],
                                                     {"type": "exact_duplicates", "class": "fixable"}]


def test_near_duplicates_are_similar_but_not_identical():
    for seed in range(25):
        rows = run("near_duplicates", seed)
        for source, copy in zip(rows[::2], rows[1::2], strict=True):
            assert copy["input"] != source["input"] and pt.jaccard(source["input"], copy["input"]) >= 0.8
            assert copy["metadata"]["duplicate_of"] == source["id"] and copy["output"] == source["output"]
            assert copy["metadata"]["perturbations"][-1] == {"type": "near_duplicates", "class": "fixable"}


def test_retry_storms_resubmit_three_to_eight_times():
    sizes = Counter()
    for seed in range(25):
        rows = run("retry_storms", seed)
        by_parent = Counter(r["metadata"]["retry_of"] for r in rows if "retry_of" in r["metadata"])
        sources = {r["id"]: r for r in rows if "retry_of" not in r["metadata"]}
        assert set(by_parent) == set(sources)
        for row in rows:
            if "retry_of" in row["metadata"]:
                assert row["input"] == sources[row["metadata"]["retry_of"]]["input"]
        sizes.update(by_parent.values())
    assert set(sizes) <= set(range(3, 9)) and len(sizes) >= 4


def test_types_co_occur_in_registry_order():
    rows = perturb_examples(CLS_EXAMPLES * 50, seed=5, task="classification",
                            rates={"typos": 0.6, "casing_errors": 0.6, "preamble_injection": 0.6})
    order = [t.name for t in pt.TYPES]
    stacked = [r["metadata"]["perturbations"] for r in rows if len(r["metadata"]["perturbations"]) >= 3]
    assert stacked
    for entries in (r["metadata"]["perturbations"] for r in rows):
        names = [e["type"] for e in entries]
        assert names == sorted(names, key=order.index)


# ----------------------------------------------------------------------------- NER and generation


FIXABLE = sorted(t.name for t in pt.TYPES if t.cls == pt.FIXABLE)


@pytest.mark.parametrize("name", FIXABLE)
def test_ner_spans_stay_on_their_entities_after_fixable_perturbations(name):
    originals = [Counter((s["text"], s["label"]) for s in ex["output"]) for ex in NER_EXAMPLES]
    applied = 0
    for seed in range(40):
        for row in run(name, seed, NER_EXAMPLES, "ner"):
            index = int(row["id"][2:8])
            kept = Counter()
            for span in row["output"]:
                assert row["input"][span["start"]:span["end"]] == span["text"], (row["input"], span)
                kept[(span["text"], span["label"])] += 1
            assert row["metadata"]["label_valid"] is True
            applied += bool(row["metadata"]["perturbations"])
            if name == "truncated_inputs":
                assert sum(kept.values()) + row["metadata"].get("spans_dropped", 0) == sum(originals[index].values())
                assert not kept - originals[index]
            elif name == "intra_input_duplication":
                assert kept in (originals[index], originals[index] + originals[index])
            else:
                assert kept == originals[index]
    assert applied >= 40 * len(NER_EXAMPLES) * 0.8


def test_ner_label_flip_swaps_an_entity_for_another_type():
    for seed in range(30):
        for ex, row in zip(NER_EXAMPLES, run("label_flipping_adversarials", seed, NER_EXAMPLES, "ner"), strict=True):
            if not ex["output"]:
                assert not row["metadata"]["perturbations"]  # nothing to flip
                continue
            assert row["metadata"]["label_valid"] is False and row["metadata"]["original_output"] == ex["output"]
            for span in row["output"]:
                assert row["input"][span["start"]:span["end"]] == span["text"]
            before = Counter((s["text"], s["label"]) for s in ex["output"])
            after = Counter((s["text"], s["label"]) for s in row["output"])
            (old,), (new,) = list(before - after), list(after - before)
            assert old[1] != new[1] and new[0] in pt.Pool.build(
                [pt.Sample(e["input"], e["output"], "ner") for e in NER_EXAMPLES]).surfaces[new[1]]


@pytest.mark.parametrize("name", sorted(POISONOUS - {"label_flipping_adversarials", "false_premises",
                                                      "prompt_injection"}))
def test_ner_poisonous_inputs_have_no_valid_spans(name):
    for ex, row in zip(NER_EXAMPLES, run(name, 2, NER_EXAMPLES, "ner"), strict=True):
        assert row["output"] is None and row["metadata"]["label_valid"] is False
        assert row["metadata"].get("spans_dropped", 0) == len(ex["output"])


@pytest.mark.parametrize("name", ["false_premises", "prompt_injection"])
def test_ner_answer_survives_premise_and_injection(name):
    for ex, row in zip(NER_EXAMPLES, run(name, 4, NER_EXAMPLES, "ner"), strict=True):
        assert row["metadata"]["label_valid"] is True and len(row["output"]) == len(ex["output"])
        for span in row["output"]:
            assert row["input"][span["start"]:span["end"]] == span["text"]


GEN_EXAMPLES = [
    {"input": "A farmer has 12 cows and buys 5 more. How many cows does he have now?", "output": "17"},
    {"input": "Write a one-line summary of why the sky looks blue during the day.", "output": "Rayleigh scattering."},
    {"input": "Translate 'good night' into Spanish, please.", "output": "buenas noches"},
]


def test_generation_answers_follow_the_rule():
    flipped = run("label_flipping_adversarials", 1, GEN_EXAMPLES, "generation")
    for ex, row in zip(GEN_EXAMPLES, flipped, strict=True):
        donor = next(g for g in GEN_EXAMPLES if g["output"] == row["output"])
        assert donor is not ex and row["input"].endswith(donor["input"])
    for name in ("false_premises", "truncated_inputs", "jailbreak_attempts"):
        for row in run(name, 1, GEN_EXAMPLES, "generation"):
            assert row["output"] is None and row["metadata"]["label_valid"] is False, name
    for row in run("typos", 1, GEN_EXAMPLES, "generation"):
        assert row["metadata"]["label_valid"] is True


# ----------------------------------------------------------------------------- rates


def tolerance(n: int, p: float) -> float:
    return 4 * math.sqrt(n * p * (1 - p)) + 1


def observed_counts(rows: list[dict]) -> Counter:
    return Counter(summarize(rows)["types"])


def test_default_rates_hold_over_10000_samples():
    n = 10_000
    examples = [CLS_EXAMPLES[i % len(CLS_EXAMPLES)] for i in range(n)]
    counts = observed_counts(perturb_examples(examples, seed=2024, task="classification"))
    for name, p in PAPER_RATES.items():
        assert abs(counts[name] - n * p) <= tolerance(n, p), (name, counts[name], n * p)


def test_rates_file_overrides_defaults(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"typos": 0.4, "off_domain_queries": 0.2, "preamble_injection": 0.0}))
    rates = load_rates(path)
    assert rates["typos"] == 0.4 and rates["casing_errors"] == PAPER_RATES["casing_errors"]
    n = 10_000
    examples = [CLS_EXAMPLES[i % len(CLS_EXAMPLES)] for i in range(n)]
    counts = observed_counts(perturb_examples(examples, seed=9, task="classification", rates=rates))
    for name in ("typos", "off_domain_queries", "label_flipping_adversarials", "casing_errors"):
        assert abs(counts[name] - n * rates[name]) <= tolerance(n, rates[name]), name
    assert counts["preamble_injection"] == 0


def test_bad_rates_are_refused_with_file_and_key(tmp_path):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"typoz": 0.1}))
    with pytest.raises(ConfigError, match=r"rates\.json: key 'typoz' .*'typos'"):
        load_rates(path)
    path.write_text(json.dumps({"gibberish": 1.5}))
    with pytest.raises(ConfigError, match="gibberish"):
        load_rates(path)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        load_rates(path)
    with pytest.raises(ConfigError, match="sum to"):
        validate_rates({"off_domain_queries": 0.7, "gibberish": 0.5})


def test_a_full_rate_reaches_every_eligible_sample():
    examples = [CLS_EXAMPLES[i % len(CLS_EXAMPLES)] for i in range(2000)]
    rows = perturb_examples(examples, seed=4, task="classification",
                            rates={"typos": 1.0, "label_flipping_adversarials": 1.0, "gibberish": 0.05})
    for row in rows:
        names = {p["type"] for p in row["metadata"]["perturbations"]}
        replaced = names & {t.name for t in pt.TYPES if t.kind == "replace"}
        assert ("label_flipping_adversarials" in names) == (not replaced)
        assert ("typos" in names) == ("gibberish" not in names and "empty_or_near_empty" not in names)


# ----------------------------------------------------------------------------- inference-log timing


def log_rows(n: int, seed: int = 0, **timing) -> tuple[list[dict], list[dict]]:
    examples = [CLS_EXAMPLES[i % len(CLS_EXAMPLES)] for i in range(n)]
    rows = perturb_examples(examples, seed=seed, task="classification")
    predictions = [r["output"] if i % 4 else "balance" for i, r in enumerate(rows)]
    traces = to_trace_rows(rows, predictions, model_id="deployed-1", stage="stage2", seed=seed,
                           task="classification", timing=LogTiming(**timing))
    return rows, traces


def gaps(traces: list[dict]) -> list[float]:
    times = [datetime.fromisoformat(t["ts"]).timestamp() for t in traces if not t["metadata"].get("retry_of")]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_trace_rows_are_timestamped_judged_and_complete():
    rows, traces = log_rows(3000)
    timeouts = [t for t in traces if t["metadata"].get("timeout")]
    assert len(traces) == len(rows) + len(timeouts)
    assert [t["ts"] for t in traces] == sorted(t["ts"] for t in traces)
    assert len({t["id"] for t in traces}) == len(traces)
    for t in traces:
        assert {"id", "ts", "model_id", "input", "prediction", "verdict", "correction", "reasoning", "metadata",
                "latency_ms", "stage"} <= t.keys()
        assert t["verdict"] in ("pass", "fail") and t["stage"] == "stage2" and isinstance(t["prediction"], str)
    by_id = {t["id"]: t for t in traces}
    for t in timeouts:
        retry = by_id[t["metadata"]["retried_as"]]
        assert t["verdict"] == "fail" and t["latency_ms"] == 30000.0 and retry["ts"] > t["ts"]
        assert retry["metadata"]["retry_after_timeout"] == t["id"]
    primaries = sum(1 for r in rows if "retry_of" not in r["metadata"])
    assert abs(len(timeouts) - 0.015 * primaries) <= tolerance(primaries, 0.015)
    for t in traces:
        parent = t["metadata"].get("retry_of")
        if parent:
            delay = datetime.fromisoformat(t["ts"]) - datetime.fromisoformat(by_id[parent]["ts"])
            assert 0 < delay.total_seconds() <= 8 * 2.5


def test_latency_is_log_normal_and_bursts_cluster_arrivals():
    timing = LogTiming()
    rows, traces = log_rows(4000, burst_start_prob=0.0, timeout_rate=0.0)
    logs = [math.log(t["latency_ms"] / (timing.base_latency_ms + timing.per_char_ms * len(t["input"])))
            for t in traces if not t["metadata"].get("retry_of")]
    assert abs(statistics.fmean(logs)) < 0.03 and abs(statistics.stdev(logs) - timing.latency_sigma) < 0.03
    calm = gaps(traces)
    _, bursty_traces = log_rows(4000)
    bursty = gaps(bursty_traces)
    short = lambda values: sum(g < 1.0 for g in values) / len(values)  # noqa: E731
    assert short(calm) < 0.2 and short(bursty) > 0.35


def test_trace_rows_are_reproducible_and_ingestible(tmp_path):
    from engine.ingest import ingest_traces
    from store import Store
    from store.artifacts import atomic_write_jsonl

    _, first = log_rows(400, seed=3)
    _, again = log_rows(400, seed=3)
    assert first == again
    path = atomic_write_jsonl(tmp_path / "traces.jsonl", first)
    store = Store(tmp_path / "ws")
    try:
        result = ingest_traces(store, path)
        assert result.inserted == len(first) and result.rejected == 0
        failing = store.conn.execute("SELECT COUNT(*) FROM traces WHERE verdict = 'fail'").fetchone()[0]
        assert failing == sum(t["verdict"] == "fail" for t in first)
    finally:
        store.close()


def test_exact_match_judge():
    spans = [{"start": 0, "end": 4, "label": "person"}]
    assert exact_match_judge("transfer", " transfer")[0] == "pass"
    assert exact_match_judge("transfer", "balance") == ("fail", "transfer", "prediction differs from the reference")
    assert exact_match_judge(spans, [{"start": 0, "end": 4, "label": "person", "score": 0.9}])[0] == "pass"
    assert exact_match_judge(spans, [])[0] == "fail"
    assert exact_match_judge(None, "balance")[:2] == ("fail", None)
    assert exact_match_judge(None, "")[0] == "pass"


# ----------------------------------------------------------------------------- CLI


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def cli(tmp_path, *args: str) -> int:
    return main(["--workspace", str(tmp_path / "ws"), "perturb", *args])


def test_cli_perturbs_a_classification_file(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [dict(ex, metadata={"source": "demo"}) for ex in CLS_EXAMPLES * 40])
    out, out2, out3 = tmp_path / "out.jsonl", tmp_path / "out2.jsonl", tmp_path / "out3.jsonl"
    assert cli(tmp_path, str(src), str(out), "--seed", "7") == 0
    assert "wrote" in capsys.readouterr().out
    assert cli(tmp_path, str(src), str(out2), "--seed", "7") == 0
    assert cli(tmp_path, str(src), str(out3), "--seed", "8") == 0
    assert out.read_bytes() == out2.read_bytes() and out.read_bytes() != out3.read_bytes()
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= len(CLS_EXAMPLES) * 40 and any(r["metadata"]["perturbations"] for r in rows)
    for row in rows:
        assert row["metadata"]["source"] == "demo" and isinstance(row["metadata"]["label_valid"], bool)
        for entry in row["metadata"]["perturbations"]:
            assert entry == {"type": entry["type"], "class": pt.BY_NAME[entry["type"]].cls}
    assert not (tmp_path / "ws").exists()  # a file-to-file command never opens the workspace


def test_cli_ner_with_bio_tags_and_a_rates_file(tmp_path, capsys):
    src = write_jsonl(tmp_path / "ner.jsonl", [
        {"id": "a", "tokens": ["Meet", "Emma", "in", "New", "York"], "output": ["O", "B-person", "O", "B-location",
                                                                              "I-location"]},
        {"id": "b", "input": "nothing to tag in this one", "output": []},
    ])
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps(only("casing_errors", "preamble_injection")))
    out = tmp_path / "out.jsonl"
    assert cli(tmp_path, str(src), str(out), "--seed", "1", "--rates", str(rates), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "ner" and summary["types"]["casing_errors"] == 2
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    first = rows["a"]
    assert {(first["input"][s["start"]:s["end"]], s["label"]) for s in first["output"]} == {
        ("Emma", "person"), ("New York", "location")}


@pytest.mark.parametrize(("content", "message"), [
    ('{"input": "fine", "output": "a"}\n{"input": 3, "output": "b"}\n', r"in\.jsonl:2: field 'input'"),
    ('{"input": "fine", "output": "a"}\nnot json\n', r"in\.jsonl:2: invalid JSON"),
    ('{"input": "fine"}\n', r"in\.jsonl:1: field 'output': missing"),
    ('{"input": "x", "output": "a", "metadata": [1]}\n', r"in\.jsonl:1: field 'metadata'"),
    ('{"id": 1, "input": "x", "output": "a"}\n{"id": 1, "input": "y", "output": "b"}\n', r"in\.jsonl:2: field 'id'"),
    ('\n\n', r"in\.jsonl: no examples"),
])
def test_cli_bad_input_names_file_line_and_field(tmp_path, capsys, content, message):
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert cli(tmp_path, str(src), str(out), "--seed", "1") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_cli_bad_spans_and_rates(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"input": "Emma", "output": [{"start": 0, "end": 9, "label": "person"}]}])
    assert cli(tmp_path, str(src), str(tmp_path / "o.jsonl"), "--seed", "1", "--task", "ner") == 2
    assert re.search(r"in\.jsonl:1: field 'output\[0\]'", capsys.readouterr().err)
    good = write_jsonl(tmp_path / "good.jsonl", CLS_EXAMPLES)
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"typos": 0.1, "gibbrish": 0.2}))
    assert cli(tmp_path, str(good), str(tmp_path / "o.jsonl"), "--seed", "1", "--rates", str(rates)) == 2
    err = capsys.readouterr().err
    assert "rates.json" in err and "'gibbrish'" in err and "'gibberish'" in err
    src.write_bytes(b'{"input": "ok", "output": "a"}\n{"input": "\xff", "output": "b"}\n')
    assert cli(tmp_path, str(src), str(tmp_path / "o.jsonl"), "--seed", "1") == 2
    assert re.search(r"in\.jsonl:2: not UTF-8", capsys.readouterr().err)
