"""Fork from a node (engine.production.fork): a new production run whose root pipeline is exactly the historical
node's and which works on the source run's diagnosis, recorded in its config and curation log,
resumable like any run; after the diagnosed model was replaced, the node's recipe carried over to the
deployed model's own traces; and the forks it refuses, each with a one-line reason."""

from __future__ import annotations

import json
import shutil

import pytest
from fixtures.fork_source import LLM_CHANGES, build_source

from engine.curation_log import render_curation_log
from engine.errors import ConfigError
from engine.ingest import ingest_traces
from engine.production import load_diagnosis
from engine.production.fork import fork_run, plan_fork
from engine.search.loop import resume_run
from engine.search.pipeline import Pipeline
from engine.search.reviewer import Confirmation, CurriculumReview, Decision, HeadlessReviewer
from store import Store

NEVER = HeadlessReviewer("never")  # vetoes every curriculum: the search runs, nothing is trained


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fork-source")
    with Store(folder / "ws") as store:
        source = build_source(store, folder)
    return folder / "ws", source


@pytest.fixture
def workspace(template, tmp_path):
    root, source = template
    shutil.copytree(root, tmp_path / "ws")
    with Store(tmp_path / "ws") as store:
        yield store, source


def node_row(store: Store, run_id: str, node_id: str) -> dict:
    return next(n for n in store.runs.nodes(run_id) if n["id"] == node_id)


def test_a_fork_starts_from_the_nodes_pipeline_on_the_sources_diagnosis(workspace):
    store, source = workspace
    node = node_row(store, source.run_id, source.node_id)
    assert node["parent_id"] is not None  # a non-root node, proposed by the (mocked) LLM planner
    pipeline = Pipeline.from_dict(node["pipeline"])
    summary = fork_run(store, plan_fork(store, source.run_id, source.node_id), reviewer=NEVER)

    fork = summary.run_id
    [root] = [n for n in store.runs.nodes(fork) if n["parent_id"] is None]
    assert Pipeline.from_dict(root["pipeline"]) == pipeline and root["pipeline_hash"] == pipeline.hash
    data, strategy = pipeline.data, pipeline.strategy
    assert [list(p) for p in data.focus_pairs] == LLM_CHANGES["data.focus_pairs"]
    assert [list(t) for t in data.targeted] == LLM_CHANGES["data.targeted"]
    assert (strategy.teacher, strategy.eval_method) == ("gpt-4o-mini", "macro_f1")
    # the search grows from it: every child keeps the node's targeted examples and strategy
    children = [Pipeline.from_dict(n["pipeline"]) for n in store.runs.nodes(fork) if n["parent_id"] == root["id"]]
    assert children and all(c.data.targeted == data.targeted and c.strategy == strategy for c in children)

    original, adopted = load_diagnosis(store, source.run_id), load_diagnosis(store, fork)
    assert adopted == original and adopted.failure.items and adopted.regression.items and adopted.triage
    config = store.runs.get(fork)["config"]
    assert (config["root"], config["diagnosis_from"], config["forked_from"]) == \
        (pipeline.to_dict(), source.run_id, source.node_id)
    assert config["production"] == store.runs.get(source.run_id)["config"]["production"]

    events = store.runs.events(fork)
    taxonomy = [e.payload for e in events if e.type == "taxonomy_built"]
    assert taxonomy == [next(e.payload for e in store.runs.events(source.run_id) if e.type == "taxonomy_built")]
    [note] = [e.payload["markdown"] for e in events if e.type == "curation_note" and e.payload["section"] == "Fork"]
    assert f"Forked from node `{source.node_id}` of run `{source.run_id}`" in note
    assert '`data.targeted` [] -> [["C1", 2]]' in note and '`strategy.teacher` null -> "gpt-4o-mini"' in note
    assert "rationale" in root and source.node_id in root["rationale"]
    log = render_curation_log(events)
    assert "- `root`: the forked node's pipeline (the root node below)" in log and '"focus_pairs"' not in log
    # the fork's curricula were built on the adopted sets: nothing from the regression set is trained on
    protected = {i.input for i in original.regression.items}
    versions = [n["dataset_version_id"] for n in store.runs.nodes(fork) if n["dataset_version_id"]]
    assert versions and all(not {r["input"] for r in store.datasets.rows(v)} & protected for v in versions)


def test_an_interrupted_fork_resumes_with_its_root_and_adopted_diagnosis(workspace):
    store, source = workspace
    plan = plan_fork(store, source.run_id, source.node_id)
    stopped = fork_run(store, plan, reviewer=NEVER, should_stop=lambda: True)
    assert stopped.status == "interrupted"
    fork = stopped.run_id
    result = resume_run(store, fork, reviewer=NEVER)
    assert result.status == "finished"
    events = store.runs.events(fork)
    assert [e.type for e in events].count("taxonomy_built") == 1  # adopted once, not again on resume
    assert sum(1 for e in events if e.type == "curation_note" and e.payload["section"] == "Fork") == 1
    [root] = [n for n in store.runs.nodes(fork) if n["parent_id"] is None]
    assert root["pipeline"] == plan.root.to_dict()
    assert load_diagnosis(store, fork) == load_diagnosis(store, source.run_id)
    assert len(store.runs.nodes(fork)) > 1  # the resumed search went on from the root


def test_forks_that_are_refused_say_why(workspace):
    store, source = workspace
    with pytest.raises(ConfigError, match="has no node nope with a stored pipeline"):
        plan_fork(store, source.run_id, "nope")
    with pytest.raises(ConfigError, match="run missing does not exist"):
        plan_fork(store, "missing", source.node_id)

    cold = store.runs.create("cold_start", {"cold_start": {}}, run_id="run-cold")
    with pytest.raises(ConfigError, match="run-cold is a cold_start run; only production runs can be forked"):
        plan_fork(store, cold, "run-cold.n0000")

    pipeline = node_row(store, source.run_id, source.node_id)["pipeline"]
    store.runs.create("production", store.runs.get(source.run_id)["config"], run_id="run-undiagnosed")
    store.runs.add_node("run-undiagnosed", pipeline, Pipeline.from_dict(pipeline).hash, node_id="run-undiagnosed.n0")
    with pytest.raises(ConfigError, match="run-undiagnosed was never diagnosed"):
        plan_fork(store, "run-undiagnosed", "run-undiagnosed.n0")

    newer = store.models.register(base_model="minilm", artifact_path=None, task="classification", name="intent-v2",
                                  parent_id=source.model_id)
    store.models.set_status(source.model_id, "retired")
    store.models.set_status(newer, "deployed")
    with pytest.raises(ConfigError, match=f"diagnosed {source.model_id}, since replaced by {newer}, which has no "
                                          r"traces yet: ingest its traces first \(`pioneer-tui ingest FILE`\)"):
        plan_fork(store, source.run_id, source.node_id)
    assert [r["id"] for r in store.runs.list()].count(source.run_id) == 1 and len(store.runs.list()) == 3


def test_a_node_of_a_run_whose_model_was_replaced_forks_onto_the_deployed_model(workspace, tmp_path):
    """After a promotion the old diagnosis cannot gate against the new model: the fork carries the node's
    recipe over to the deployed model and diagnoses its own traces (targeted examples named old clusters)."""
    store, source = workspace
    newer = store.models.register(base_model="minilm", artifact_path=None, task="classification", name="intent-v2",
                                  parent_id=source.model_id, dataset_version_id=store.models.get(source.model_id)[
                                      "dataset_version_id"])
    store.models.set_status(source.model_id, "retired")
    store.models.set_status(newer, "deployed")
    traffic = tmp_path / "v2.jsonl"
    traffic.write_text("".join(json.dumps({"id": f"v2-{i}", "ts": f"2026-11-08T10:0{i}:00Z", "model_id": newer,
                                           "task": "classification", "input": text, "prediction": "music",
                                           "verdict": "pass" if gold == "music" else "fail",
                                           **({} if gold == "music" else {"correction": gold})}) + "\n"
                               for i, (text, gold) in enumerate([("play a song tomorrow", "music"),
                                                                 ("the weather today", "weather"),
                                                                 ("rain tomorrow please", "weather")])))
    ingest_traces(store, traffic)

    plan = plan_fork(store, source.run_id, source.node_id)
    node = Pipeline.from_dict(node_row(store, source.run_id, source.node_id)["pipeline"])
    assert plan.diagnosis_from is None and plan.config.model == newer
    assert plan.root.data.targeted == () and node.data.targeted
    assert plan.root.data.focus_pairs == node.data.focus_pairs and plan.root.hyperparams == node.hyperparams

    fork = fork_run(store, plan, reviewer=HeadlessReviewer("never"))
    diagnosis = load_diagnosis(store, fork.run_id)
    assert diagnosis.deployed_id == newer and sorted(diagnosis.fail_ids) == ["v2-1", "v2-2"]
    config = store.runs.get(fork.run_id)["config"]
    assert config["forked_from"] == source.node_id and "diagnosis_from" not in config


class KeepDeployed:
    """A person who approves every curriculum and rollback but refuses promotion, so the deployed
    model stays the one the source run diagnosed (a promoted source cannot be forked)."""

    who = "test:keep-deployed"

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        return Decision("approve")

    def confirm_rollback(self, info: Confirmation) -> bool:
        return True

    def confirm_promotion(self, info: Confirmation) -> bool:
        return False


@pytest.mark.slow
def test_a_fork_of_a_trained_node_trains_on_the_adopted_sets(tmp_path):
    """The real deployment (tiny BERT, probes run through it): fork the source's trained node; the fork
    trains a child from that node's pipeline and scores it on exactly the source's evaluation sets."""
    from production_fixture import MODEL_NAME, build_template, copy_workspace

    from engine.production import ProductionConfig, improve

    template = build_template(tmp_path / "deployment")
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        config = ProductionConfig(model=MODEL_NAME, max_iterations=1, trainer_threads=1, embedder="tfidf")
        source = improve(store, config, reviewer=KeepDeployed())
        trained = [n for n in store.runs.nodes(source.run_id) if n["parent_id"] and n["model_id"]]
        assert trained and source.promoted_model is None
        node = trained[0]
        original = load_diagnosis(store, source.run_id)
        assert original.probes  # the deployed artifact answered the probes

        fork = fork_run(store, plan_fork(store, source.run_id, node["id"]), reviewer=KeepDeployed())
        assert load_diagnosis(store, fork.run_id) == original
        nodes = store.runs.nodes(fork.run_id)
        [root] = [n for n in nodes if n["parent_id"] is None]
        assert root["pipeline"] == node["pipeline"]
        children = [n for n in nodes if n["parent_id"] == root["id"] and n["model_id"]]
        assert children, "the fork trained a candidate from the node's pipeline"

        def example_ids(run_id: str, node_id: str) -> set[tuple[str, str]]:
            return {(eval_set, ex) for eval_set, ex in store.conn.execute(
                "SELECT eval_set, example_id FROM evaluations WHERE run_id = ? AND node_id = ?", (run_id, node_id))}

        assert example_ids(fork.run_id, children[0]["id"]) == example_ids(source.run_id, node["id"])
