"""Cold-start mode end to end on tiny models built from a config (no download): setup before any
training, the baseline root, a portfolio of configurations trained one after another, E never
trained on (by hash, also through a reviewer's edit), resume after an interruption, the plateau
stop, the planner wrapper, and the `pioneer-tui cold-start` command."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tiny_bert import build_tiny_bert, topic_examples
from tiny_decoder import tiny_decoder

from engine.catalog import Catalog
from engine.coldstart.mode import cold_start, plateau_reason
from engine.coldstart.planner import ColdStartPlanner
from engine.coldstart.setup import ColdStartConfig, load_setup
from engine.data.quality import input_hash
from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.search.graph import Node
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import RulePlanner, SearchState
from engine.search.policy import Action
from engine.search.reviewer import HeadlessReviewer
from store import Store


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), hidden_size=32))


def topic_file(folder: Path, noise: int = 6) -> Path:
    """Three topics; a few labels flipped so no configuration is perfect (both portfolio configs train)."""
    rows = topic_examples(16)
    rng = random.Random(1)
    flipped = set(rng.sample(range(len(rows)), noise))
    labels = ["weather", "music", "sports"]
    path = folder / "topics.jsonl"
    path.write_text("".join(json.dumps({"text": ex.input, "label": labels[(labels.index(ex.output) + 1) % 3]
                                        if i in flipped else ex.output}) + "\n" for i, ex in enumerate(rows)))
    return path


def config_for(data: Path, bert: str, **kw) -> ColdStartConfig:
    defaults = {"data": str(data), "base": bert, "embedder": "tfidf", "max_iterations": 1, "max_minutes": 10,
                "hyperparams": {"epochs": 3.0, "batch_size": 8}, "trainer_threads": 1, "tau": 0.999}
    return ColdStartConfig("classify requests by topic", **{**defaults, **kw})


def trained_rows(store: Store, run_id: str) -> list[dict]:
    versions = {m["dataset_version_id"] for m in store.models.list() if m["dataset_version_id"]
                and m["id"].startswith(run_id) and m["artifact_path"]}
    return [r for v in versions for r in store.datasets.rows(v)]


def test_plateau_is_read_from_the_stored_graph(tmp_path):
    with Store(tmp_path / "ws") as store:
        run = store.runs.create("cold_start", {})
        scores = [0.5, 0.7, 0.8, 0.8005, 0.79, 0.80]
        pipeline = {"data": {}, "hyperparams": {"task": "classification"}, "strategy": {}}
        for i, score in enumerate([0.4, *scores]):
            node = store.runs.add_node(run, pipeline, f"h{i}", node_id=f"{run}.n{i}")
            metrics = {"baseline": True} if i == 0 else {}
            store.runs.update_node(node, status="evaluated", score=score, metrics=metrics)
        assert plateau_reason(store, run, patience=4, min_improvement=0.002) is None
        reason = plateau_reason(store, run, patience=3, min_improvement=0.002)
        assert reason.startswith("plateau: the best score 0.8000") and "last 3 trained" in reason


def _node(pipeline: Pipeline, score: float, *, baseline: bool = False, parent: str | None = "r.n0") -> Node:
    return Node("r.n1" if parent else "r.n0", pipeline, parent, "expand" if parent else "root", 1, "evaluated",
                score=score, visits=1, total_reward=score, metrics={"baseline": "x"} if baseline else {})


def test_planner_starts_with_a_portfolio_then_drops_proposals_that_change_nothing():
    root = Pipeline(DatasetSpec(), TrainConfig(task="classification", method="lora"))
    moves = [({"hyperparams.method": "linear_probe"}, "probe"), ({"hyperparams.method": "full"}, "full"),
             ({"hyperparams.learning_rate": 1e-3}, "lora fast")]
    planner = ColdStartPlanner(RulePlanner(), moves, 2, {})
    action = Action("rework_data", "low", "rework_data")
    first = planner.expand(SearchState(_node(root, 0.3, baseline=True, parent=None), action, n_candidates=2))
    assert [p.pipeline.hyperparams.method for p in first] == ["linear_probe", "full"]
    assert all(p.rationale.startswith("cold-start portfolio") for p in first)
    probe = root.modify({"hyperparams.method": "linear_probe"})
    tune = Action("tune_hyperparams", "mid", "tune_hyperparams")
    later = planner.expand(SearchState(_node(probe, 0.9), tune, n_candidates=2))
    assert len(later) == 2
    for p in later:
        changed = {k.split(".", 1)[1] for k in probe.diff(p.pipeline) if k.startswith("hyperparams.")}
        assert not changed or not changed <= {"learning_rate", "batch_size", "epochs", "head_learning_rate"}
    assert [s.planner for s in planner.take_steps()] == ["rule", "rule"]


def test_bad_configuration_and_missing_data_fail_before_any_training(tmp_path, bert):
    with pytest.raises(ConfigError, match="configs_per_iteration"):
        ColdStartConfig("detect spam", configs_per_iteration=1)
    with pytest.raises(ConfigError, match="hyperparams has unknown"):
        ColdStartConfig("detect spam", hyperparams={"task": "ner"})
    with Store(tmp_path / "ws") as store:
        from engine.coldstart.registry import DataUnavailable

        with pytest.raises(DataUnavailable, match="--llm MODEL"):  # an empty catalog, no teacher: no run at all
            cold_start(store, ColdStartConfig("detect spam in SMS messages", base=bert),
                       reviewer=HeadlessReviewer("auto"), catalog=Catalog([]))
        assert store.runs.list() == [] and not store.models.list()
        with pytest.raises(DataUnavailable, match="nothing.jsonl"):  # a named source that fails: a failed run
            cold_start(store, ColdStartConfig("detect spam", data=str(tmp_path / "nothing.jsonl"), base=bert),
                       reviewer=HeadlessReviewer("auto"))
        run = store.runs.list()[-1]
        assert run["status"] == "failed" and "setup failed" in run["stop_reason"]


@pytest.mark.slow
def test_decoder_cold_start_learns_the_answer_format_from_a_tiny_llama(tmp_path):
    base = tiny_decoder(tmp_path / "llama")
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps({"question": f"Calculate {a} + {b}.", "answer": str(a + b)}) + "\n"
                            for a in range(8) for b in range(5)))
    config = ColdStartConfig("calculate sums", data=str(path), base=base, embedder="tfidf", max_iterations=1,
                             max_minutes=10, adversarial=4, hyperparams={"epochs": 1.0, "batch_size": 8}, shots=2)
    with Store(tmp_path / "ws") as store:
        summary = cold_start(store, config, reviewer=HeadlessReviewer("auto"))
        assert summary.analysis["task"] == "generation" and summary.analysis["metric"] == "exact_match"
        assert set(summary.baselines) == {"zero_shot", "few_shot"}
        prompts = [c.system_prompt for c in summary.configs]
        assert prompts == [True, False]  # the system prompt is a strategy choice of the portfolio
        assert all(c.status == "evaluated" for c in summary.configs)
        setup = load_setup(store, summary.run_id)
        assert setup.eval_set.report["neg"] > 0  # adversarial rewrites
        assert not {input_hash(r["input"]) for r in trained_rows(store, summary.run_id)} & setup.eval_set.input_hashes()


def test_teacher_rationales_are_written_once_and_reused_from_the_cache(tmp_path):
    from engine.coldstart.runner import teacher_rationales

    rows = [{"id": "gold:q1", "input": "Calculate 2 + 3.", "output": "5", "slice": "gold"}]
    cache = tmp_path / "rationales.json"
    first = teacher_rationales(rows, "gpt-4o-mini", {"mock_response": "Two plus three makes five."}, cache)
    assert first[0]["output"] == "Two plus three makes five.\n#### 5"
    again = teacher_rationales(rows, "gpt-4o-mini", {"mock_response": "something else"}, cache)
    assert again == first and json.loads(cache.read_text()) == {"Calculate 2 + 3.": "Two plus three makes five."}


@pytest.mark.slow
def test_chain_of_thought_supervision_from_the_datas_worked_answers(tmp_path):
    base = tiny_decoder(tmp_path / "llama")
    path = tmp_path / "worked.jsonl"
    path.write_text("".join(json.dumps({"question": f"Calculate {a} + {b}.",
                                        "answer": f"{a} plus {b} is {a + b}.\n#### {a + b}"}) + "\n"
                            for a in range(7) for b in range(5)))
    config = ColdStartConfig("solve sums step by step", data=str(path), base=base, embedder="tfidf", max_iterations=1,
                             max_minutes=10, adversarial=2, hyperparams={"epochs": 1.0, "batch_size": 8}, shots=1)
    with Store(tmp_path / "ws") as store:
        summary = cold_start(store, config, reviewer=HeadlessReviewer("auto"))
        assert summary.analysis["metric"] == "final_number" and summary.analysis["reasoning"]
        direct, cot = summary.configs
        assert (direct.supervision, cot.supervision) == ("direct", "chain_of_thought")
        nodes = {n["id"]: n for n in store.runs.nodes(summary.run_id)}
        assert "step by step" in nodes[cot.node_id]["pipeline"]["hyperparams"]["system_prompt"]
        cot_rows = store.datasets.rows(nodes[cot.node_id]["dataset_version_id"])
        direct_rows = store.datasets.rows(nodes[direct.node_id]["dataset_version_id"])
        assert all(" is " in r["output"] and "\n#### " in r["output"] for r in cot_rows)
        assert all("####" not in r["output"] for r in direct_rows)
