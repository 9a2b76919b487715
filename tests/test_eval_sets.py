"""Failure set = all of T_fail with its judging method; regression set = a seeded, stratified sample of
T_pass sized 30-100% of |T_fail|."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from engine.diagnosis.eval_sets import failure_set, judge_method, regression_set
from engine.diagnosis.fixability import TriageResult
from engine.diagnosis.traces import Trace
from engine.errors import ConfigError

SIZES = {"weather": 100, "alarm": 60, "transfer": 30, "translate": 10}


@pytest.fixture
def passing():
    return [Trace(f"{lab}-{i:03d}", f"{lab} utterance {i}", lab, None, "pass", "classification")
            for lab, n in SIZES.items() for i in range(n)]


def test_failure_set_is_all_of_t_fail_with_judge_methods_and_triage():
    fail = [Trace("h", "a", "x", "y", "fail", "classification", human_verdict="fail"),
            Trace("l", "b", "x", "z", "fail", "classification", metadata={"judge": "llm:claude"}),
            Trace("m", "c", "x", "y", "fail", "classification", metadata={"judge": {"method": "exact_match"}}),
            Trace("a", "d", "x", None, "fail", "classification")]
    triage = {"l": TriageResult("l", "poison", "label_error", "neighbours disagree")}
    fs = failure_set(fail, triage)
    assert [i.id for i in fs.items] == ["h", "l", "m", "a"] and len(fs) == 4
    assert [i.judge for i in fs.items] == ["human", "llm:claude", "exact_match", "auto"]
    assert [i.fixable for i in fs.items] == [None, False, None, None]
    assert fs.metadata["judges"] == {"auto": 1, "exact_match": 1, "human": 1, "llm:claude": 1}
    assert fs.metadata["uncorrected"] == 1 and fs.metadata["poison"] == 1
    assert fs.items[3].stratum == "uncorrected"
    json.dumps(fs.to_rows())
    with pytest.raises(ValueError, match="no failing traces"):
        failure_set([])


@pytest.mark.parametrize("fraction", [0.3, 0.5, 1.0])
def test_regression_set_size_within_bounds_and_strata_proportional(passing, fraction):
    n_fail = 40
    rs = regression_set(passing, n_fail, fraction=fraction, seed=7)
    size = math.ceil(fraction * n_fail)
    assert len(rs) == size and 0.3 * n_fail <= len(rs) <= n_fail
    counts = Counter(i.stratum for i in rs.items)
    assert set(counts) == set(SIZES)  # every label represented
    total = sum(SIZES.values())
    for lab, n in SIZES.items():
        assert abs(counts[lab] - size * n / total) <= 1.5, (lab, counts[lab])
    ids = {t.id for t in passing}
    assert all(i.id in ids for i in rs.items) and len({i.id for i in rs.items}) == len(rs)
    assert rs.metadata["strata"] == dict(sorted(counts.items())) and not rs.metadata["short"]


def test_regression_set_is_seeded(passing):
    a = regression_set(passing, 40, seed=1)
    b = regression_set(passing, 40, seed=1)
    c = regression_set(passing, 40, seed=2)
    assert a.to_rows() == b.to_rows()
    assert {i.id for i in a.items} != {i.id for i in c.items}


def test_regression_set_bounds_and_short_pass_pool(passing):
    with pytest.raises(ConfigError, match="outside 0.3-1.0"):
        regression_set(passing, 10, fraction=0.2)
    with pytest.raises(ConfigError):
        regression_set(passing, 10, fraction=1.5)
    small = regression_set(passing[:5], 40, fraction=0.5)
    assert len(small) == 5 and small.metadata["short"]
    assert len(regression_set(passing, 0)) == 0


def test_regression_set_stratifies_ner_by_entity_type():
    def t(tid, text, labels):
        spans = json.dumps([{"start": i, "end": i + 1, "label": lab} for i, lab in enumerate(labels)])
        return Trace.from_row({"id": tid, "input": text, "prediction": spans, "verdict": "pass", "task": "ner"})

    passing = ([t(f"p{i}", "abcdef", ["person"]) for i in range(20)] + [t(f"l{i}", "abcdef", ["location"]) for i in range(10)]
               + [t(f"n{i}", "abcdef", []) for i in range(10)])
    rs = regression_set(passing, 12, fraction=1.0)
    assert Counter(i.stratum for i in rs.items) == {"person": 6, "location": 3, "none": 3}


def test_judge_method_default():
    assert judge_method(Trace("x", "a", "b", None, "pass", "classification")) == "auto"


def test_the_fix_holdout_draws_inputs_and_holds_out_every_copy():
    from engine.diagnosis.eval_sets import EvalItem, fix_holdout

    items = [EvalItem(f"t{i}", f"request {i % 10}", "a" if i % 2 else "b", "a" if i % 2 else "b", "auto", True)
             for i in range(20)]  # ten inputs, each seen twice
    items.append(EvalItem("p", "junk", "a", "a", "auto", False))  # poison: never held out
    held = fix_holdout(items, 0.2, seed=3)
    inputs = {i.input for i in items if i.id in held}
    assert len(inputs) == 2 and len(held) == 4  # 20% of the ten inputs, both copies of each
    assert "p" not in held and fix_holdout(items, 0.2, seed=3) == held


def test_a_fix_holdout_of_few_failures_is_raised_to_a_measurable_count_but_never_past_half():
    from engine.diagnosis.eval_sets import EvalItem, fix_holdout

    def items(n: int) -> list[EvalItem]:
        return [EvalItem(f"t{i}", f"request {i}", "a", "a", "auto", True) for i in range(n)]

    assert len(fix_holdout(items(10), 0.2, at_least=5)) == 5  # 20% would be 2
    assert len(fix_holdout(items(6), 0.2, at_least=5)) == 3  # half of six
    assert len(fix_holdout(items(40), 0.2, at_least=5)) == 8  # the share, when it is more
    assert fix_holdout(items(10), 0.0, at_least=5) == []  # no holdout asked for (the strict rule)


def test_a_negative_fix_holdout_floor_is_refused_naming_the_field():
    from engine.production.config import ProductionConfig

    with pytest.raises(ConfigError, match=r"ProductionConfig\.min_fix_holdout=-1 is invalid: use a count"):
        ProductionConfig(model="m", min_fix_holdout=-1)
