"""Production mode on a synthetic intent deployment (tiny BERT): diagnosis, the curriculum's controls,
failures fixed under the gates, promotion only through the reviewer, the rollback path when a
candidate regresses, and the cross-checkpoint gate on a second run."""

from __future__ import annotations

import json
import math
import os

import pytest
from production_fixture import MODEL_NAME, POISON, build_template, copy_workspace

from engine.data.quality import input_hash
from engine.errors import ConfigError
from engine.production import ProductionConfig, improve, load_diagnosis
from engine.search.llm_planner import LLMPlanner
from engine.search.loop import LoopConfig
from engine.search.mcgs import ExplorationSchedule, MCGSConfig
from engine.search.reviewer import Confirmation, CurriculumReview, Decision, HeadlessReviewer
from store import Store

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("deployment"))


class Gatekeeper:
    """Approves every curriculum and rollback; answers promotion with `promote`; records what it saw."""

    def __init__(self, promote: bool) -> None:
        self.promote = promote
        self.who = "gatekeeper"
        self.asked: list[tuple[str, str | None]] = []

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        self.asked.append(("curriculum", review.node_id))
        return Decision("approve")

    def confirm_rollback(self, info: Confirmation) -> bool:
        self.asked.append(("rollback", info.node_id))
        return True

    def confirm_promotion(self, info: Confirmation) -> bool:
        self.asked.append(("promotion", info.node_id))
        return self.promote


def config(**kw) -> ProductionConfig:
    return ProductionConfig(**{"model": MODEL_NAME, "max_iterations": 3, "trainer_threads": 1, **kw})


def test_production_config_names_the_bad_field():
    for kw, field in [({"regression_fraction": 0.2}, "regression_fraction"), ({"embedder": "bert"}, "embedder"),
                      ({"hyperparams": {"task": "ner"}}, "hyperparams"), ({"tau": 1.5}, "tau"),
                      ({"max_iterations": 0}, "max_iterations"), ({"full_replay_below": -1}, "full_replay_below"),
                      ({"probe_head": "yes"}, "probe_head")]:
        with pytest.raises(ConfigError, match=field):
            ProductionConfig(model="m", **kw)
    assert ProductionConfig.from_dict(config().to_dict()) == config()


def test_auto_embedder_is_minilm_when_its_package_is_installed(monkeypatch):
    from engine.diagnosis.embedders import MiniLMEmbedder, resolve_embedder

    assert ProductionConfig(model="m").embedder == "auto"
    assert resolve_embedder("tfidf") == "tfidf" and resolve_embedder("minilm") == "minilm"
    monkeypatch.setattr(MiniLMEmbedder, "locate", staticmethod(lambda: (_ for _ in ()).throw(RuntimeError("no"))))
    assert resolve_embedder("auto") == "tfidf"
    monkeypatch.setattr(MiniLMEmbedder, "locate", staticmethod(lambda: "/installed"))
    assert resolve_embedder("auto") == "minilm"


@pytest.mark.slow
def test_failures_are_fixed_and_promoted_through_the_reviewer(template, tmp_path):
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        reviewer = Gatekeeper(promote=True)
        summary = improve(store, config(), reviewer=reviewer)
        run_id = summary.run_id
        events = store.runs.events(run_id)
        diagnosis = load_diagnosis(store, run_id)

        # taxonomy: every failing trace in exactly one cluster; poison triaged external, reported apart
        taxonomy = next(e.payload for e in events if e.type == "taxonomy_built")
        covered = [t for c in taxonomy["clusters"] for t in c["trace_ids"]]
        assert sorted(covered) == sorted(diagnosis.fail_ids) and len(covered) == template.n_fail
        poison_ids = {"p0", "p1"}
        external = {t for c in taxonomy["clusters"] if c["fixability"] == "external" for t in c["trace_ids"]}
        assert poison_ids <= external
        assert {c["kind"] for c in taxonomy["clusters"] if poison_ids & set(c["trace_ids"])} == {"injection", "gibberish"}
        assert all(c["confirmation_rate"] is not None for c in taxonomy["clusters"] if c["fixability"] == "fixable")
        failure = diagnosis.failure
        assert failure.metadata["poison"] == len(external) and failure.metadata["fixable"] == template.n_fail - len(external)

        # regression set (the traffic rule): stratified, half of T_pass; fix holdout: a fifth of the fixable
        # failures, but at least five (19 fixable: a fifth would be 4)
        regression = diagnosis.regression
        assert len(regression) == math.ceil(0.5 * template.n_pass)
        assert len({i.stratum for i in regression.items}) == 4
        fixable_ids = [i.id for i in diagnosis.failure.items if i.fixable is not False and i.expected is not None]
        assert len(diagnosis.holdout_ids) == max(round(0.2 * len(fixable_ids)), 5) == 5
        notes = "".join(e.payload["markdown"] for e in events if e.type == "curation_note")
        assert f"fix holdout: 5 of the {len(fixable_ids)} fixable failures never trained on" in notes
        assert set(diagnosis.holdout_ids) <= set(fixable_ids)

        # every curriculum: no poison, no regression-set input; this D_parent is small (<= full_replay_below),
        # so it is replayed in full (before quality controls), where it used to be a 10-20% sample
        held_out = {input_hash(i.input) for i in diagnosis.failure.items if i.id in set(diagnosis.holdout_ids)}
        protected = {input_hash(i.input) for i in regression.items} | held_out
        parent = store.datasets.rows(diagnosis.parent_version)
        for node in store.runs.nodes(run_id):
            if not node["dataset_version_id"]:
                continue
            rows = store.datasets.rows(node["dataset_version_id"])
            assert not {input_hash(r["input"]) for r in rows} & protected
            assert not {r["input"] for r in rows} & {text for text, _ in POISON}
            replay = [r for r in rows if r["slice"] == "replay"]
            # replay: D_parent plus verified passes outside the regression set
            assert replay and all(r["source"].startswith("parent-") or r["source"] in set(diagnosis.pass_ids)
                                  for r in replay)
            from_parent = {r["input"] for r in rows if str(r.get("source", "")).startswith("parent-")}
            assert len(replay) > math.floor(0.2 * len(parent))
            assert len(from_parent) >= 0.8 * len(parent)
            assert len({r["id"] for r in rows}) == len(rows)

        # the promoted candidate fixed the failing slice within the regression budget, through the reviewer
        promoted = next(e.payload for e in events if e.type == "promoted")
        node = next(n for n in store.runs.nodes(run_id) if n["id"] == promoted["node_id"])
        assert summary.promoted and summary.promoted_model == promoted["model_id"] == node["model_id"]
        assert ("promotion", node["id"]) in reviewer.asked
        gates = [e.payload for e in events if e.type == "gate_checked" and e.payload["node_id"] == node["id"]]
        assert {g["gate"] for g in gates} == {"gain", "regression_rate", "monotone"}
        assert all(g["passed"] and g["gate_rule"] == "traffic" for g in gates)
        assert store.models.deployed()["id"] == promoted["model_id"]
        old = store.models.get(template.model_id)
        assert old["status"] == "retired" and old["metrics"]["score"] == 0.0  # its score on this run's evaluation

        # per-example evaluations back the numbers: a(pi) over the fixable failures, r over the regression set
        rows = store.runs.evaluations(node["id"])
        fixable = {i.id for i in failure.items if i.fixable}
        fixed = [r for r in rows if r["eval_set"] == "failure" and r["example_id"] in fixable and r["correct"] == 1]
        assert len(fixed) / len(fixable) == pytest.approx(node["score"])
        regressed = [r for r in rows if r["eval_set"] == "regression" and r["correct"] == 0]
        assert len(regressed) == node["regressions"]
        assert len([r for r in rows if r["eval_set"] == "failure"]) == template.n_fail
        # the traffic rule's evidence is read off the per-example rows of items the candidate never trained on
        evidence = node["metrics"]["candidate"]["evidence"]
        holdout = set(diagnosis.holdout_ids)
        assert evidence == {"n_traffic": template.n_fail + template.n_pass, "n_fixable": len(fixable),
                            "n_pass": template.n_pass, "holdout": len(holdout),
                            "holdout_fixed": sum(1 for r in fixed if r["example_id"] in holdout),
                            "regression": len(regression), "broken": len(regressed)}
        assert next(g for g in gates if g["gate"] == "gain")["value"] > 0

        # the summary reports taxonomy, per-iteration verdicts and the decision
        assert [c["id"] for c in summary.clusters] == [c["id"] for c in taxonomy["clusters"]]
        assert summary.iterations[0].operator == "root" and summary.iterations[0].score == 0.0
        assert summary.iterations[-1].gates == {"gain": True, "regression_rate": True, "monotone": True}
        assert summary.outcome == f"promoted {promoted['model_id']}"


def scripted_planner(proposals: list[dict]) -> tuple[LLMPlanner, list[dict]]:
    """The LLM boundary through litellm's mock_response: fixability judgments say fixable, expansions
    follow the script, and once it is spent the call fails (the rule planner takes over)."""
    import litellm

    asked: list[dict] = []

    def complete(**kwargs):
        prompt = kwargs["messages"][1]["content"]
        if prompt.startswith("Can training fix"):
            return litellm.completion(**kwargs, mock_response=json.dumps({"verdict": "fixable", "reason": "clean"}))
        asked.append(kwargs)
        if len(asked) > len(proposals):
            raise RuntimeError("no more scripted answers")
        return litellm.completion(**kwargs, mock_response=json.dumps({"proposals": [proposals[len(asked) - 1]]}))

    return LLMPlanner("gpt-4o-mini", completion=complete), asked


@pytest.mark.slow
def test_a_regressing_candidate_is_rolled_back_after_the_reviewer_confirms(template, tmp_path):
    planner, asked = scripted_planner([
        {"changes": {"hyperparams.epochs": 4.0}, "rationale": "fewer epochs"},
        {"changes": {"hyperparams.learning_rate": 1e-6}, "rationale": "a much lower learning rate"},
    ])
    # a 10-20% replay sample and a random head, so the scripted moves do regress
    cfg = config(full_replay_below=0, probe_head=False)
    loop = LoopConfig(mcgs=MCGSConfig(horizon=3, candidates_per_expansion=1,
                                      schedule=ExplorationSchedule("constant", c0=3.0, c_min=0.0)),
                      gates=cfg.loop_config().gates)
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        reviewer = Gatekeeper(promote=True)
        summary = improve(store, cfg, reviewer=reviewer, planner=planner, loop=loop)
        nodes = {n["id"]: n for n in store.runs.nodes(summary.run_id)}
        events = store.runs.events(summary.run_id)
        n1, n2 = (n for n in nodes.values() if n["rationale"] in ("fewer epochs", "a much lower learning rate"))
        assert n2["parent_id"] == n1["id"] and n2["score"] < n1["score"] < 0.96

        rollback = next(e.payload for e in events if e.type == "rollback")
        assert rollback["node_id"] == n2["id"]
        assert (rollback["from_model"], rollback["to_model"]) == (n2["model_id"], n1["model_id"])
        assert ("rollback", n2["id"]) in reviewer.asked
        decision = next(d for d in store.runs.decisions(summary.run_id) if d["kind"] == "rollback")
        assert (decision["action"], decision["node_id"], decision["who"]) == ("approve", n2["id"], "gatekeeper")
        # registry restored: the regressed model is rolled back, the restored one is untouched
        assert store.models.get(n2["model_id"])["status"] == "rolled_back"
        assert store.models.get(n1["model_id"])["status"] in ("candidate", "deployed")
        # the regressed node is closed and the search grows from the restored node's data and configuration
        assert n2["metrics"]["exhausted"] is True
        after = [n for n in nodes.values() if n["iteration"] > n2["iteration"]]
        assert after and all(n["parent_id"] == n1["id"] for n in after)
        assert after[0]["rationale"].startswith(rollback["reason"])
        # the planner's judgment was applied to the taxonomy (fixable, from the planner)
        taxonomy = next(e.payload for e in events if e.type == "taxonomy_built")
        assert {c["fixability_source"] for c in taxonomy["clusters"] if c["fixability"] == "fixable"} == {"planner"}
        assert len(asked) >= 2


@pytest.mark.slow
def test_refused_promotion_keeps_the_deployed_model_and_the_next_run_checks_the_previous_checkpoint(template,
                                                                                                 tmp_path):
    """The paper's rule (--gate strict): a refusal goes on searching and every passing candidate is offered;
    the next run gates candidates again on what the deployed model got right before."""
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        first = improve(store, config(gate="strict"), reviewer=Gatekeeper(promote=False))
        assert not first.promoted
        assert first.outcome.startswith(f"kept the deployed model {template.model_id}: refused by a person "
                                        "(gatekeeper): ")
        assert store.models.deployed()["id"] == template.model_id
        assert not any(e.type == "promoted" for e in store.runs.events(first.run_id))
        refusal = [d for d in store.runs.decisions(first.run_id) if d["kind"] == "promotion"]
        assert refusal and all(d["action"] == "refuse" for d in refusal)
        assert first.reason.startswith("iterations budget spent")  # the search went on after each refusal

        # run 2: what the deployed model got right in run 1 is its checkpoint set; candidates are gated on it
        # (what it got wrong cannot regress: it is in run 2's failure set, to be learnt)
        second = improve(store, config(seed=1, gate="strict"), reviewer=Gatekeeper(promote=True))
        diagnosis = load_diagnosis(store, second.run_id)
        evaluated = {r["example_id"]: r["correct"] for r in store.runs.evaluations(
            next(n["id"] for n in store.runs.nodes(first.run_id) if n["parent_id"] is None))}
        before = {k: v for k, v in evaluated.items() if v == 1}
        assert before and len(before) < len(evaluated)
        assert {r["id"] for r in diagnosis.cross} == set(before)
        events = store.runs.events(second.run_id)
        cross_gates = [e.payload for e in events if e.type == "gate_checked" and e.payload["gate"] == "cross_checkpoint"]
        assert cross_gates
        for gate in cross_gates:
            rows = store.runs.evaluations(gate["node_id"], "cross_checkpoint")
            assert len(rows) == len(before)
            assert gate["value"] == sum(1 for r in rows if before[r["example_id"]] == 1 and r["correct"] == 0)
            assert gate["passed"] is (gate["value"] <= 2)
        if second.promoted:
            node = next(n for n in store.runs.nodes(second.run_id) if n["model_id"] == second.promoted_model)
            assert node["metrics"]["gates"]["passed"] and node["metrics"]["cross_checkpoint.regressions"] <= 2


@pytest.mark.slow
def test_the_churn_budget_retrains_the_deployed_recipe_once_and_the_gates_use_it(template, tmp_path):
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        summary = improve(store, config(max_iterations=1, churn_budget=True), reviewer=Gatekeeper(promote=False))
        events = store.runs.events(summary.run_id)
        _, note = [e.payload for e in events if e.payload.get("section") == "Regression budget"]
        data, deployed = note["data"], store.models.get(template.model_id)
        twin = store.models.get(data["model_id"])
        assert twin["parent_id"] == template.model_id and twin["status"] != "deployed"
        assert twin["dataset_version_id"] == deployed["dataset_version_id"] == load_diagnosis(
            store, summary.run_id).parent_version
        assert twin["hyperparameters"]["seed"] == deployed["hyperparameters"]["seed"] + 1 == data["seed"]
        assert {k: v for k, v in twin["hyperparameters"].items() if k != "seed"} == \
            {k: v for k, v in deployed["hyperparameters"].items() if k != "seed"}
        diagnosis = load_diagnosis(store, summary.run_id)
        assert 0 <= data["broken"] <= data["guarded"] == len(diagnosis.regression) + len(diagnosis.cross)
        assert data["budget"] == max(0.05, data["rate"])
        rates = [e.payload for e in events if e.type == "gate_checked" and e.payload["gate"] == "regression_rate"]
        assert rates and all(r["threshold"] == pytest.approx(max(data["budget"], 2 / len(diagnosis.regression)))
                             for r in rates)


@pytest.mark.slow
def test_headless_never_refuses_every_curriculum_and_keeps_the_deployed_model(template, tmp_path):
    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        summary = improve(store, config(max_iterations=2), reviewer=HeadlessReviewer("never"))
        assert summary.status == "finished" and not summary.promoted
        assert summary.reason.startswith("search exhausted")
        assert store.models.deployed()["id"] == template.model_id
        trained = [i for i in summary.iterations if i.operator != "root"]
        assert trained and all(i.status == "vetoed" for i in trained)
        assert not any(e.type == "train_started" for e in store.runs.events(summary.run_id))


@pytest.mark.slow
def test_a_node_that_changes_only_the_threshold_reuses_its_twins_weights(template, tmp_path, monkeypatch):
    """The threshold is applied at inference: sweeping it costs an evaluation, not a training run;
    a fine-tune starts from the probe's head (recorded in its manifest)."""
    import engine.models.factory as factory
    from engine.models.predictor import read_manifest

    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        first, runner, source = first_candidate(store)
        assert read_manifest(first["artifact_path"])["head_init"] == "probe"  # the fixture's recipe is `full`
        swept = variant(runner, source, "sweep", {"hyperparams.threshold": 0.7})
        monkeypatch.setattr(factory, "train_and_register", lambda *a, **k: pytest.fail("trained again"))
        runner.train(swept, swept.dataset_version_id, "sweep.m1", lambda p: None, lambda: False)
        reused = store.models.get("sweep.m1")
        manifest = read_manifest(reused["artifact_path"])
        assert manifest["weights_of"] == first["id"] and manifest["config"]["threshold"] == 0.7
        assert reused["hyperparameters"]["threshold"] == 0.7 and reused["parent_id"] == template.model_id
        evaluation = runner.evaluate(swept, "sweep.m1")
        assert evaluation.metrics["threshold"] == 0.7
        # a change of the training itself (another seed) is trained, not reused
        other = variant(runner, source, "seed", {"hyperparams.seed": 5})
        with pytest.raises(pytest.fail.Exception, match="trained again"):
            runner.train(other, other.dataset_version_id, "seed.m1", lambda p: None, lambda: False)


def runner_nodes(store: Store, run_id: str):
    from engine.search.graph import SearchGraph

    return list(SearchGraph.load(store, run_id).nodes.values())


def first_candidate(store: Store):
    """A one-iteration run on the template: its trained candidate's registry row, a runner over the
    run's diagnosis, and the candidate's node."""
    from engine.production import ProductionRunner

    summary = improve(store, config(max_iterations=1, embedder="tfidf"), reviewer=HeadlessReviewer("auto"))
    trained = next(n for n in store.runs.nodes(summary.run_id) if n["parent_id"] is not None and n["model_id"])
    cfg = ProductionConfig.from_dict(store.runs.get(summary.run_id)["config"]["production"])
    runner = ProductionRunner(store, summary.run_id, load_diagnosis(store, summary.run_id), cfg)
    source = next(n for n in runner_nodes(store, summary.run_id) if n.id == trained["id"])
    return store.models.get(trained["model_id"]), runner, source


def variant(runner, source, node_id: str, changes: dict):
    """A child of `source` with `changes`, its curriculum built."""
    from dataclasses import replace as dc_replace

    from engine.search.graph import Node

    node = Node(node_id, source.pipeline.modify(changes), source.id, "expand", 2)
    return dc_replace(node, dataset_version_id=runner.build_curriculum(node))


def test_broken_passes_count_as_errors_of_their_kind_for_the_planner():
    """NER hallucinations on sentences without entities show only on the regression set; they must
    make the error balance precision-dominated (threshold sweep, hard negatives)."""
    from types import SimpleNamespace

    from engine.diagnosis.eval_sets import EvalItem
    from engine.production import ProductionRunner

    ner = SimpleNamespace(d=SimpleNamespace(labels=["person"]), task="ner", cluster_of={})
    span = [{"start": 0, "end": 4, "label": "person"}]
    fixable = {"f1": EvalItem("f1", "John left", span, "person", "exact")}
    hallucinated = [(f"r{k}", [], [{"start": 0, "end": 2, "label": "person"}]) for k in range(3)]
    summary = ProductionRunner._failures(ner, ["f1"], {"f1": []}, fixable, None, 0.0, hallucinated)
    assert (summary.false_positives, summary.false_negatives) == (3, 1)
    assert ProductionRunner._failures(ner, ["f1"], {"f1": []}, fixable, None, 0.0).false_positives == 0

    clf = SimpleNamespace(d=SimpleNamespace(labels=["a", "b"]), task="classification", cluster_of={})
    fixable = {"f1": EvalItem("f1", "x", "a", "a", "exact")}
    summary = ProductionRunner._failures(clf, ["f1"], {"f1": "b"}, fixable, None, 0.0, [("r1", "b", "a"), ("r2", "b", "a")])
    assert summary.confusion_pairs == (("b", "a", 2), ("a", "b", 1))


@pytest.mark.slow
def test_averaging_with_the_deployed_model_reuses_the_candidates_weights(template, tmp_path, monkeypatch):
    """strategy.merge_deployed averages the trained candidate (its twin without the average, reused) with
    the deployed model's weights; a LoRA pipeline with an average is refused when built, and a method
    unlike the deployed model's fails the node before any training."""
    from dataclasses import replace as dc_replace

    import torch
    from safetensors.torch import load_file

    import engine.models.factory as factory
    from engine.models.predictor import read_manifest
    from engine.search.graph import Node
    from engine.search.loop import NodeFailed

    with Store(copy_workspace(template, tmp_path / "ws")) as store:
        first, runner, source = first_candidate(store)
        merged = variant(runner, source, "avg", {"strategy.merge_deployed": 0.25})
        monkeypatch.setattr(factory, "train_and_register", lambda *a, **k: pytest.fail("trained again"))
        runner.train(merged, merged.dataset_version_id, "avg.m1", lambda p: None, lambda: False)
        folder = store.models.get("avg.m1")["artifact_path"]
        manifest = read_manifest(folder)
        assert manifest["weights_of"] == first["id"]
        assert manifest["merged_with"] == {"model": template.model_id, "share": 0.25}
        mine, old = (load_file(f"{p}/model.safetensors") for p in (first["artifact_path"],
                                                                  store.models.get(template.model_id)["artifact_path"]))
        got = load_file(f"{folder}/model.safetensors")
        for key in ("classifier.weight", "bert.embeddings.word_embeddings.weight"):
            assert torch.allclose(got[key], 0.75 * mine[key] + 0.25 * old[key], atol=1e-6)
        assert runner.evaluate(merged, "avg.m1").metrics
        for method in ("linear_probe", "lora"):  # only a model trained the way the deployed one was is averaged
            other = Node(method, merged.pipeline.modify({"hyperparams.method": method}), source.id, "expand", 3)
            other = dc_replace(other, dataset_version_id=merged.dataset_version_id)
            with pytest.raises(NodeFailed, match=f"method is 'full', the candidate's '{method}'"):
                runner.train(other, other.dataset_version_id, f"{method}.m1", lambda p: None, lambda: False)
