"""RulePlanner: each of the paper's rules, the policy bands, seeded fill-ins, evolve, fuse and judgments."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.search.graph import Node
from engine.search.pipeline import DatasetSpec, Pipeline, Strategy
from engine.search.planner import (
    ClusterInfo,
    FailureSummary,
    MoveOutcome,
    RulePlanner,
    SearchState,
    VetoFeedback,
    changes_nothing,
    move_signature,
)
from engine.search.policy import Action


def pipe(task: str = "classification", **hyper) -> Pipeline:
    return Pipeline(DatasetSpec(), TrainConfig(task=task, **hyper))


def node(p: Pipeline, score: float = 0.7, node_id: str = "n1", parent: str | None = None) -> Node:
    return Node(id=node_id, pipeline=p, parent_id=parent, operator="expand" if parent else "root", iteration=0,
                status="evaluated", score=score)


def state(p: Pipeline | None = None, band: str = "rework_data", n: int = 2, **kw) -> SearchState:
    kw.setdefault("failures", FailureSummary())
    action = kw.pop("action", Action(band, "policy says so", band))
    return SearchState(node=node(p or pipe()), action=action, n_candidates=n, **kw)


def test_overfitting_means_fewer_epochs_or_a_lower_learning_rate():
    s = state(band="tune_hyperparams", failures=FailureSummary(train_score=0.99, eval_score=0.85))
    first, second = RulePlanner().expand(s)
    assert first.modification == {"hyperparams.epochs": [3.0, 1.8]}
    assert second.modification == {"hyperparams.learning_rate": [5e-4, 2.5e-4]}
    assert "overfitting (train 0.990 vs eval 0.850)" in first.rationale
    assert all(p.operator == "expand" and p.planner == "rule" for p in (first, second))


def test_a_label_confusion_cluster_gets_hard_negatives_for_that_pair():
    s = state(failures=FailureSummary(confusion_pairs=(("translate", "change_language", 4), ("a", "b", 1))))
    proposal = RulePlanner().expand(s)[0]
    assert proposal.pipeline.data.focus_pairs == (("translate", "change_language"),)
    assert proposal.pipeline.data.hard_negative_fraction == pytest.approx(0.40)
    assert proposal.pipeline.data.gold_fraction == pytest.approx(0.60)
    assert "label confusion translate -> change_language (4)" in proposal.rationale


def test_recall_dominated_errors_get_more_gold():
    proposal = RulePlanner().expand(state(failures=FailureSummary(false_negatives=10, false_positives=2)))[0]
    assert proposal.modification == {"data.gold_fraction": [0.65, 0.7], "data.hard_negative_fraction": [0.35, 0.3]}
    assert "recall-dominated" in proposal.rationale


def test_precision_dominated_errors_get_hard_negatives_and_a_threshold_sweep():
    f = FailureSummary(false_positives=10, false_negatives=2)
    rework = RulePlanner().expand(state(failures=f, n=3))
    assert rework[0].modification == {"data.gold_fraction": [0.65, 0.6], "data.hard_negative_fraction": [0.35, 0.4]}
    assert [p.modification.get("hyperparams.threshold") for p in rework[1:]] == [[None, 0.6], [None, 0.7]]
    tune = RulePlanner().expand(state(failures=f, band="tune_hyperparams"))
    assert [p.pipeline.hyperparams.threshold for p in tune] == [0.6, 0.7]
    assert all("threshold sweep" in p.rationale for p in tune)


def test_plateau_changes_capacity_rank_or_method():
    def plateau(**hyper):
        return RulePlanner().expand(state(pipe(**hyper), band="tune_hyperparams", plateau=True))
    rank = plateau(lora_rank=8)
    assert rank[0].modification == {"hyperparams.lora_alpha": [16, 32], "hyperparams.lora_rank": [8, 16]}
    assert rank[1].modification == {"hyperparams.method": ["lora", "full"]}
    assert plateau(lora_rank=64)[0].modification == {"hyperparams.method": ["lora", "full"]}
    assert plateau(method="linear_probe")[0].pipeline.hyperparams.method == "lora"
    assert plateau(method="full")[0].pipeline.hyperparams.lora_rank == 32


def test_reasoning_task_with_a_teacher_gets_chain_of_thought_supervision():
    gen = pipe("generation")
    proposal = RulePlanner().expand(state(gen, reasoning=True, teacher="claude-x"))[0]
    assert proposal.pipeline.strategy == Strategy("chain_of_thought", "claude-x")
    for no in (state(gen, reasoning=True), state(gen, teacher="claude-x"), state(reasoning=True, teacher="t")):
        assert all(p.pipeline.strategy.supervision == "direct" for p in RulePlanner().expand(no))


def test_surgical_band_adds_targeted_examples_per_failure_pattern():
    action = Action("surgical_augmentation", "score 0.97", "surgical_augmentation",
                    targets=(("caps", 3), ("typos", 2)))
    proposal = RulePlanner().expand(state(action=action))[0]
    assert proposal.pipeline.data.targeted == (("caps", 3), ("typos", 2))
    assert proposal.rationale == "surgical augmentation: 3 targeted example(s) for caps, 2 targeted example(s) for typos"


def test_rollback_rationale_names_the_rollback():
    action = Action("rollback", "score fell: restore n0", "tune_hyperparams", rollback_to="n0")
    proposals = RulePlanner().expand(state(action=action, failures=FailureSummary(train_score=1.0, eval_score=0.8)))
    assert proposals[0].rationale.startswith("score fell: restore n0; overfitting")


def test_fill_in_moves_are_seeded_unseen_and_valid():
    base = pipe()
    seen = frozenset({base.hash, base.modify({"hyperparams.learning_rate": 1e-3}).hash})
    s = state(base, band="tune_hyperparams", n=4, seen=seen)
    a, b = RulePlanner(seed=1).expand(s), RulePlanner(seed=1).expand(s)
    assert [p.pipeline.hash for p in a] == [p.pipeline.hash for p in b]
    assert len(a) == 4 and len({p.pipeline.hash for p in a}) == 4
    assert not {p.pipeline.hash for p in a} & seen
    for p in a:
        assert base.diff(p.pipeline) == p.modification and p.pipeline.data == base.data  # data fixed
    orders = {tuple(p.rationale for p in RulePlanner(seed=k).expand(s)) for k in range(8)}
    assert len(orders) > 1


def test_production_data_moves_can_shift_replay_within_its_band():
    prod = Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.35,
                                replay_fraction=0.15), TrainConfig(task="ner"))
    proposals = RulePlanner().expand(state(prod, n=5))
    replay = [p for p in proposals if "replay" in p.rationale]
    assert replay and replay[0].pipeline.data.replay_fraction == pytest.approx(0.2)
    assert all(0.25 <= p.pipeline.data.hard_negative_fraction <= 0.35 for p in proposals)


def test_evolve_keeps_what_improved_along_the_trajectory():
    root = node(pipe(), 0.80, "n0")
    better = node(root.pipeline.modify({"hyperparams.learning_rate": 1e-3}), 0.88, "n1", "n0")
    worse = node(better.pipeline.modify({"hyperparams.epochs": 5.0}), 0.85, "n2", "n1")
    for seed in range(6):
        s = SearchState(node=better, action=Action("tune_hyperparams", "", "tune_hyperparams"), operator="evolve",
                        history=(root, better), seed=seed, seen=frozenset({root.pipeline.hash, better.pipeline.hash,
                                                                            worse.pipeline.hash}))
        proposal = RulePlanner().evolve(s)
        assert proposal.operator == "evolve"
        assert "hyperparams.learning_rate" not in proposal.modification
        assert proposal.modification and "keep hyperparams.learning_rate" in proposal.rationale


def test_fuse_combines_the_changes_of_different_branches():
    root = node(pipe(), 0.8, "n0")
    a = node(root.pipeline.modify({"hyperparams.epochs": 5.0}), 0.90, "a", "n0")
    b = node(root.pipeline.modify({"hyperparams.epochs": 1.0, "hyperparams.learning_rate": 1e-4,
                                   "data.gold_fraction": 0.7, "data.hard_negative_fraction": 0.3,
                                   "data.focus_pairs": [["x", "y"]]}), 0.85, "b", "n0")
    s = SearchState(node=a, action=Action("tune_hyperparams", "", "tune_hyperparams"), operator="fuse",
                    history=(root, a), top=(a, b))
    fused = RulePlanner().fuse(s)
    h, d = fused.pipeline.hyperparams, fused.pipeline.data
    assert (h.epochs, h.learning_rate) == (5.0, 1e-4)  # the better branch wins the conflict
    assert (d.gold_fraction, d.hard_negative_fraction, d.focus_pairs) == (0.7, 0.3, (("x", "y"),))
    assert fused.sources == ("a", "b") and fused.operator == "fuse"
    again = RulePlanner().fuse(SearchState(node=a, action=s.action, operator="fuse", history=(root, a), top=(a, b),
                                           seen=frozenset({fused.pipeline.hash})))
    assert again.modification == {} and "already tried" in again.rationale


def test_cluster_info_reads_a_diagnosis_cluster():
    from types import SimpleNamespace

    found = SimpleNamespace(id="c7", size=4, examples=[{"input": "hi", "correction": "greet"}], kind="confusion",
                            characteristics={"mean_length": 2}, confirmation_rate=0.75)
    info = ClusterInfo.of(found)
    assert (info.id, info.size, info.kind, info.confirmation_rate) == ("c7", 4, "confusion", 0.75)
    assert info.examples == ({"input": "hi", "correction": "greet"},) and info.characteristics == {"mean_length": 2}


def test_cluster_names():
    planner = RulePlanner()
    confusion = ClusterInfo("c1", 3, ({"input": "say hola in english", "prediction": "change_language",
                                       "correction": "translate"},) * 3)
    assert planner.name_cluster(confusion) == "translate misread as change_language"
    free = ClusterInfo("c2", 2, ({"input": "Refund for my broken blender please", "prediction": None},
                                 {"input": "blender arrived broken, refund?", "prediction": None}))
    assert planner.name_cluster(free).startswith("inputs about blender/broken/refund")
    assert planner.name_cluster(ClusterInfo("c3", 0)) == "cluster c3"


@pytest.mark.parametrize(("cluster", "verdict", "why"), [
    (ClusterInfo("c", 2, ({"input": "book a flight", "correction": "book_flight"},
                          {"input": "fly me to rome", "correction": "book_flight"})), "fixable", "consistent"),
    (ClusterInfo("c", 2, ({"input": "x", "correction": "a"},), confirmation_rate=0.2), "external", "probes"),
    (ClusterInfo("c", 2, ({"input": "?!", "correction": "a"}, {"input": "", "correction": "b"})), "external",
     "empty or not text"),
    (ClusterInfo("c", 2, ({"input": "book it", "correction": None}, {"input": "book that", "correction": ""})),
     "external", "no correction"),
    (ClusterInfo("c", 2, ({"input": "maybe", "correction": "yes"}, {"input": "maybe", "correction": "no"})),
     "external", "conflicting"),
    (ClusterInfo("c", 1, ({"input": "ok", "correction": "a"},), {"external_reason": "upstream outage"}),
     "external", "upstream outage"),
])
def test_fixability_rules(cluster, verdict, why):
    judged = RulePlanner().judge_fixability(cluster)
    assert judged.verdict == verdict and why in judged.reason


def test_steps_are_logged_for_the_curation_log():
    planner = RulePlanner()
    planner.expand(state())
    steps = planner.take_steps()
    assert [(s.operator, s.planner, s.tokens, s.cost_usd) for s in steps] == [("expand", "rule", 0, 0.0)]
    assert planner.take_steps() == []


def _gated(p: Pipeline, failed: set[str], regressions: int = 7) -> Node:
    gates = ("failure_set", "regression_set", "cross_checkpoint")
    results = [{"gate": g, "passed": g not in failed, "value": 0.0, "threshold": 0.0, "rule": ""}
               for g in (*gates, *sorted(set(failed) - set(gates)))]
    return Node(id="n2", pipeline=p, parent_id="n1", operator="expand", iteration=1, status="evaluated", score=1.0,
                regressions=regressions, metrics={"gates": {"passed": not failed, "results": results}})


def production_pipe(**hyper) -> Pipeline:
    return Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.35,
                                replay_fraction=0.15), TrainConfig(task="classification", **hyper))


def test_a_regression_gate_failure_forgets_less_instead_of_repeating_the_move():
    # an average that gives the deployed model 70% is the last averaging move (test_broken_passes_average_...)
    p = production_pipe(method="lora", epochs=5.0, learning_rate=1e-3,
                        head_learning_rate=3e-3).modify({"strategy.merge_deployed": 0.7})
    action = Action("surgical_augmentation", "score 1.0000 > 0.95", "surgical_augmentation")
    s = SearchState(node=_gated(p, {"regression_set"}), action=action, n_candidates=4)
    proposals = RulePlanner().expand(replace(s, n_candidates=6))
    mods = [x.modification for x in proposals]
    assert mods[0] == {"data.replay_scope": ["share", "all"]}
    assert mods[1] == {"hyperparams.learning_rate": [1e-3, 5e-4], "hyperparams.head_learning_rate": [3e-3, 1.5e-3]}
    assert mods[2] == {"hyperparams.epochs": [5.0, 3.0]}
    assert mods[3]["data.replay_fraction"] == [0.15, 0.2]
    assert "hyperparams.learning_rate" in mods[4] and "data.replay_fraction" in mods[4]
    assert mods[5] == {"strategy.distillation": ["none", "focal"]}
    assert all("7 regression(s) (regression_set gate failed)" in x.rationale for x in proposals)
    # once the whole pool is replayed, asking for a larger replay share would change nothing: not proposed
    everything = p.modify({"data.replay_scope": "all", "strategy.distillation": "focal"})
    again = RulePlanner().expand(replace(s, node=_gated(everything, {"regression_rate"}), n_candidates=6))
    assert {"strategy.distill_weight": [1.0, 3.0]} in [x.modification for x in again]
    assert not any("data.replay_fraction" in x.modification or "data.replay_scope" in x.modification for x in again)
    assert not any("hyperparams.threshold" in m for m in mods)
    evolved = RulePlanner().evolve(SearchState(node=_gated(p, {"cross_checkpoint"}), action=action, operator="evolve"))
    assert "cross_checkpoint gate failed" in evolved.rationale


def test_regressions_that_are_spurious_outputs_try_a_higher_threshold_first():
    """An NER candidate that fixed the failures but hallucinates on sentences the deployed model rightly
    left empty (false positives dominate) first tries a higher decision threshold: same weights, one
    evaluation. Where errors are not precision-dominated, no threshold move."""
    p = Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.35, replay_fraction=0.15),
                 TrainConfig(task="ner", method="full", epochs=8.0, learning_rate=1.5e-4))
    action = Action("surgical_augmentation", "score 0.86", "surgical_augmentation")
    s = SearchState(node=_gated(p, {"regression_rate"}), action=action, n_candidates=3,
                    failures=FailureSummary(false_positives=30, false_negatives=4))
    proposals = RulePlanner().expand(s)
    assert [x.modification for x in proposals[:2]] == [{"strategy.merge_deployed": [0.0, 0.5]},
                                                       {"strategy.merge_deployed": [0.0, 0.7]}]  # one evaluation each
    assert proposals[2].modification == {"hyperparams.threshold": [None, 0.6]}
    assert "mostly spurious outputs (FP 30 vs FN 4)" in proposals[2].rationale
    balanced = RulePlanner().expand(replace(s, failures=FailureSummary(false_positives=4, false_negatives=30)))
    assert not any("hyperparams.threshold" in x.modification for x in balanced)


def test_a_regressing_linear_probe_moves_to_fine_tuning_not_to_moves_it_ignores():
    """A probe is fitted by L-BFGS on frozen features: learning rate, epochs and batch size change
    nothing, so forgetting less means fine-tuning the encoder (its ignored fields reset) or more L2."""
    p = production_pipe(method="linear_probe", epochs=30.0, learning_rate=1e-3, head_learning_rate=3e-3,
                        batch_size=16)
    action = Action("surgical_augmentation", "score 1.0000 > 0.95", "surgical_augmentation")
    proposals = RulePlanner().expand(SearchState(node=_gated(p, {"regression_set"}), action=action, n_candidates=6))
    assert [x.modification for x in proposals[:2]] == [{"strategy.merge_deployed": [0.0, 0.5]},
                                                       {"strategy.merge_deployed": [0.0, 0.7]}]
    proposals = proposals[1:]
    assert proposals[1].modification == {"data.replay_scope": ["share", "all"]}
    first = proposals[2].pipeline.hyperparams
    assert (first.method, first.epochs, first.learning_rate, first.head_learning_rate, first.batch_size) == \
        ("lora", 3.0, 5e-4, None, 32)
    assert "fine-tune the encoder" in proposals[2].rationale
    assert proposals[3].modification == {"hyperparams.weight_decay": [0.0, 0.01]}
    assert proposals[4].modification == {"strategy.distillation": ["none", "focal"]}
    for x in proposals:
        assert not changes_nothing(p, x.pipeline)
    tune = RulePlanner().expand(SearchState(node=_gated(p, set()), action=Action(
        "tune_hyperparams", "score", "tune_hyperparams"), n_candidates=6))
    assert tune and all(not changes_nothing(p, x.pipeline) for x in tune)
    assert changes_nothing(p, p.modify({"hyperparams.epochs": 5.0, "hyperparams.learning_rate": 1e-2}))
    assert not changes_nothing(p, p.modify({"hyperparams.weight_decay": 1e-2}))


def test_no_forget_less_moves_while_the_failures_are_not_fixed():
    p = production_pipe(epochs=3.0)
    action = Action("surgical_augmentation", "score", "surgical_augmentation")
    for failed in ({"failure_set", "regression_set"}, set()):
        proposals = RulePlanner().expand(SearchState(node=_gated(p, failed), action=action, n_candidates=3))
        assert not any("regression(s)" in x.rationale for x in proposals)


def test_a_move_that_did_not_improve_is_not_proposed_again_on_that_path():
    p = production_pipe(method="full", epochs=5.0, learning_rate=1e-3)
    action = Action("tune_hyperparams", "score 0.9", "tune_hyperparams")
    lower = move_signature(p, p.modify({"hyperparams.learning_rate": 5e-4}))
    assert lower == frozenset({("hyperparams.learning_rate", "down")})
    # lowering the learning rate from a higher one did not help earlier on the path: not again from here
    child = p.modify({"hyperparams.learning_rate": 5e-4})
    tried = MoveOutcome(lower, improved=False, fewer_regressions=False, at="n2")
    s = SearchState(node=node(child, 0.9, "n2", "n1"), action=action, n_candidates=6, outcomes=(tried,))
    proposals = RulePlanner().expand(s)
    assert proposals and all(move_signature(child, x.pipeline) != lower for x in proposals)
    # a move that cut regressions is tried first when regressions are what failed
    replay = move_signature(p, p.modify({"data.replay_scope": "all"}))
    helped = MoveOutcome(replay, improved=True, fewer_regressions=True, at="n3")
    s = SearchState(node=_gated(p, {"regression_rate"}), action=action, n_candidates=3, outcomes=(helped,))
    assert RulePlanner().expand(s)[0].modification == {"data.replay_scope": ["share", "all"]}


@pytest.mark.parametrize(("reasons", "pipeline_changes", "expected"), [
    (("too_much_replay",), {"data.replay_scope": "all"}, {"data.replay_scope": ["all", "share"]}),
    (("too_much_replay",), {}, {"data.gold_fraction": [0.5, 0.55], "data.hard_negative_fraction": [0.35, 0.3]}),
    (("too_little_gold",), {}, {"data.gold_fraction": [0.5, 0.55], "data.hard_negative_fraction": [0.35, 0.3]}),
    (("too_little_gold",), {"data.replay_scope": "all"}, {"data.balance": [False, True]}),
    (("too_much_replay",), {"data.replay_scope": "all", "data.balance": True},
     {"data.balance": [True, False], "data.replay_scope": ["all", "share"]}),
    (("wrong_focus",), {"data.focus_pairs": [["a", "b"]]}, {"data.focus_pairs": [[["a", "b"]], []]}),
    (("bad_corrections",), {}, {"data.gold_filter": ["none", "neighbours"]}),
])
def test_each_veto_reason_revises_the_vetoed_pipeline(reasons, pipeline_changes, expected):
    vetoed = production_pipe().modify(pipeline_changes) if pipeline_changes else production_pipe()
    feedback = VetoFeedback(reasons, "86% replay, 5% gold", "n3")
    s = SearchState(node=node(vetoed, 0.0, "n3", "n1"), action=Action("rework_data", "x", "rework_data"),
                    n_candidates=1, veto=feedback)
    proposal = RulePlanner().expand(s)[0]
    assert proposal.modification == expected
    assert proposal.rationale.startswith('revised after n3 was vetoed ("86% replay, 5% gold"): ')
    assert RulePlanner().expand(replace(s, veto=replace(feedback, reasons=("other",)))) == []


def test_broken_passes_average_the_candidate_with_the_deployed_model_first():
    """A production candidate that broke passes first tries the average of its weights with the deployed
    model's (an evaluation, not a training run), even when its gates passed; not twice, not without
    broken passes, never in a cold start."""
    action = Action("tune_hyperparams", "score 0.9", "tune_hyperparams")
    for method in ("linear_probe", "full", "lora"):
        p = production_pipe(method=method)
        for failed in (set(), {"regression_rate"}):
            proposals = RulePlanner().expand(SearchState(node=_gated(p, failed, regressions=12), action=action,
                                                         n_candidates=2))
            assert proposals[0].modification == {"strategy.merge_deployed": [0.0, 0.5]}
            assert proposals[0].rationale.startswith("12 held-out pass(es) broken: average the weights")
            # a failed regression gate also tries a larger share for the deployed model
            assert (proposals[1].modification == {"strategy.merge_deployed": [0.0, 0.7]}) == bool(failed)
        evolved = RulePlanner().evolve(SearchState(node=_gated(p, set(), regressions=3), action=action,
                                                   operator="evolve"))
        assert evolved.modification == {"strategy.merge_deployed": [0.0, 0.5]}
    merged = production_pipe(method="full").modify({"strategy.merge_deployed": 0.5})
    # an average that still fails the regression budget gives the deployed model more of the weights, once
    stronger = RulePlanner().expand(SearchState(node=_gated(merged, {"regression_budget"}, regressions=6),
                                                action=action, n_candidates=2))
    assert stronger[0].modification == {"strategy.merge_deployed": [0.5, 0.7]}
    assert "6 pass(es) broken (regression_budget gate failed): average the weights" in stronger[0].rationale
    most = merged.modify({"strategy.merge_deployed": 0.7})
    for p, regressions in ((merged, 12), (production_pipe(method="full"), 0),
                           (most, 12)):
        for failed in (set(), {"regression_rate"}) if p is most else (set(),):
            proposals = RulePlanner().expand(SearchState(node=_gated(p, failed, regressions=regressions),
                                                         action=action, n_candidates=6))
            assert not any("strategy.merge_deployed" in x.modification for x in proposals)
    cold = RulePlanner().expand(state(pipe(method="full"), band="tune_hyperparams", n=6))
    assert not any("strategy.merge_deployed" in x.modification for x in cold)
    with pytest.raises(ConfigError, match="Strategy.merge_deployed"):
        pipe(method="full").modify({"strategy.merge_deployed": 0.5})
    with pytest.raises(ConfigError, match=r"a share in \[0, 1\)"):
        production_pipe(method="full").modify({"strategy.merge_deployed": 1.0})


def test_leaving_an_averaged_probe_for_lora_drops_the_average():
    """A plateaued probe that was averaged with the deployed model moves to LoRA without the average (only
    a model trained the same way as the deployed one is averaged with it; on the demo the move had failed
    its node before any training)."""
    merged = production_pipe(method="linear_probe").modify({"strategy.merge_deployed": 0.5})
    s = SearchState(node=node(merged, 0.9, "n3", "n2"), action=Action("tune_hyperparams", "plateau",
                                                                      "tune_hyperparams"), n_candidates=6, plateau=True)
    lora = [x for x in RulePlanner().expand(s) if x.pipeline.hyperparams.method == "lora"]
    assert lora and all(x.pipeline.strategy.merge_deployed == 0.0 for x in lora)
    assert all(x.modification["strategy.merge_deployed"] == [0.5, 0.0] for x in lora)
