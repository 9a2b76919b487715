"""The agent loop's flows on the fake NodeRunner (fast; tests/fake_runner.py): a veto and an edit flow through
events, decisions and the curation log; a regressing candidate is rolled back after a person confirms; a run
stopped, or crashed, at any event resumes from the store without asking anyone twice, retrains an
interrupted node from the base, and grows the same graph as an uninterrupted run. The same flows with real
training on a tiny BERT are tests/test_loop.py, tests/test_production.py and tests/test_resume.py (slow)."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest
from fake_runner import DEPLOYED, FakeRunner, Result, fake_run, production_root
from scripted_people import Asker, StopOn, VetoThenEdit

from engine.curation_log import curation_log_path, render_curation_log
from engine.errors import TrainingError
from engine.models.base import Progress
from engine.search import loop
from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.search.loop import LoopConfig, LoopParts, resume_run, run_loop
from engine.search.mcgs import ExplorationSchedule, MCGSConfig
from engine.search.pipeline import Pipeline
from engine.search.planner import RulePlanner
from engine.search.reviewer import Confirmation, Decision, ScriptedReviewer
from store import Store

GATES = GateConfig(max_regression_rate=0.02)


# ------------------------------------------------------------------ veto and edit


def test_veto_and_edit_flow_through_events_decisions_and_the_curation_log(tmp_path):
    reviewer = VetoThenEdit([True, True, True, True], gold_output="a")
    seen = []
    with Store(tmp_path / "ws") as store:
        bus, parts, runner = fake_run(store, lambda p: Result(), LoopConfig(gates=GATES))
        bus.subscribe(seen.append)
        result = run_loop(bus, parts, reviewer, BudgetLimits(iterations=2))
        run_id = bus.run_id
        events = store.runs.events(run_id)
        decisions = store.runs.decisions(run_id)
        nodes = {n["id"]: n for n in store.runs.nodes(run_id)}

        # subscribers saw the stored stream from their subscription on, in order
        assert [e.seq for e in seen] == [e.seq for e in events][1:] == list(range(2, len(events) + 1))

        vetoed, edited = reviewer.curricula[0].node_id, reviewer.curricula[1].node_id
        assert nodes[vetoed]["status"] == "vetoed"
        assert nodes[vetoed]["metrics"]["veto_reason"] == "too few hard negatives for travel"
        assert nodes[edited]["status"] == "evaluated" and runner.trained == [edited]

        # decisions: one per review / confirmation, each mirrored by a decision_recorded event
        recorded = [e.payload for e in events if e.type == "decision_recorded"]
        assert [(d["id"], d["kind"], d["action"], d["node_id"]) for d in decisions] == \
               [(p["decision_id"], p["kind"], p["action"], p["node_id"]) for p in recorded]
        curriculum = [d for d in decisions if d["kind"] == "curriculum" and d["who"] != "engine"]
        assert [d["action"] for d in curriculum] == ["veto", "edit"] and len(curriculum) == len(reviewer.curricula)
        edit = curriculum[1]
        assert len(edit["diff"]["removed"]) == 1 and [r["id"] for r in edit["diff"]["added"]] == ["gold:added-by-tester"]

        # the edit is a new dataset version (child of the proposed one) and it is what was trained on
        proposed = reviewer.curricula[1].dataset_version_id
        version = store.datasets.get(edit["dataset_version_id"])
        assert version["parent_id"] == proposed and edit["dataset_version_id"] != proposed
        assert nodes[edited]["dataset_version_id"] == edit["dataset_version_id"]
        assert "went to berlin tomorrow" in [r["input"] for r in store.datasets.rows(version["id"])]
        assert store.models.get(nodes[edited]["model_id"])["dataset_version_id"] == edit["dataset_version_id"]

        # per node, the order is proposed -> decided -> trained -> evaluated -> gates; never trained if vetoed
        def first(kind, node):
            return next(e.seq for e in events if e.type == kind and e.payload.get("node_id") == node)
        assert first("curriculum_proposed", edited) < first("decision_recorded", edited) \
            < first("train_started", edited) < first("node_evaluated", edited) < first("gate_checked", edited)
        assert not any(e.type == "train_started" and e.payload["node_id"] == vetoed for e in events)
        assert [e.type for e in events][0] == "run_started" and events[-1].type == "run_finished"

        # the curation log on disk is exactly the render of the stored events
        text = curation_log_path(store, run_id).read_text(encoding="utf-8")
        assert text == render_curation_log(events)
        assert "too few hard negatives for travel" in text and edit["dataset_version_id"] in text

        # the person approved the promotion of the edited node; the run row agrees with run_finished
        assert result.promoted_model == nodes[edited]["model_id"] == store.models.deployed()["id"]
        run = store.runs.get(run_id)
        assert run["status"] == "finished" and run["stop_reason"] == events[-1].payload["reason"] == result.reason
        assert run["spent"]["spent"]["iterations"] == sum(1 for e in events if e.type == "train_started")


class EditFirst(ScriptedReviewer):
    """Edits the first curriculum (changes a gold row, removes a replay row, adds a row), approves the rest."""

    def __init__(self) -> None:
        super().__init__([True] * 8, who="tester")
        self.curricula: list = []

    def review_curriculum(self, review):
        self.curricula.append(review)
        if len(self.curricula) > 1:
            return Decision("approve")
        rows = [({**r, "input": "gold 1, as a person wrote it"} if r["id"] == "gold:1" else r)
                for r in review.rows if r["id"] != "replay:0"]
        rows.append({"id": "gold:by-tester", "input": "a row a person added", "output": "a", "slice": "gold"})
        return Decision("edit", rows=tuple(rows))


def test_a_persons_edits_are_carried_into_every_later_curriculum_and_the_review_says_so(tmp_path):
    reviewer = EditFirst()
    with Store(tmp_path / "ws") as store:
        bus, parts, runner = fake_run(store, lambda p: Result(fixed=30, score=0.85), LoopConfig(gates=GATES))
        run_loop(bus, parts, reviewer, BudgetLimits(iterations=3))
        first, *later = reviewer.curricula
        assert later and not first.carried
        for review in later:
            rows = {r["id"]: r for r in review.rows}
            assert rows["gold:1"]["input"] == "gold 1, as a person wrote it" and "replay:0" not in rows
            assert rows["gold:by-tester"]["input"] == "a row a person added"
            assert review.carried == ("carries the person's edits of n0001: 1 row changed, 1 row removed, "
                                      "1 row added")
            # the planner's curriculum is kept as the parent version; the carried one is what trains
            version = store.datasets.get(review.dataset_version_id)
            assert "gold 1" in [r["input"] for r in store.datasets.rows(version["parent_id"])]
            node = next(n for n in store.runs.nodes(bus.run_id) if n["id"] == review.node_id)
            assert node["dataset_version_id"] == review.dataset_version_id
            assert version["composition"] == {s: sum(r["slice"] == s for r in review.rows) for s in ("gold", "replay")}
        # the curation log says what each carried curriculum carries
        log = render_curation_log(store.runs.events(bus.run_id))
        assert log.count("carries the person's edits of n0001: 1 row changed, 1 row removed, 1 row added") == \
            len(later)


# ------------------------------------------------------------------ rollback


class Scripted(RulePlanner):
    """Each expansion makes the next scripted change (one candidate), then nothing."""

    def __init__(self, moves: list[tuple[dict, str]]) -> None:
        super().__init__(seed=0)
        self.moves = list(moves)
        self.states = []

    def expand(self, state):
        self.states.append(state)
        if state.veto is not None or not self.moves:
            return []
        return self.realise(state, [self.moves.pop(0)], "expand", 1)


class Gatekeeper(ScriptedReviewer):
    def __init__(self, rollback: bool) -> None:
        super().__init__([], who="gatekeeper")
        self.rollback = rollback
        self.asked: list[tuple[str, str]] = []

    def review_curriculum(self, review):
        return Decision("approve")

    def confirm_rollback(self, info: Confirmation) -> bool:
        self.asked.append(("rollback", info.node_id))
        return self.rollback

    def confirm_promotion(self, info: Confirmation) -> bool:
        self.asked.append(("promotion", info.node_id))
        return False


def regressing(pipeline) -> Result:
    """Fewer epochs helps, a much lower learning rate hurts; no candidate passes the gates."""
    if pipeline.hyperparams.learning_rate < 1e-5:
        return Result(fixed=2, broken=3, score=0.5)
    return Result(fixed=5, score=0.9 if pipeline.hyperparams.epochs == 4.0 else 0.8)


ROLLBACK_MOVES = [({"hyperparams.epochs": 4.0}, "fewer epochs"),
                  ({"hyperparams.learning_rate": 1e-6}, "a much lower learning rate"),
                  ({"hyperparams.epochs": 5.0}, "more epochs again")]
ROLLBACK_LOOP = LoopConfig(mcgs=MCGSConfig(horizon=3, candidates_per_expansion=1,
                                           schedule=ExplorationSchedule("constant", c0=3.0, c_min=0.0)), gates=GATES)


@pytest.mark.parametrize("confirmed", [True, False])
def test_a_regressing_candidate_is_rolled_back_only_when_a_person_confirms(tmp_path, confirmed):
    with Store(tmp_path / "ws") as store:
        bus, parts, runner = fake_run(store, regressing, ROLLBACK_LOOP)
        reviewer, planner = Gatekeeper(rollback=confirmed), Scripted(list(ROLLBACK_MOVES))
        run_loop(bus, replace(parts, planner=planner), reviewer, BudgetLimits(iterations=3))
        nodes = {n["id"]: n for n in store.runs.nodes(bus.run_id)}
        events = store.runs.events(bus.run_id)
        n1, n2 = (n for n in nodes.values() if n["rationale"] in ("fewer epochs", "a much lower learning rate"))
        assert n2["parent_id"] == n1["id"] and n2["score"] < n1["score"]
        assert ("rollback", n2["id"]) in reviewer.asked
        decision = next(d for d in store.runs.decisions(bus.run_id) if d["kind"] == "rollback")
        assert (decision["action"], decision["node_id"], decision["who"]) == \
            ("approve" if confirmed else "refuse", n2["id"], "gatekeeper")
        after = [n for n in nodes.values() if n["iteration"] > n2["iteration"]]
        assert after
        rollbacks = [e.payload for e in events if e.type == "rollback"]
        if not confirmed:  # refused: nothing is restored and the search grows on from the regressed node
            assert rollbacks == [] and store.models.get(n2["model_id"])["status"] == "candidate"
            assert all(n["parent_id"] == n2["id"] for n in after)
            assert planner.states[-1].node.id == n2["id"] and planner.states[-1].action.kind != "rollback"
            return
        (rollback,) = rollbacks
        assert rollback["node_id"] == n2["id"]
        assert (rollback["from_model"], rollback["to_model"]) == (n2["model_id"], n1["model_id"])
        # registry restored: the regressed model is rolled back, the restored one is untouched
        assert store.models.get(n2["model_id"])["status"] == "rolled_back"
        assert store.models.get(n1["model_id"])["status"] == "candidate"
        assert store.models.deployed()["id"] == DEPLOYED
        # the regressed node is closed and the search grows from the restored node's data and configuration
        assert n2["metrics"]["exhausted"] is True
        assert all(n["parent_id"] == n1["id"] for n in after)
        # the planner was asked to grow the restored node, told why
        grown = planner.states[-1]
        assert (grown.node.id, grown.action.kind, grown.action.reason) == (n1["id"], "rollback", rollback["reason"])


# ------------------------------------------------------------------ resume


def passes_with_more_gold(pipeline) -> Result:
    """Only a candidate with more gold than the root passes the gates (so the run ends in a promotion)."""
    score = round(0.5 + 0.4 * pipeline.data.gold_fraction + 1000 * pipeline.hyperparams.learning_rate, 4)
    return Result(fixed=45 if pipeline.data.gold_fraction > 0.5 else 5, score=score)


LIMITS = BudgetLimits(iterations=4)


class StoppableRunner(FakeRunner):
    """Like the real runners: training reports a first step, then honours should_stop (the attempt is
    registered as failed and nothing is kept)."""

    def train(self, node, dataset_version_id, model_id, progress, should_stop):
        progress(Progress(1, 2, 0.5, 0.2, 100.0, 0.1))
        if should_stop():
            self.store.models.register(base_model="minilm", artifact_path=None, task="classification",
                                       method="full", parent_id=DEPLOYED, dataset_version_id=dataset_version_id,
                                       status="failed", model_id=model_id)
            raise TrainingError("stopped on request at step 1/2; nothing was saved")
        super().train(node, dataset_version_id, model_id, progress, should_stop)


def parts_for(store: Store) -> LoopParts:
    return LoopParts(production_root(), RulePlanner(seed=0), StoppableRunner(store, passes_with_more_gold),
                     LoopConfig(gates=GATES))


@pytest.fixture
def resumable(monkeypatch):
    """`resume_run` rebuilds production runs with the fake runner (MODE_FACTORIES, like `pioneer-tui resume`)."""
    module = types.ModuleType("fake_production_mode")
    module.loop_parts = lambda store, run, bus: parts_for(store)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(loop.MODE_FACTORIES, "production", f"{module.__name__}:loop_parts")


def start(store: Store, *subscribers):
    bus, _, _ = fake_run(store, passes_with_more_gold)
    for fn in subscribers:
        bus.subscribe(fn)
    return bus


def graph_of(store: Store, run_id: str) -> dict:
    """The run's graph, decisions and outcome with run ids stripped (two runs compare equal)."""
    def local(node_id):
        return node_id.rsplit(".", 1)[-1] if node_id else None

    nodes = [(local(n["id"]), n["pipeline_hash"], local(n["parent_id"]), n["status"], n["score"], n["regressions"],
              n["visits"], round(n["total_reward"], 9), bool((n["metrics"] or {}).get("exhausted")))
             for n in store.runs.nodes(run_id)]
    edges = sorted((local(e["src"]), local(e["dst"]), e["operator"]) for e in store.runs.edges(run_id))
    decisions = [(d["kind"], d["action"], local(d["node_id"])) for d in store.runs.decisions(run_id)]
    events = store.runs.events(run_id)
    finished = [e.payload for e in events if e.type == "run_finished"]
    promoted = [local(e.payload["node_id"]) for e in events if e.type == "promoted"]
    return {"nodes": nodes, "edges": edges, "decisions": decisions, "promoted": promoted,
            "finished": [(f["status"], f["reason"].replace(run_id, "RUN"), local(f["best_node"])) for f in finished],
            "status": store.runs.get(run_id)["status"]}


@pytest.fixture
def uninterrupted(tmp_path):
    with Store(tmp_path / "straight") as store:
        bus = start(store)
        result = run_loop(bus, parts_for(store), Asker(), LIMITS)
        assert result.promoted_model is not None  # the run goes through to a promotion
        return graph_of(store, bus.run_id)


def recorded(store: Store, run_id: str) -> set[tuple[str, str]]:
    kinds = {"curriculum": "curriculum", "rollback": "rollback", "promotion": "promotion"}
    return {(kinds[d["kind"]], d["node_id"]) for d in store.runs.decisions(run_id) if d["kind"] in kinds
            and d["who"] != "engine"}


def test_stops_resume_without_asking_twice_and_retrain_interrupted_training(tmp_path, resumable, uninterrupted):
    with Store(tmp_path / "ws") as store:
        # 1. stop right after the first curriculum is proposed: nothing is asked yet
        stop = StopOn("curriculum_proposed")
        bus = start(store, stop)
        first = run_loop(bus, parts_for(store), Asker(), LIMITS, stop.should_stop)
        run_id, node = bus.run_id, stop.node
        assert first.status == "interrupted" and store.runs.get(run_id)["status"] == "interrupted"
        assert [n["status"] for n in store.runs.nodes(run_id) if n["id"] == node] == ["proposed"]
        assert store.runs.decisions(run_id) == []

        # 2. resume; stop at the first progress report: the node was reviewed once, training is cut off
        stop = StopOn("train_progress")
        reviewer = Asker()
        second = resume_run(store, run_id, reviewer=reviewer, subscribers=(stop,), should_stop=stop.should_stop,
                            limits=LIMITS)
        assert second.status == "interrupted" and reviewer.asked == [("curriculum", node)]
        assert [n["status"] for n in store.runs.nodes(run_id) if n["id"] == node] == ["training"]
        assert store.models.get(f"{node}.m1")["status"] == "failed"

        # 3. resume to the end: the recorded decision is reused, training restarts from the base as .m2
        third = resume_run(store, run_id, reviewer=Asker(never_ask={("curriculum", node)}), limits=LIMITS)
        assert third.status == "finished"
        events = store.runs.events(run_id)
        assert sum(1 for e in events if e.type == "curriculum_proposed" and e.payload["node_id"] == node) == 1
        assert sum(1 for e in events if e.type == "train_started" and e.payload["node_id"] == node) == 2
        assert [d["node_id"] for d in store.runs.decisions(run_id) if d["kind"] == "curriculum"].count(node) == 1
        assert next(n for n in store.runs.nodes(run_id) if n["id"] == node)["model_id"] == f"{node}.m2"
        assert [e.type for e in events].count("run_started") == 1 and [e.type for e in events].count("run_finished") == 1
        assert graph_of(store, run_id) == uninterrupted


class Crash(BaseException):
    """The process dies at an event (raised by a subscriber, after the event's transaction committed, as a
    SIGKILL after a stored event would): nothing in the engine handles it. The real SIGKILL, in a
    subprocess, is tests/test_resume.py (slow)."""


@pytest.mark.parametrize("kill_after", [("curriculum_proposed", 2), ("decision_recorded", 1), ("train_started", 1),
                                        ("train_progress", 2), ("node_evaluated", 2), ("gate_checked", 1)])
def test_crashed_at_any_event_then_resumed_gives_the_uninterrupted_graph(tmp_path, resumable, uninterrupted,
                                                                          kill_after):
    kind, n = kill_after
    seen = []

    def kill(event):
        seen.append(event.type)
        if event.type == kind and seen.count(kind) == n:
            raise Crash

    with Store(tmp_path / "ws") as store:
        bus = start(store, kill)
        with pytest.raises(Crash):
            run_loop(bus, parts_for(store), Asker(), LIMITS)
        run_id = bus.run_id
        answered = recorded(store, run_id)
    with Store(tmp_path / "ws") as store:  # a new process opens the workspace
        run = store.runs.get(run_id)
        assert (run["status"], run["stop_reason"]) == ("failed", "Crash: ")  # marked on the way down, not finished
        assert not any(e.type == "run_finished" for e in store.runs.events(run_id))
        result = resume_run(store, run_id, reviewer=Asker(never_ask=answered), limits=LIMITS)
        assert result.status == "finished"
        got = graph_of(store, run_id)
        assert len({n[1] for n in got["nodes"]}) == len(got["nodes"])  # no duplicate nodes
        assert got == uninterrupted
        assert got["promoted"] and result.promoted_model == store.models.deployed()["id"]


# ------------------------------------------------------------------ searching on after a pass short of tau

# Candidates in the order they are trained: two passes short of tau (the second better), two worse, one at tau.
IN_TRAINING_ORDER = [Result(fixed=30, score=0.90), Result(fixed=40, score=0.92), Result(fixed=20, score=0.85),
                     Result(fixed=22, score=0.86), Result(fixed=48, score=0.99)]


class InOrder:
    """Each new pipeline gets the next scripted result, whatever moves the search made."""

    def __init__(self) -> None:
        self.seen: dict[str, Result] = {}

    def __call__(self, pipeline) -> Result:
        key = repr(pipeline)
        if key not in self.seen:
            self.seen[key] = IN_TRAINING_ORDER[min(len(self.seen), len(IN_TRAINING_ORDER) - 1)]
        return self.seen[key]


@pytest.mark.parametrize(("search_on", "promoted", "trained"), [(0, 0, 1), (2, 1, 4), (9, 4, 5)])
def test_a_pass_short_of_tau_is_offered_after_search_on_more_candidates(tmp_path, search_on, promoted, trained):
    """Every candidate passes the traffic rule; one below tau on the failure set waits for `search_on` more
    candidates, then the best by estimated gain is offered; one at tau settles at once."""
    moves = [({"hyperparams.epochs": e}, f"{e:g} epochs") for e in range(4, 12)]
    config = LoopConfig(mcgs=MCGSConfig(candidates_per_expansion=1), gates=GATES, search_on=search_on)
    reviewer, outcome = Asker(), InOrder()
    with Store(tmp_path / "ws") as store:
        bus, parts, runner = fake_run(store, outcome, config)
        result = run_loop(bus, replace(parts, planner=Scripted(moves)), reviewer, BudgetLimits(iterations=9))
        node = next(n for n in store.runs.nodes(bus.run_id) if n["model_id"] == result.promoted_model)
        assert outcome(Pipeline.from_dict(node["pipeline"])) == IN_TRAINING_ORDER[promoted]
        assert len(runner.trained) == trained
        assert [kind for kind, _ in reviewer.asked if kind == "promotion"] == ["promotion"]
        notes = [e.payload for e in store.runs.events(bus.run_id)
                 if e.type == "curation_note" and e.payload["section"] == "Promotion"]
        if search_on:
            assert "fixes 90.0% of the held-out failures (tau 96%)" in notes[0]["markdown"]
            assert "the search evaluates up to" in render_curation_log(store.runs.events(bus.run_id))
        else:
            assert notes == []


class Offers(Asker):
    """Approves everything and keeps what each promotion offer said."""

    def __init__(self) -> None:
        super().__init__()
        self.offers: list[str] = []

    def confirm_promotion(self, info: Confirmation) -> bool:
        self.offers.append(info.summary)
        return super().confirm_promotion(info)


def test_an_offer_that_is_not_the_best_score_says_why_it_comes_first(tmp_path):
    """Candidates are offered by estimated gain on traffic; when the search's best failure-set score is
    another node, the offer says so, so a person is not left to wonder why."""
    order = [Result(fixed=30, score=0.95), Result(fixed=40, score=0.90)]
    seen: dict[str, Result] = {}

    def outcome(pipeline) -> Result:
        return seen.setdefault(repr(pipeline), order[min(len(seen), len(order) - 1)])

    moves = [({"hyperparams.epochs": e}, f"{e:g} epochs") for e in range(4, 8)]
    config = LoopConfig(mcgs=MCGSConfig(candidates_per_expansion=1), gates=GATES, search_on=1)
    reviewer = Offers()
    with Store(tmp_path / "ws") as store:
        bus, parts, runner = fake_run(store, outcome, config)
        run_loop(bus, replace(parts, planner=Scripted(moves)), reviewer, BudgetLimits(iterations=2))
    assert len(reviewer.offers) == 1
    assert reviewer.offers[0].endswith("; n0001 scores higher on the failure set (0.950 against 0.900) but gains "
                                       "less on traffic")
