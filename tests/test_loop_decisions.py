"""The person in the loop on a fake NodeRunner (fast): a veto revises the pipeline by its reasons and
the next review shows the difference; a vetoed curriculum never comes back unchanged; refusing a
promotion continues the search; a close call is promoted only with a person's reason, and headless
runs say how to promote it later."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fake_runner import Result, fake_run

from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.search.loop import LoopConfig, promote_command, run_loop
from engine.search.planner import RulePlanner
from engine.search.reviewer import CurriculumReview, Decision, HeadlessReviewer, ScriptedReviewer
from store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        yield s


class Reviews(ScriptedReviewer):
    """Curriculum answers from `curricula` in order (then approve), confirmations from the script."""

    def __init__(self, curricula: list[Decision], script: list) -> None:
        super().__init__(script, who="tester")
        self.curricula = list(curricula)
        self.reviews: list[CurriculumReview] = []

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        self.reviews.append(review)
        return self.curricula.pop(0) if self.curricula else Decision("approve")


def budget_config(rate: float = 0.02) -> LoopConfig:
    return LoopConfig(gates=GateConfig(max_regression_rate=rate))


def test_a_veto_revises_the_pipeline_by_its_reasons_and_the_next_review_shows_the_difference(store):
    reviewer = Reviews([Decision("veto", "86% replay, only 5% gold", reasons=("too_much_replay",))], [True])
    bus, parts, _ = fake_run(store, lambda p: Result(), budget_config())
    result = run_loop(bus, parts, reviewer, BudgetLimits(iterations=3))
    first, second = reviewer.reviews[:2]
    assert first.pipeline.data.replay_scope == "all" and second.pipeline.data.replay_scope == "share"
    nodes = {n["id"]: n for n in store.runs.nodes(bus.run_id)}
    assert nodes[first.node_id]["status"] == "vetoed"
    assert nodes[first.node_id]["metrics"]["veto_reason"] == "too much replay; 86% replay, only 5% gold"
    assert nodes[second.node_id]["parent_id"] == first.node_id
    assert nodes[second.node_id]["rationale"].startswith(f"revised after {first.node_id} was vetoed (\"86% replay")
    assert store.datasets.get(first.dataset_version_id)["content_hash"] != \
        store.datasets.get(second.dataset_version_id)["content_hash"]
    assert second.vetoed["node_id"] == first.node_id and second.vetoed["removed"] == {"replay": 5}
    assert second.vetoed["revision"] is True
    assert all(r.vetoed is None for r in reviewer.reviews[2:])  # only the revision answers the veto
    veto = next(d for d in store.runs.decisions(bus.run_id) if d["action"] == "veto")
    assert veto["diff"]["reasons"] == ["too_much_replay"] and veto["who"] == "tester"
    assert result.promoted_model is not None


def test_a_veto_the_planner_finds_nothing_to_change_for_is_said_on_the_next_proposal_and_only_there(store):
    """Words alone give the rule planner nothing to revise: the next curriculum is the search's next
    proposal, and its review says so instead of reading as the revision; later reviews say nothing."""
    reviewer = Reviews([Decision("veto", "I do not trust these rows")], [False, True])
    bus, parts, _ = fake_run(store, lambda p: Result(broken=1), budget_config())
    run_loop(bus, parts, reviewer, BudgetLimits(iterations=4))
    first, second, *later = reviewer.reviews
    assert second.vetoed is not None and second.vetoed["node_id"] == first.node_id
    assert second.vetoed["revision"] is False
    assert later and all(r.vetoed is None for r in later)  # the person has since approved: nothing to answer


class SameRowsPlanner(RulePlanner):
    """Proposes more gold, then the same data with a lower learning rate (the same curriculum rows)."""

    def expand(self, state):
        if state.veto is not None:
            return []
        more_gold = {"data.gold_fraction": 0.55, "data.hard_negative_fraction": 0.25}
        if state.node.parent_id is None and not state.node.children:
            change = more_gold
        else:
            change = {**more_gold, "hyperparams.learning_rate": 5e-5}
        return self.realise(state, [(change, "scripted")], "expand", 1)


def test_a_vetoed_curriculum_is_never_proposed_again_unchanged(store):
    reviewer = Reviews([Decision("veto", "not now", reasons=("other",))], [True])
    bus, parts, runner = fake_run(store, lambda p: Result(), budget_config())
    run_loop(bus, replace(parts, planner=SameRowsPlanner()), reviewer, BudgetLimits(iterations=2))
    vetoed, twin = [n for n in store.runs.nodes(bus.run_id) if n["status"] == "vetoed"]
    assert [r.node_id for r in reviewer.reviews] == [vetoed["id"]]  # the twin was never shown to anyone
    assert store.datasets.get(twin["dataset_version_id"])["content_hash"] == \
        store.datasets.get(vetoed["dataset_version_id"])["content_hash"]
    assert twin["metrics"]["veto_reason"].startswith(f"the same rows as the curriculum vetoed at {vetoed['id']}")
    assert twin["id"] not in runner.trained
    engine_veto = next(d for d in store.runs.decisions(bus.run_id) if d["node_id"] == twin["id"])
    assert (engine_veto["who"], engine_veto["action"]) == ("engine", "veto")  # shown as what it is, not a person's


def test_the_clock_stops_while_a_person_decides(store):
    class Slow(Reviews):
        def review_curriculum(self, review):
            import time

            time.sleep(0.3)
            return super().review_curriculum(review)

    import time

    bus, parts, _ = fake_run(store, lambda p: Result(broken=1), budget_config())
    started = time.perf_counter()
    run_loop(bus, parts, Slow([], [True]), BudgetLimits(iterations=1))
    wall = time.perf_counter() - started
    spent = store.runs.get(bus.run_id)["spent"]["spent"]["seconds"]
    # the 0.3 s review is not charged to the search (against the run's own wall time: a busy machine slows
    # the rest of the run, which an absolute bound mistook for the review)
    assert spent < wall - 0.25
    paused = [e.payload.get("paused") for e in store.runs.events(bus.run_id) if e.type == "budget"]
    assert paused.count(True) == 2  # the review and the promotion


def test_refusing_a_promotion_continues_the_search_and_the_next_passing_candidate_is_offered(store):
    reviewer = Reviews([], [False, True])
    bus, parts, runner = fake_run(store, lambda p: Result(broken=1), budget_config())
    result = run_loop(bus, parts, reviewer, BudgetLimits(iterations=4))
    refused, promoted = [d for d in store.runs.decisions(bus.run_id) if d["kind"] == "promotion"]
    assert not refused["diff"] and not promoted["diff"]
    assert (refused["action"], promoted["action"]) == ("refuse", "approve")
    assert len(runner.trained) == 2  # the search went on after the refusal
    nodes = {n["id"]: n for n in store.runs.nodes(bus.run_id)}
    assert nodes[refused["node_id"]]["metrics"]["promotion"] == {"action": "refuse", "who": "tester"}
    assert result.promoted_model == nodes[promoted["node_id"]]["model_id"]
    assert store.models.get(result.promoted_model)["status"] == "deployed"


def test_refusing_the_offer_at_the_end_of_the_budget_offers_the_next_passing_candidate(store):
    """Both candidates wait (they fix less than tau), so both are offered only when the budget ends: the
    refusal of the first leaves no search to go on with, and the second is offered in turn."""
    reviewer = Reviews([], [False, True])
    bus, parts, _ = fake_run(store, lambda p: Result(broken=1, score=0.9), budget_config())
    result = run_loop(bus, parts, reviewer, BudgetLimits(iterations=2))
    refused, promoted = [d for d in store.runs.decisions(bus.run_id) if d["kind"] == "promotion"]
    assert (refused["action"], promoted["action"]) == ("refuse", "approve")
    assert refused["node_id"] != promoted["node_id"]
    nodes = {n["id"]: n for n in store.runs.nodes(bus.run_id)}
    assert result.promoted_model == nodes[promoted["node_id"]]["model_id"]


def test_a_run_whose_candidates_were_all_refused_says_so(store):
    bus, parts, _ = fake_run(store, lambda p: Result(broken=1), budget_config())
    result = run_loop(bus, parts, Reviews([], [False] * 5), BudgetLimits(iterations=2))
    assert result.promoted_model is None and result.status == "finished"
    assert "refused by a person (tester)" in result.outcome
    finished = bus.history()[-1].payload
    assert len(finished["refused"]) == 2


def test_a_close_call_is_promoted_only_with_a_persons_reason(store):
    # 5 of 100 held-out passes broken: a clear gain, over the 2% budget
    reviewer = Reviews([], ["the gain outweighs five broken passes"])
    bus, parts, _ = fake_run(store, lambda p: Result(broken=5), budget_config())
    result = run_loop(bus, parts, reviewer, BudgetLimits(iterations=1))
    assert result.promoted_model is not None
    assert result.outcome.startswith(f"promoted {result.promoted_model} anyway (tester: the gain outweighs")
    override = next(d for d in store.runs.decisions(bus.run_id) if d["diff"].get("override"))
    assert (override["action"], override["reason"]) == ("approve", "the gain outweighs five broken passes")
    promoted = next(e for e in bus.history() if e.type == "promoted")
    assert promoted.payload["override"] == "the gain outweighs five broken passes"
    info = reviewer.seen[-1]
    assert info.details["close_call"] is True and "estimated gain" in info.summary


def test_a_headless_run_says_how_to_promote_a_close_call_later_and_never_promotes_it(store):
    bus, parts, _ = fake_run(store, lambda p: Result(broken=5), budget_config())
    result = run_loop(bus, parts, HeadlessReviewer("auto"), BudgetLimits(iterations=1))
    finished = bus.history()[-1].payload
    assert result.promoted_model is None and finished["close_call"]
    assert finished["promote_command"] == promote_command(finished["close_call"])
    assert "failed only the regression budget" in result.outcome
    assert finished["promote_command"] not in result.outcome  # printed once, on its own line
    assert "failed only the regression budget" in result.outcome
    assert store.models.deployed()["id"] == "deployed-v1"


def test_approve_never_never_promotes(store):
    bus, parts, runner = fake_run(store, lambda p: Result(broken=0), budget_config())
    result = run_loop(bus, parts, HeadlessReviewer("never"), BudgetLimits(iterations=2))
    assert result.promoted_model is None and runner.trained == []
    assert store.models.deployed()["id"] == "deployed-v1"
