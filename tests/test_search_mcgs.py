"""MCGS over a real store: UCT ordering, backpropagation, c(t) decay, top-K exploitation, stagnation ->
evolve / fuse, rollback redirection, persistence round trip and seeded determinism."""

from __future__ import annotations

import math

import pytest

from engine.errors import ConfigError
from engine.events import EventBus
from engine.models.base import TrainConfig
from engine.search.graph import SearchGraph
from engine.search.mcgs import MCGS, ExplorationSchedule, MCGSConfig, Step
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import FailureSummary, Proposal, RulePlanner
from engine.search.policy import IterationPolicy
from store import Store

CONSTANT_1 = ExplorationSchedule(kind="constant", c0=1.0, c_min=0.0)
CONSTANT_0 = ExplorationSchedule(kind="constant", c0=0.0, c_min=0.0)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        yield s


def pipe(epochs: float = 3.0, **kw) -> Pipeline:
    return Pipeline(DatasetSpec(), TrainConfig(task="classification", epochs=epochs, **kw))


def make(store, bus: bool = False, **config) -> MCGS:
    run = store.runs.create("cold_start")
    graph = SearchGraph(store, run, EventBus(store, run) if bus else None)
    return MCGS(graph, MCGSConfig(**config))


def grow(m: MCGS, parent, epochs: float, score: float | None = None, operator: str = "expand"):
    node = m.add_proposals(parent, [Proposal(pipe(epochs), operator, {}, f"epochs {epochs}")])[0]
    if score is not None:
        assert m.next_step().node is node
        m.record(node.id, score)
    return node


def rooted(m: MCGS, score: float = 0.5):
    root = m.add_root(pipe())
    m.record(root.id, score)
    return root


def test_unvisited_children_are_evaluated_first_in_creation_order(store):
    m = make(store)
    root = rooted(m)
    a, b = m.add_proposals(root, [Proposal(pipe(1), "expand", {}, "a"), Proposal(pipe(2), "expand", {}, "b")])
    step = m.next_step()
    assert (step.kind, step.node.id) == ("evaluate", a.id)
    m.record(a.id, 0.99)  # even a great score does not jump the queue: b is still unvisited
    assert (m.next_step().kind, m.next_step().node.id) == ("evaluate", b.id)
    assert math.isinf(m.uct(m.graph.get(b.id)))


def test_uct_is_mean_descendant_reward_plus_decaying_bonus_and_orders_selection(store):
    m = make(store, schedule=CONSTANT_1)
    root = rooted(m, 0.5)
    a = grow(m, root, 1, 0.9)
    b = grow(m, root, 2, 0.6)
    a1 = grow(m, a, 4, 0.7)
    n_total = 4
    expected = {
        root.id: (0.5 + 0.9 + 0.6 + 0.7) / 4 + math.sqrt(math.log(n_total) / 4),
        a.id: (0.9 + 0.7) / 2 + math.sqrt(math.log(n_total) / 2),
        b.id: 0.6 + math.sqrt(math.log(n_total) / 1),
        a1.id: 0.7 + math.sqrt(math.log(n_total) / 1),
    }
    for node_id, value in expected.items():
        assert m.uct(m.graph.get(node_id)) == pytest.approx(value)
    assert m.next_step().node.id == a1.id  # exploration favours the little-visited leaf
    greedy = MCGS(m.graph, MCGSConfig(schedule=CONSTANT_0))
    assert greedy.next_step().node.id == a.id  # c = 0: the best mean descendant reward


def test_backpropagation_reaches_every_ancestor_and_is_persisted(store):
    m = make(store)
    root = rooted(m, 0.5)
    a = grow(m, root, 1, 0.9)
    b = grow(m, root, 2, 0.6)
    a1 = grow(m, a, 4, 0.7)
    stats = {n.id: (n.visits, round(n.total_reward, 6)) for n in m.graph.nodes.values()}
    assert stats == {root.id: (4, 2.7), a.id: (2, 1.6), b.id: (1, 0.6), a1.id: (1, 0.7)}
    rows = {r["id"]: (r["visits"], round(r["total_reward"], 6), r["score"], r["status"])
            for r in store.runs.nodes(m.graph.run_id)}
    assert rows[root.id] == (4, 2.7, 0.5, "evaluated")
    assert rows[a1.id] == (1, 0.7, 0.7, "evaluated")
    with pytest.raises(ValueError, match="already has a result"):
        m.record(a1.id, 0.8)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        m.record(grow(m, a1, 5).id, 1.5)


def test_exploration_constant_decays_with_iterations():
    expo = ExplorationSchedule(kind="exponential", c0=1.0, c_min=0.1, rate=0.3)
    values = [expo.c(t, 20) for t in range(30)]
    assert values[0] == 1.0
    assert all(x >= y for x, y in zip(values, values[1:], strict=False))
    assert values[3] == pytest.approx(math.exp(-0.9))
    assert values[-1] == 0.1
    linear = ExplorationSchedule(kind="linear", c0=1.0, c_min=0.2)
    assert [linear.c(t, 10) for t in (0, 5, 10, 15)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert ExplorationSchedule(kind="constant", c0=0.7).c(50, 10) == 0.7
    with pytest.raises(ConfigError, match="c_min"):
        ExplorationSchedule(c0=0.1, c_min=0.5)


def test_search_c_t_shrinks_as_results_arrive(store):
    m = make(store, schedule=ExplorationSchedule(kind="exponential", c0=1.0, c_min=0.05, rate=0.5))
    root = rooted(m)
    c1 = m.c()
    grow(m, root, 1, 0.6)
    assert m.c() < c1


def test_top_k_exploitation_late_in_the_search(store):
    m = make(store, schedule=CONSTANT_1, horizon=10, exploit_after=1.0, stagnation_k=9)
    root = rooted(m, 0.5)
    a = grow(m, root, 1, 0.9)
    grow(m, a, 2, 0.85)
    a2 = grow(m, a, 4, 0.88)
    b = grow(m, root, 5, 0.6)
    assert m.t == 5
    early = m.next_step()
    assert (early.node.id, early.reason.startswith("UCT")) == (a2.id, True)
    late = MCGS(m.graph, MCGSConfig(schedule=CONSTANT_1, horizon=10, exploit_after=0.5, top_k=1, stagnation_k=9))
    step = late.next_step()
    assert (step.node.id, step.reason.startswith("top-K")) == (a.id, True)
    top2 = MCGS(m.graph, MCGSConfig(schedule=CONSTANT_1, horizon=10, exploit_after=0.5, top_k=2, stagnation_k=9))
    assert top2.next_step().node.id == a2.id
    assert b.id not in {late.next_step().node.id, top2.next_step().node.id}


def test_stagnation_on_one_branch_evolves_the_best_node(store):
    m = make(store, stagnation_k=2, fuse_probability=1.0)
    root = rooted(m, 0.5)
    a = grow(m, root, 1, 0.9)
    grow(m, a, 2, 0.8)
    grow(m, a, 4, 0.85)
    assert m.stale == 2
    step = m.next_step()
    assert (step.kind, step.node.id) == ("evolve", a.id)
    assert "2 evaluations without improving" in step.reason
    evolved = grow(m, a, 6, operator="evolve")
    assert m.stale == 0
    assert m.next_step().node is evolved and evolved.operator == "evolve"


def test_stagnation_across_branches_fuses_or_evolves_by_seeded_choice(store):
    m = make(store, stagnation_k=2, fuse_probability=1.0)
    root = rooted(m, 0.5)
    a = grow(m, root, 1, 0.9)
    b = grow(m, root, 2, 0.7)
    b1 = grow(m, b, 4, 0.75)
    step = m.next_step()
    assert step.kind == "fuse"
    assert [n.id for n in step.sources] == [a.id, b1.id] and step.node.id == a.id
    never = MCGS(m.graph, MCGSConfig(stagnation_k=2, fuse_probability=0.0))
    assert never.next_step().kind == "evolve"
    fused = m.add_proposals(a, [Proposal(pipe(7), "fuse", {}, "fuse", sources=(a.id, b1.id))])[0]
    assert fused.sources == (b1.id,)
    edges = {(e["src"], e["operator"]) for e in store.runs.edges(m.graph.run_id) if e["dst"] == fused.id}
    assert edges == {(a.id, "fuse"), (b1.id, "fuse")}


def test_regressed_node_rolls_back_to_its_parent_and_is_closed(store):
    m = make(store, schedule=CONSTANT_0)
    root = rooted(m, 0.85)
    a = grow(m, root, 1, 0.80)
    step = m.next_step()
    assert step.node.id == root.id  # greedy: root's mean (0.825) beats a (0.80)
    target, action = m.expansion_target(Step("expand", a), IterationPolicy())
    assert target.id == root.id and action.kind == "rollback" and action.rollback_to == root.id
    assert action.band == "tune_hyperparams"
    assert m.graph.get(a.id).exhausted
    assert SearchGraph.load(store, m.graph.run_id).get(a.id).exhausted
    assert a.id not in [n.id for n in m.expandable()]


def test_duplicates_are_skipped_and_an_empty_expansion_exhausts_the_parent(store):
    m = make(store)
    root = rooted(m)
    assert m.add_proposals(root, [Proposal(pipe(), "expand", {}, "same as root")]) == []
    assert root.exhausted
    step = m.next_step()
    assert step.kind == "exhausted"


def test_failures_get_zero_reward_and_vetoes_no_visit(store):
    m = make(store, bus=True)
    root = rooted(m, 0.6)
    a, b = m.add_proposals(root, [Proposal(pipe(1), "expand", {}, "a"), Proposal(pipe(2), "expand", {}, "b")])
    m.veto(a.id, "too many duplicates")
    assert m.next_step().node.id == b.id
    m.record_failure(b.id, "out of memory")
    assert (root.visits, root.total_reward) == (2, 0.6)
    assert (m.graph.get(b.id).status, m.graph.get(b.id).metrics["error"]) == ("failed", "out of memory")
    assert (m.graph.get(a.id).status, m.graph.get(a.id).visits) == ("vetoed", 0)
    assert [n.id for n in m.expandable()] == [root.id]
    events = store.runs.events(m.graph.run_id)
    assert [e.type for e in events] == ["node_added", "node_evaluated", "node_added", "node_added",
                                        "node_evaluated"]
    added = events[2].payload
    assert (added["node_id"], added["parent_id"], added["operator"]) == (a.id, root.id, "expand")
    assert Pipeline.from_dict(added["pipeline"]) == pipe(1)
    assert events[-1].payload["status"] == "failed"


def test_graph_rejects_bad_structure(store):
    m = make(store)
    root = m.add_root(pipe())
    with pytest.raises(ValueError, match="already node"):
        m.graph.add(pipe(), parent_id=root.id)
    with pytest.raises(ValueError, match="only a root node"):
        m.graph.add(pipe(9), operator="expand")
    with pytest.raises(KeyError, match="not in run"):
        m.graph.add(pipe(9), parent_id="nope")
    with pytest.raises(ValueError, match="already has a root"):
        m.add_root(pipe(8))


def drive(store, run_id: str | None, steps: int, seed: int = 3, **config):
    """Run the search with the rule planner and a deterministic score function (no training)."""
    run_id = run_id or store.runs.create("cold_start")
    graph = SearchGraph.load(store, run_id)
    m = MCGS(graph, MCGSConfig(seed=seed, horizon=12, stagnation_k=2, **config))
    planner, policy = RulePlanner(seed=seed), IterationPolicy()
    if not graph.nodes:
        m.add_root(pipe())
    for _ in range(steps):
        step = m.next_step()
        if step.kind == "exhausted":
            break
        if step.kind == "evaluate":
            h = step.node.pipeline.hyperparams
            noise = int(step.node.pipeline.hash[:4], 16) % 50 / 1000
            score = 0.70 + 0.05 * min(h.epochs, 4) - 200 * abs(h.learning_rate - 5e-4) + noise
            m.record(step.node.id, round(min(max(score, 0.0), 1.0), 4))
            continue
        node, action = m.expansion_target(step, policy, {"typos": 3})
        state = m.state(step, node, action, FailureSummary(false_positives=4, false_negatives=1,
                                                           train_score=0.99, eval_score=node.score))
        proposals = {"expand": planner.expand, "evolve": lambda s: [planner.evolve(s)],
                     "fuse": lambda s: [planner.fuse(s)]}[step.kind](state)
        m.add_proposals(node, proposals)
    return run_id, m


def snapshot(graph: SearchGraph) -> list[tuple]:
    return [(n.id, n.pipeline.hash, n.parent_id, n.operator, n.status, n.score, n.visits,
             round(n.total_reward, 9), n.sources, n.exhausted) for n in graph.nodes.values()]


def test_graph_round_trip_through_the_store_gives_the_same_uct_choices(store):
    run_id, m = drive(store, None, 30, fuse_probability=1.0)
    assert {n.operator for n in m.graph.nodes.values()} >= {"root", "expand"}
    loaded = MCGS(SearchGraph.load(store, run_id), m.config)
    assert snapshot(loaded.graph) == snapshot(m.graph)
    assert (loaded.t, loaded.stale, loaded.best_score) == (m.t, m.stale, m.best_score)
    for node in m.expandable():
        assert loaded.uct(loaded.graph.get(node.id)) == m.uct(node)
    a, b = m.next_step(), loaded.next_step()
    assert (a.kind, a.node.id if a.node else None, [s.id for s in a.sources]) == \
           (b.kind, b.node.id if b.node else None, [s.id for s in b.sources])


@pytest.mark.parametrize("cut", [7, 17, 26])
def test_interrupted_search_resumes_to_the_same_graph_as_an_uninterrupted_one(store, cut):
    straight, _ = drive(store, None, 40)
    half, _ = drive(store, None, cut)
    resumed, _ = drive(store, half, 40 - cut)
    def strip(run_id):
        local = {n: n.split(".")[1] for n in SearchGraph.load(store, run_id).nodes}
        return [(local[r[0]], r[1], local.get(r[2]), *r[3:8], tuple(local[s] for s in r[8]), r[9])
                for r in snapshot(SearchGraph.load(store, run_id))]
    assert strip(straight) == strip(resumed)
    assert len(strip(straight)) > 10


def test_same_seed_same_choices_and_ties_follow_the_seed(store):
    def tie_choice(seed: int) -> str:
        m = make(store, seed=seed, schedule=CONSTANT_1)
        root = rooted(m, 0.5)
        grow(m, root, 1, 0.7)
        grow(m, root, 2, 0.7)
        return m.next_step().node.pipeline.hyperparams.epochs
    choices = [tie_choice(s) for s in range(12)]
    assert choices == [tie_choice(s) for s in range(12)]
    assert set(choices) == {1.0, 2.0}


def test_decide_then_roll_back_is_what_expansion_target_does_and_a_refusal_keeps_the_node(store):
    m = make(store, schedule=CONSTANT_0)
    root = rooted(m, 0.85)
    a = grow(m, root, 1, 0.80)
    action = m.decide(a, IterationPolicy())
    assert action.kind == "rollback" and action.rollback_to == root.id
    assert not m.graph.get(a.id).exhausted  # deciding changes nothing
    refused = m.decide(a, IterationPolicy(), from_parent=False)
    assert refused.kind == "tune_hyperparams" and refused.rollback_to is None
    assert m.roll_back(a, action).id == root.id
    assert m.graph.get(a.id).exhausted


def test_best_is_the_highest_score_then_the_fewest_regressions_then_the_oldest(store):
    m = make(store)
    root = rooted(m, 0.5)
    first, second, third = (m.add_proposals(root, [Proposal(pipe(e), "expand", {}, f"epochs {e}")])[0]
                            for e in (1.0, 2.0, 4.0))
    for node, regressions in ((first, 7), (second, 1), (third, 1)):
        assert m.next_step().node is node
        m.record(node.id, 0.9487, regressions)
    assert m.best() is second
