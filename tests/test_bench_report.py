"""AdaptFT-Bench report tables and chart from a small synthetic result."""

from __future__ import annotations

import json

from engine.bench.adaptft import BenchResult, Checkpoint
from engine.bench.report import (
    agent_monotone,
    checkpoint_rows,
    final_gap,
    markdown,
    perturbation_rows,
    triage_scores,
    write_report,
)


def result(agent: tuple[float, ...] = (0.80, 0.84, 0.84, 0.90)) -> BenchResult:
    naive = (0.80, 0.78, 0.70, 0.62)
    checkpoints = [Checkpoint(f"C{i + 1}", rate, {"agent": a, "naive": n, "oracle": 0.85, "clean_only": 0.81},
                              f"m{i}", None if i == 0 else i != 2, None if i == 0 else f"r{i}", "")
                   for i, (rate, a, n) in enumerate(zip((None, 0.15, 0.25, 0.40), agent, naive, strict=True))]
    logs = [
        {"id": "1", "stage": "stage1", "types": ["typos"], "poisoned": False, "label_valid": True,
         "verdict": "fail", "action": "fixable"},
        {"id": "2", "stage": "stage1", "types": ["typos", "prompt_injection"], "poisoned": True, "label_valid": True,
         "verdict": "fail", "action": "poison:injection"},
        {"id": "3", "stage": "stage2", "types": ["off_domain_queries"], "poisoned": True, "label_valid": False,
         "verdict": "fail", "action": "fixable"},
        {"id": "4", "stage": "stage2", "types": ["typos"], "poisoned": False, "label_valid": True,
         "verdict": "pass", "action": "passed"},
        {"id": "5", "stage": "stage3", "types": [], "poisoned": False, "label_valid": True,
         "verdict": "pass", "action": "passed"},
    ]
    return BenchResult("syn", "classification", 0, "accuracy", 120, 100, checkpoints, logs,
                       {"correct": 10, "wrong": 3}, 61.0, {})


def test_checkpoint_table_and_gap():
    rows = checkpoint_rows(result())
    assert [r["checkpoint"] for r in rows] == ["C1", "C2", "C3", "C4"]
    assert rows[3]["delta"] == 0.28 and rows[0]["delta"] == 0.0
    assert rows[2]["promoted"] is False
    assert final_gap(result()) == 0.28
    assert agent_monotone(result())
    assert not agent_monotone(result((0.8, 0.85, 0.83, 0.9)))
    text = markdown(result())
    assert "| C4 | 40% | 62.0 | 90.0 | +28.0 | 85.0 | 81.0 | yes |" in text
    assert "+28.0 points" in text and "never decreases: yes" in text


def test_perturbation_table_counts_what_the_agent_did():
    by_type = {r["type"]: r for r in perturbation_rows(result())}
    assert by_type["typos"] == {"type": "typos", "count": 3, "fixable": True, "passed": 1, "trained_as_fixable": 1,
                                "fixable_uncorrected": 0, "excluded_as_poison": 1, "other": 0}
    assert by_type["off_domain_queries"]["fixable"] is False
    assert by_type["off_domain_queries"]["trained_as_fixable"] == 1
    scores = triage_scores(result())
    assert scores["poisoned_failing"] == 2 and scores["poison_caught"] == 1
    assert scores["poison_recall"] == 0.5 and scores["poison_precision"] == 1.0


def test_write_report_files(tmp_path):
    paths = write_report(result(), tmp_path / "out")
    assert json.loads(paths["result"].read_text())["checkpoints"][3]["scores"]["agent"] == 0.9
    assert BenchResult.from_dict(json.loads(paths["result"].read_text())).checkpoints[1].name == "C2"
    html = paths["chart"].read_text()
    assert "plotly" in html.lower() and "<script" in html and "<script src=" not in html
    assert "AdaptFT-Bench" in paths["report"].read_text()
    assert not list((tmp_path / "out").glob("*.tmp*"))


def test_the_report_says_where_the_time_went_and_older_results_still_load():
    from dataclasses import replace

    timed = replace(result(), seconds_by_phase={"agent: production mode": 1500.0, "training: clean_only": 660.0},
                    training_rates={"models trained": 20.0, "training examples/s": 7.9, "training tokens/s": 241.3})
    assert ("Where the time went: agent: production mode 25.0 min; training: clean_only 11.0 min; 20 models "
            "trained, 7.9 training examples/s, 241.3 training tokens/s.") in markdown(timed)
    assert "Where the time went" not in markdown(result())  # a result written before the breakdown existed
    raw = result().to_dict()
    del raw["seconds_by_phase"], raw["training_rates"]
    assert BenchResult.from_dict(raw).seconds_by_phase == {}


def test_the_agent_runs_list_every_candidate_on_the_held_out_union_and_the_one_deployed():
    res = result()
    res.checkpoints[3].candidates = {"n0001": {"model": "r3.n0001.m1", "score": 0.44},
                                     "n0002": {"model": "m3", "score": 0.5}}
    text = markdown(res)
    assert "- C4: run `r3`, promoted (); candidates on the held-out union: n0001 44.0, n0002 50.0 (deployed)" in text
    assert "- C3: run `r2`, kept the deployed model ()\n" in text  # no candidates recorded: nothing added
    again = BenchResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert again.checkpoints[3].candidates == res.checkpoints[3].candidates
