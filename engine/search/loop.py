"""The agent loop both modes share: MCGS over pipelines, a person at every gate, one event stream.

One pass of `AgentLoop.run`:
    stop? (a candidate passed its gates, a budget is spent, a stop was requested)
    step = MCGS.next_step()
    evaluate -> curriculum built (curriculum_proposed) -> Reviewer.review_curriculum (approve / veto
                / edit: decision_recorded; an edit is a new dataset version) -> train from the base
                (train_started, train_progress at most every 0.5 s) -> evaluate (node_evaluated,
                gate_checked, budget)
    expand / evolve / fuse -> the policy's action; a regression asks Reviewer.confirm_rollback
                (rollback event, the regressed model marked rolled_back, grow from the parent) ->
                the planner proposes -> node_added
    exhausted -> stop
A baseline root (the deployed model) stores its score on this run's evaluation in the registry, so
the monotone gate compares candidates with it like for like. Then the best candidate whose gates
passed goes to Reviewer.confirm_promotion and, if approved, Deployment.promote; run_finished says
what happened and why. data-curation.md is rewritten from the events after every step.

Crash safety: every state change is one transaction with its events, and what to do next is read
from the stored graph, so a run killed at any point resumes where it stopped (`resume_run`):
a `proposed` node without a dataset version gets its curriculum; with one, the reviewer is asked
(the answer moves the node to approved / vetoed in the same transaction, so it is never asked
twice); `approved` is trained; `training` (interrupted) is trained again from the base under a new
model id; rollback and promotion answers already recorded are reused. MCGS choices are seeded by
the graph, so the resumed run grows the same graph an uninterrupted one would.
"""

from __future__ import annotations

import importlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from engine.curation_log import pipeline_change, write_curation_log
from engine.curriculum import slice_changes
from engine.errors import ConfigError, GateError, RunNotResumable, TrainingError
from engine.events import (
    BudgetSpent,
    CurationNote,
    CurriculumProposed,
    EventBus,
    Rollback,
    RunFinished,
    RunStarted,
    Subscriber,
    TrainProgress,
    TrainStarted,
)
from engine.gate_text import gates_summary
from engine.models.base import Progress, ProgressCallback
from engine.search.budget import Budget, BudgetLimits
from engine.search.gates import Candidate, Deployment, GateConfig, GateReport, TrafficEvidence
from engine.search.graph import Node, SearchGraph
from engine.search.mcgs import MCGS, ExplorationSchedule, MCGSConfig, Step
from engine.search.pipeline import Pipeline
from engine.search.planner import FailureSummary, Planner, Proposal, VetoFeedback
from engine.search.policy import Action, IterationPolicy, Outcome, PolicyConfig
from engine.search.reviewer import (
    VETO_REASONS,
    Confirmation,
    CurriculumReview,
    Decision,
    Reviewer,
    carry_edits,
    record_confirmation,
    record_override,
    record_review,
)
from store import Store
from store.jsoncols import now

# The note of a curriculum version that carries a person's earlier edits; the review shows it.
CARRIED = "carries "


def _carried(version: Mapping[str, Any]) -> str:
    """What a dataset version carries of a person's earlier edits (AgentLoop._carry_edits), or ""."""
    note = version.get("note") or ""
    return note if note.startswith(CARRIED) else ""


# Modes whose runs `resume_run` can rebuild: mode -> "module:function" returning LoopParts.
MODE_FACTORIES: dict[str, str] = {
    "production": "engine.production:loop_parts",
    "cold_start": "engine.coldstart.mode:loop_parts",
}


class NodeFailed(RuntimeError):
    """A runner could not build, train or evaluate one node (the node fails, the search goes on)."""


@dataclass(frozen=True)
class NodeEvaluation:
    """What evaluating one node's model produced.

    `score` is f (the node's reward); production also fills `failure_score` a(pi), `regressions`
    r(pi), `cross_regressions` of `cross_size` items (None without a previous checkpoint) and
    `evidence` for the traffic rule (see gates). `examples` are per-example
    rows for store.runs.add_evaluations (eval_set, example_id, input, expected, prediction, correct,
    score, confidence). `patterns` maps each remaining failure pattern to its size. A baseline
    (the deployed model itself) is not `promotable`.
    """

    score: float
    regressions: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    examples: tuple[dict[str, Any], ...] = ()
    failures: FailureSummary = field(default_factory=FailureSummary)
    patterns: dict[str, int] = field(default_factory=dict)
    failure_score: float | None = None
    cross_regressions: int | None = None
    evidence: TrafficEvidence | None = None
    cross_size: int | None = None
    promotable: bool = True


class NodeRunner(Protocol):
    """What a mode plugs into the loop. Raise NodeFailed (or TrainingError / ConfigError) for a
    failure of one node; anything else stops the run."""

    def baseline(self) -> str | None:
        """A registered model evaluated as the root instead of training it (production: the
        deployed model), or None when the root is trained like any node."""
        ...

    def labels(self) -> tuple[str, ...]:
        """The answers a model may give (classification labels, NER entity types; empty for
        generation): what a reviewer's edit is checked against."""
        ...

    def build_curriculum(self, node: Node) -> str:
        """Build and store the node's dataset version (rows with ids; composition and qc_report on
        the version) and return its id."""
        ...

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        """Train from the base model and register the result as `model_id`."""
        ...

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation: ...


@dataclass(frozen=True)
class LoopConfig:
    mcgs: MCGSConfig = field(default_factory=MCGSConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    gates: GateConfig = field(default_factory=GateConfig)
    progress_interval_s: float = 0.5
    reasoning: bool = False
    teacher: str | None = None
    # A candidate that passed its gates but fixes less than tau of the failure set is not offered at
    # once: the search evaluates up to this many more candidates for a better one (budget allowing),
    # then offers the best. 0 offers the first that passes (the paper's loop).
    search_on: int = 2

    def __post_init__(self) -> None:
        if self.progress_interval_s < 0:
            raise ConfigError(f"LoopConfig.progress_interval_s={self.progress_interval_s!r} is invalid: use >= 0")
        if not isinstance(self.search_on, int) or self.search_on < 0:
            raise ConfigError(f"LoopConfig.search_on={self.search_on!r} is invalid: use an integer >= 0 (2)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoopConfig:
        try:
            mcgs = dict(raw.get("mcgs") or {})
            schedule = ExplorationSchedule(**(mcgs.pop("schedule", None) or {}))
            return cls(mcgs=MCGSConfig(schedule=schedule, **mcgs), policy=PolicyConfig(**(raw.get("policy") or {})),
                       gates=GateConfig(**(raw.get("gates") or {})),
                       **{k: raw[k] for k in ("progress_interval_s", "reasoning", "teacher", "search_on") if k in raw})
        except TypeError as exc:
            raise ConfigError(f"stored loop configuration is invalid: {exc}") from exc


@dataclass(frozen=True)
class LoopParts:
    """Everything a mode gives the loop; `finish_reason` set means there is nothing to search."""

    root: Pipeline
    planner: Planner
    runner: NodeRunner
    config: LoopConfig
    root_rationale: str = "initial pipeline"
    finish_reason: str | None = None
    # A mode's own stop rule beside the budgets (cold-start's plateau); a reason ends the run.
    stop_check: Callable[[], str | None] | None = None


@dataclass(frozen=True)
class LoopResult:
    run_id: str
    status: str  # finished | interrupted
    reason: str
    best_node: str | None = None
    best_score: float | None = None
    promoted_model: str | None = None
    outcome: str = ""


class _Interrupted(Exception):
    pass


def open_run(store: Store, mode: str, config: dict[str, Any], *, run_id: str | None = None,
             subscribers: tuple[Subscriber, ...] = ()) -> EventBus:
    """Create the run row and its run_started event in one transaction."""
    with store.transaction():
        run_id = store.runs.create(mode, config, run_id=run_id)
        bus = EventBus(store, run_id)
        for fn in subscribers:
            bus.subscribe(fn)
        bus.emit(RunStarted(mode=mode, config=config))
    return bus


class AgentLoop:
    def __init__(self, bus: EventBus, *, parts: LoopParts, reviewer: Reviewer, budget: Budget,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self.bus = bus
        self.store = bus.store
        self.run_id = bus.run_id
        self.parts = parts
        self.config = parts.config
        self.planner = parts.planner
        self.runner = parts.runner
        self.reviewer = reviewer
        self.budget = budget
        self.should_stop = should_stop or (lambda: False)
        self.graph = SearchGraph.load(self.store, self.run_id, bus)
        self.mcgs = MCGS(self.graph, self.config.mcgs)
        self.policy = IterationPolicy(self.config.policy)
        self.deployment = Deployment(self.store, bus, self.config.gates)

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> LoopResult:
        run = self.store.runs.get(self.run_id)
        if run is None:
            raise RunNotResumable(f"run {self.run_id} does not exist")
        if run["status"] == "finished":
            return result_of(self.store, self.run_id)
        self.store.runs.update(self.run_id, status="running")
        self.budget.start()
        try:
            with self.store.transaction():
                self._save_budget()
            if self.parts.finish_reason is not None:
                return self._finish(self.parts.finish_reason)
            if not self.graph.nodes:
                self.mcgs.add_root(self.parts.root, self.parts.root_rationale)
            self._write_log()
            while True:
                if self.should_stop():
                    raise _Interrupted
                stop = self._stop_reason()
                reason = self._offer_promotion(final=stop is not None) or stop
                if reason is not None:
                    break
                step = self.mcgs.next_step()
                if step.kind == "exhausted":
                    reason = self._offer_promotion(final=True) or f"search exhausted: {step.reason}"
                    break
                if step.kind == "evaluate":
                    self._visit(step.node)
                else:
                    self._grow(step)
                self._write_log()
            return self._finish(reason)
        except _Interrupted:
            return self._interrupt()
        except KeyboardInterrupt:
            self._interrupt()
            raise
        except BaseException as exc:
            self.budget.pause()
            self.store.runs.update(self.run_id, status="failed", stop_reason=f"{type(exc).__name__}: {exc}",
                                   spent=self.budget.to_dict())
            raise
        finally:
            self.budget.pause()

    def _stop_reason(self) -> str | None:
        return self.budget.exhausted() or (self.parts.stop_check() if self.parts.stop_check else None)

    def _offer_promotion(self, *, final: bool) -> str | None:
        """The best candidate that passed its gates and no one refused goes to the Reviewer once the
        search has settled (`_settled`) or is ending (`final`): an approval promotes it and ends the
        run; a refusal is recorded on the node and the search goes on. When the run is ending there is no
        search left to go on with, so a refusal offers the next passing candidate, best first."""
        for node in [n for n in self._passing_nodes() if not self._refused(n)]:
            if not final and not self._settled(node):
                return None
            candidate = Candidate.from_dict(node.metrics["candidate"])
            if not self._confirm("promotion", self._promotion_info(node, candidate)):
                with self.store.transaction():
                    self.graph.annotate(node.id, promotion={"action": "refuse", "who": self.reviewer.who})
            else:
                try:
                    self.deployment.promote(candidate, GateReport.from_dict(node.metrics["gates"]))
                    return (f"gates passed at {node.id} (score {node.score:.3f}; {_gate_summary(node)}) and a "
                            "person approved")
                except GateError as exc:
                    with self.store.transaction():
                        self.graph.annotate(node.id, promotion={"action": "refused_by_registry",
                                                                "reason": str(exc)})
            if not final:
                return None
        return None

    # -- evaluating a node --------------------------------------------------------------------
    def _visit(self, node: Node) -> None:
        baseline = self.runner.baseline() if node.parent_id is None else None
        if baseline is not None:
            self._record(node, baseline, self.runner.evaluate(node, baseline), charge=False)
            return
        try:
            if node.status == "proposed" and node.dataset_version_id is None:
                with self.store.transaction():
                    version = self._carry_edits(self.runner.build_curriculum(node))
                    self.graph.set_status(node.id, "proposed", dataset_version_id=version)
                    info = self.store.datasets.get(version) or {}
                    self.bus.emit(CurriculumProposed(node_id=node.id, dataset_version_id=version,
                                                     composition=info.get("composition") or {},
                                                     qc=info.get("qc_report") or {}, carried=_carried(info)))
                    if (same := self._vetoed_twin(node.id, info.get("content_hash"))) is not None:
                        why = f"the same rows as the curriculum vetoed at {same}: never proposed again unchanged"
                        self.mcgs.veto(node.id, why)
                        record_review(self.bus, "engine", CurriculumReview(node.id, node.pipeline, (), version),
                                      Decision("veto", why))
                self._write_log()
            if node.status == "vetoed":
                return
            if self.should_stop():
                raise _Interrupted
            if node.status == "proposed" and not self._review(node):
                return
            if self.should_stop():
                raise _Interrupted
            self._train_and_evaluate(node)
        except (NodeFailed, TrainingError, ConfigError) as exc:
            if self.should_stop():
                raise _Interrupted from exc
            self._fail(node, f"{type(exc).__name__}: {exc}")

    def _review(self, node: Node) -> bool:
        version = node.dataset_version_id
        info = self.store.datasets.get(version) or {}
        rows = tuple(self.store.datasets.rows(version))
        parent = self.graph.nodes.get(node.parent_id) if node.parent_id else None
        review = CurriculumReview(node.id, node.pipeline, rows, version, dict(info.get("composition") or {}),
                                  node.rationale, self._against_vetoed(node.id, rows), tuple(self.runner.labels()),
                                  pipeline_change(parent and parent.pipeline.to_dict(), node.pipeline.to_dict(), None),
                                  _carried(info))
        with self._waiting_for_person():  # outside any transaction: a person may take minutes
            decision = self.reviewer.review_curriculum(review)
        with self.store.transaction():
            chosen = record_review(self.bus, self.reviewer.who, review, decision)
            if decision.action == "veto":
                said = [VETO_REASONS[r].split(" (")[0] for r in decision.reasons if r != "other"]
                why = "; ".join(x for x in (", ".join(said), (decision.reason or "").strip()) if x) or "vetoed"
                vetoed = self.mcgs.veto(node.id, why)
                self._revise(vetoed, VetoFeedback(decision.reasons, (decision.reason or "").strip(), node.id))
            else:
                self.graph.set_status(node.id, "approved", dataset_version_id=chosen)
        self._write_log()
        return decision.action != "veto"

    def _carry_edits(self, version: str) -> str:
        """A new curriculum with the person's earlier edits in this run applied (reviewer.carry_edits), as a
        version of its own whose note says what it carries; `version` itself when none applies. An edit
        whose node failed (say, it put held-out items into training) is not carried."""
        edits = [d for d in self.store.runs.decisions(self.run_id) if d["kind"] == "curriculum"
                 and d["action"] == "edit" and d["who"] != "engine"
                 and self.graph.nodes[d["node_id"]].status != "failed"]
        if not edits:
            return version
        rows, counts = carry_edits(self.store.datasets.rows(version), [d["diff"] or {} for d in edits])
        if not any(counts.values()):
            return version
        info = self.store.datasets.get(version) or {}
        nodes = ", ".join(dict.fromkeys(str(d["node_id"]).rsplit(".", 1)[-1] for d in edits))
        kept = ", ".join(f"{n} {'row' if n == 1 else 'rows'} {kind}" for kind, n in counts.items() if n)
        slices = Counter(str(r.get("slice") or "") for r in rows)
        built = info.get("composition") or {}
        composition = {k: slices.get(k, 0) for k in built} | {k: n for k, n in slices.items() if k and k not in built}
        return self.store.datasets.create(rows, task=info.get("task"), parent_id=version, run_id=self.run_id,
                                          composition=composition, qc_report=info.get("qc_report"),
                                          note=f"{CARRIED}the person's edits of {nodes}: {kept}")

    def _revise(self, vetoed: Node, feedback: VetoFeedback) -> None:
        """Ask the planner to revise the vetoed pipeline by what the person said; the revision is the
        vetoed node's child, so it is the next curriculum reviewed."""
        parent = self.graph.get(vetoed.parent_id) if vetoed.parent_id else None
        action = self.policy.decide(Outcome(parent.id, parent.score or 0.0, parent.regressions)) \
            if parent is not None else Action("rework_data", "revise after a veto", "rework_data")
        state = self.mcgs.state(Step("expand", vetoed), vetoed, action, _failures(parent) if parent else None,
                                reasoning=self.config.reasoning, teacher=self.config.teacher)
        self.mcgs.add_proposals(vetoed, self.planner.expand(replace(state, veto=feedback)))
        self._charge_planner(vetoed.id)

    def _vetoed_twin(self, node_id: str, content_hash: str | None) -> str | None:
        """The vetoed node of this run whose curriculum has exactly these rows, weighed the same way (a
        revision that only balances the slices' loss shares trains differently on the same rows), if any."""
        balance = self.graph.nodes[node_id].pipeline.data.balance
        for other in self.graph.nodes.values():
            if other.id != node_id and other.status == "vetoed" and other.dataset_version_id and content_hash \
                    and other.pipeline.data.balance == balance \
                    and (self.store.datasets.get(other.dataset_version_id) or {}).get("content_hash") == content_hash:
                return other.id
        return None

    def _against_vetoed(self, node_id: str, rows: tuple[dict[str, Any], ...]) -> dict[str, Any] | None:
        """The curriculum a person vetoed that this one answers, and how they differ slice by slice: the
        parent's, when this is its revision (`revision` true); or, when the person's last review was a
        veto the planner found nothing to change for, that one (`revision` false: this is the search's
        next proposal, and the person is told so rather than left to read it as the revision)."""
        people = [d for d in self.store.runs.decisions(self.run_id) if d["kind"] == "curriculum"
                  and d["who"] != "engine" and d["node_id"] != node_id]
        node = self.graph.nodes[node_id]
        parent = self.graph.nodes.get(node.parent_id) if node.parent_id else None
        if parent is not None and parent.status == "vetoed" and any(
                d["node_id"] == parent.id and d["action"] == "veto" for d in people):
            vetoed, revision = parent, True
        elif people and people[-1]["action"] == "veto" and not self.graph.nodes[people[-1]["node_id"]].children:
            vetoed, revision = self.graph.nodes[people[-1]["node_id"]], False
        else:
            return None
        if not vetoed.dataset_version_id:
            return None
        info = self.store.datasets.get(vetoed.dataset_version_id) or {}
        added, removed = slice_changes(self.store.datasets.rows(vetoed.dataset_version_id), rows)
        return {"node_id": vetoed.id, "reason": vetoed.metrics.get("veto_reason"), "revision": revision,
                "composition": dict(info.get("composition") or {}), "added": added, "removed": removed}

    def _train_and_evaluate(self, node: Node) -> None:
        version = node.dataset_version_id
        model_id = self._next_model_id(node)
        info = self.store.datasets.get(version) or {}
        h = node.pipeline.hyperparams
        total = max(1, math.ceil(h.epochs * math.ceil(max(int(info.get("n_rows") or 1), 1) / h.batch_size)))
        with self.store.transaction():
            self.graph.set_status(node.id, "training")
            self.bus.emit(TrainStarted(node_id=node.id, total_steps=total, model_id=model_id,
                                       dataset_version_id=version))
        try:
            self.runner.train(node, version, model_id, self._progress(node.id), self.should_stop)
        except TrainingError:
            if self.store.models.get(model_id) is not None:
                self.graph.set_status(node.id, "training", model_id=model_id)
            raise
        self._record(node, model_id, self.runner.evaluate(node, model_id), charge=True)

    def _next_model_id(self, node: Node) -> str:
        """`<node>.m<attempt>`: an interrupted attempt that registered nothing is simply redone."""
        taken = self.store.conn.execute("SELECT COUNT(*) FROM models WHERE id LIKE ? ESCAPE '\\'",
                                        (_like_prefix(node.id + ".m"),)).fetchone()[0]
        return f"{node.id}.m{int(taken) + 1}"

    def _progress(self, node_id: str) -> ProgressCallback:
        last = [-math.inf]

        def report(p: Progress) -> None:
            moment = time.monotonic()
            if p.step < p.total_steps and moment - last[0] < self.config.progress_interval_s:
                return
            last[0] = moment
            self.bus.emit(TrainProgress(node_id=node_id, step=p.step, total_steps=p.total_steps, loss=_finite(p.loss),
                                        examples_per_s=_finite(p.examples_per_s), eta_s=_finite(p.eta_s)))
        return report

    def _record(self, node: Node, model_id: str, ev: NodeEvaluation, *, charge: bool) -> None:
        """Per-example rows, the result (backpropagated), gate verdicts and the budget: one transaction."""
        candidate = Candidate(node.id, model_id, ev.score, ev.failure_score, ev.regressions, ev.cross_regressions,
                              ev.evidence, ev.cross_size) if ev.promotable else None
        with self.store.transaction():
            if ev.examples:
                self.store.runs.add_evaluations({**row, "run_id": self.run_id, "node_id": node.id, "model_id": model_id}
                                                for row in ev.examples)
            self.graph.set_status(node.id, node.status, model_id=model_id)
            self.mcgs.record(node.id, ev.score, ev.regressions, ev.metrics)
            self.graph.annotate(node.id, failures=ev.failures.to_dict(), patterns=dict(ev.patterns),
                                candidate=asdict(candidate) if candidate else None, baseline=candidate is None)
            if candidate is not None:
                report = self.deployment.check(candidate)
                self.graph.annotate(node.id, gates=report.to_dict())
            elif (self.deployment.deployed() or {}).get("id") == model_id:
                # the monotone gate compares candidates with the deployed model on this run's evaluation
                self.store.models.update_metrics(model_id, {"score": ev.score})
            if charge:
                self.budget.charge_iteration()
            self._save_budget()

    def _fail(self, node: Node, reason: str) -> None:
        with self.store.transaction():
            self.mcgs.record_failure(node.id, reason)
            self.budget.charge_iteration()
            self._save_budget()

    # -- growing the graph --------------------------------------------------------------------
    def _grow(self, step: Step) -> None:
        current = step.node
        patterns = dict(current.metrics.get("patterns") or {})
        action = self.mcgs.decide(current, self.policy, patterns)
        rollback = False
        if action.kind == "rollback":
            target = self.graph.get(action.rollback_to)
            info = Confirmation(current.id, action.reason, {
                "from_model": current.model_id, "to_model": target.model_id, "rollback_to": target.id,
                "before": _numeric(target.metrics), "after": _numeric(current.metrics)})
            rollback = self._confirm("rollback", info)
            if not rollback:  # refused: keep growing from this node, in its own band
                action = self.mcgs.decide(current, self.policy, patterns, from_parent=False)
        with self.store.transaction():
            grow_from = current
            if rollback:
                grow_from = self.mcgs.roll_back(current, action)
                model = self.store.models.get(current.model_id) if current.model_id else None
                if model is not None and model["status"] == "candidate":
                    self.store.models.set_status(model["id"], "rolled_back")
                self.bus.emit(Rollback(node_id=current.id, from_model=current.model_id, to_model=grow_from.model_id,
                                       reason=action.reason))
            state = self.mcgs.state(step, grow_from, action, _failures(grow_from), reasoning=self.config.reasoning,
                                    teacher=self.config.teacher)
            self.mcgs.add_proposals(grow_from, self._plan(step.kind, state))
            self._charge_planner(grow_from.id)

    def _plan(self, kind: str, state: Any) -> list[Proposal]:
        if kind == "expand":
            return self.planner.expand(state)
        if kind == "evolve":
            return [self.planner.evolve(state)]
        return [self.planner.fuse(state)]

    def _charge_planner(self, node_id: str) -> None:
        charged = False
        for s in self.planner.take_steps():
            self.budget.charge_llm(s.tokens, s.cost_usd)
            charged = charged or s.tokens > 0 or s.cost_usd > 0
            if s.planner != "rule" or s.fallback_reason:
                note = f"- **Planner** {s.operator} by {s.planner}: {s.tokens} tokens, ${s.cost_usd:.4f}"
                if s.fallback_reason:
                    note += f"; fell back to the rule planner ({s.fallback_reason})"
                self.bus.emit(CurationNote(node_id=node_id, section="Planner", markdown=note))
        if charged:
            self._save_budget()

    # -- human confirmations ------------------------------------------------------------------
    def _confirm(self, kind: str, info: Confirmation) -> bool:
        """Ask once per (kind, node): a recorded answer is reused (a resumed run never asks again)."""
        recorded = self._recorded(kind, info.node_id)
        if recorded:
            return recorded[-1]["action"] == "approve"
        ask = self.reviewer.confirm_rollback if kind == "rollback" else self.reviewer.confirm_promotion
        with self._waiting_for_person():
            ok = bool(ask(info))
        record_confirmation(self.bus, self.reviewer.who, "rollback" if kind == "rollback" else "promotion", info, ok)
        return ok

    def _override(self, info: Confirmation) -> str | None:
        """A person's reason to promote a close call, asked once per node like a confirmation."""
        recorded = self._recorded("override", info.node_id)
        if recorded:
            return recorded[-1]["reason"] if recorded[-1]["action"] == "approve" else None
        with self._waiting_for_person():
            reason = self.reviewer.promote_anyway(info)
        reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
        record_override(self.bus, self.reviewer.who, info, reason)
        return reason

    @contextmanager
    def _waiting_for_person(self) -> Iterator[None]:
        """The wall-clock budget stops while a person decides (it measures the search, not the review),
        and the stream says so, so a live clock stops with it."""
        self.budget.pause()
        with self.store.transaction():
            self._save_budget(paused=True)
        try:
            yield
        finally:
            self.budget.start()
            with self.store.transaction():
                self._save_budget()

    def _recorded(self, kind: str, node_id: str | None) -> list[dict[str, Any]]:
        """This node's recorded answers of `kind` ("override": a close-call promotion decision)."""
        override = kind == "override"
        kind = "promotion" if override else kind
        return [d for d in self.store.runs.decisions(self.run_id) if d["kind"] == kind and d["node_id"] == node_id
                and bool((d["diff"] or {}).get("override")) is override]

    # -- ending -------------------------------------------------------------------------------
    def _passing_nodes(self) -> list[Node]:
        passing = [n for n in self.graph.evaluated() if (n.metrics.get("gates") or {}).get("passed")]
        return sorted(passing, key=_merit)

    def _finish(self, reason: str) -> LoopResult:
        promoted = next((e.payload.get("model_id") for e in self.bus.history() if e.type == "promoted"), None)
        current = self.deployment.deployed()
        keep = f"kept the deployed model {current['id']}" if current is not None else "no model promoted"
        extra: dict[str, Any] = {}
        if promoted:
            outcome = f"promoted {promoted}"
        elif refused := [n for n in self._passing_nodes() if self._refused(n)]:
            outcome = f"{keep}: refused by a person ({self.reviewer.who}): {', '.join(n.id for n in refused)}"
            extra["refused"] = [n.id for n in refused]
        elif close := self._close_calls():
            promoted, outcome, extra = self._close_call(close[0], keep)
        else:
            best = self.mcgs.best()
            detail = f"best {best.id}: score {best.score:.3f}; {_gate_summary(best)}" \
                if best is not None and best.metrics.get("gates") else "no candidate was evaluated"
            outcome = f"{keep}: no candidate passed the gates ({detail})"
        best = next((n for n in self.graph.nodes.values() if promoted and n.model_id == promoted), None) \
            or self.mcgs.best()  # the promoted candidate is the run's best, whatever ties its score
        with self.store.transaction():
            self._save_budget()
            self.bus.emit(RunFinished(status="finished", reason=reason, best_node=best.id if best else None,
                                      best_score=best.score if best else None, promoted_model=promoted,
                                      outcome=outcome, **extra))
            self.store.runs.update(self.run_id, status="finished", stop_reason=reason, finished_at=now())
        self._write_log()
        return LoopResult(self.run_id, "finished", reason, best.id if best else None, best.score if best else None,
                          promoted, outcome)

    def _close_call(self, node: Node, keep: str) -> tuple[str | None, str, dict[str, Any]]:
        """The best candidate failed only the regression budget: a person may promote it anyway with a
        reason (recorded as an override); otherwise the run says how to do it later."""
        candidate = Candidate.from_dict(node.metrics["candidate"])
        info = self._promotion_info(node, candidate)
        command = promote_command(node.id)
        reason = self._override(info)
        if reason:
            try:
                self.deployment.promote(candidate, GateReport.from_dict(node.metrics["gates"]), override=reason)
                return candidate.model_id, f"promoted {candidate.model_id} anyway ({self.reviewer.who}: {reason})", {}
            except GateError as exc:
                return None, f"{keep}: promotion refused by the registry ({exc})", {}
        broken = [{k: r[k] for k in ("id", "input", "expected", "prediction")} for r in info.details["regressions"]]
        # the command is its own field: the curation log and the headless summary print it on its own line
        return None, f"{keep}: {node.id} failed only the regression budget ({info.summary})", \
            {"close_call": node.id, "promote_command": command, "broken": broken}

    def _promotion_info(self, node: Node, candidate: Candidate) -> Confirmation:
        report = GateReport.from_dict(node.metrics["gates"])
        current = self.deployment.deployed()
        evidence = candidate.evidence
        summary = f"promote {candidate.model_id} (score {candidate.score:.3f}; {_gate_summary(node)})"
        if evidence is not None:
            summary = (f"promote {candidate.model_id}: estimated gain {evidence.gain():+.1%} on traffic like this "
                       f"run's (at least {evidence.gain_bound(self.config.gates.confidence):+.1%} at "
                       f"{self.config.gates.confidence:.0%}), {evidence.broken} of {evidence.regression} "
                       f"held-out passes broken")
            best = self.mcgs.best()
            if best is not None and (best.score or 0.0) > (node.score or 0.0):
                # the search's best (failure-set score) is not what is offered first: say why
                passed = (best.metrics.get("gates") or {}).get("passed")
                summary += (f"; {best.id.rsplit('.', 1)[-1]} scores higher on the failure set ({best.score:.3f} "
                            f"against {node.score or 0.0:.3f}) but "
                            + ("gains less on traffic" if passed else "did not pass its gates"))
        return Confirmation(node.id, summary, {
            "from_model": current["id"] if current else None, "to_model": candidate.model_id,
            "before": _numeric(self.graph.roots()[0].metrics) if self.graph.roots() else {},
            "after": _numeric(node.metrics), "gates": report.to_dict(), "close_call": not report.passed,
            "regressions": self._regressed_examples(node)})

    def _settled(self, best: Node) -> bool:
        """Whether to offer `best` (the best passing candidate) now: it fixes at least tau of the
        failure set, or `search_on` candidates evaluated after it found nothing better. Otherwise the
        curation log says the search goes on, once per candidate."""
        failure_score = (best.metrics.get("candidate") or {}).get("failure_score")
        tau = self.config.gates.tau
        if failure_score is None or failure_score >= tau:
            return True
        later = [n for n in self.graph.evaluated() if n.id > best.id and n.metrics.get("candidate")]
        if len(later) >= self.config.search_on:
            return True
        if not any(e.type == CurationNote.TYPE and e.payload.get("node_id") == best.id
                   and e.payload.get("section") == "Promotion" for e in self.bus.history()):
            with self.store.transaction():
                self.bus.emit(CurationNote(node_id=best.id, section="Promotion", markdown=(
                    f"- **Promotion waits**: {best.id} passed its gates but fixes {failure_score:.1%} of the held-out failures (tau "
                    f"{tau:.0%}): the search evaluates up to {self.config.search_on} more candidates for a better "
                    "one before offering the best")))
        return False

    def _refused(self, node: Node) -> bool:
        return (node.metrics.get("promotion") or {}).get("action") in ("refuse", "refused_by_registry")

    def _close_calls(self) -> list[Node]:
        close = [n for n in self.graph.evaluated() if (n.metrics.get("gates") or {}).get("close_call")]
        return sorted(close, key=_merit)

    def _interrupt(self) -> LoopResult:
        self.budget.pause()
        with self.store.transaction():
            self._save_budget()
            self.store.runs.update(self.run_id, status="interrupted", stop_reason="stopped on request")
        self._write_log()
        best = self.mcgs.best()
        return LoopResult(self.run_id, "interrupted", "stopped on request", best.id if best else None,
                          best.score if best else None, None, "resume it with `pioneer-tui resume RUN`")

    def _regressed_examples(self, node: Node, limit: int = 20) -> list[dict[str, Any]]:
        rows = [r for r in self.store.runs.evaluations(node.id) if r["eval_set"] != "failure" and r["correct"] == 0]
        return [{"eval_set": r["eval_set"], "id": r["example_id"], "input": r["input"], "expected": r["expected"],
                 "prediction": r["prediction"]} for r in rows[:limit]]

    def _save_budget(self, paused: bool = False) -> None:
        spent = self.budget.to_dict()
        best = self.mcgs.best()
        self.store.runs.update(self.run_id, spent=spent, best_score=best.score if best else None)
        self.bus.emit(BudgetSpent(spent=spent["spent"], limits=spent["limits"], paused=paused))

    def _write_log(self) -> None:
        write_curation_log(self.store, self.run_id)


# -- starting and resuming runs -------------------------------------------------------------------

def run_loop(bus: EventBus, parts: LoopParts, reviewer: Reviewer, limits: BudgetLimits,
             should_stop: Callable[[], bool] | None = None) -> LoopResult:
    """Run (or continue) the loop of an opened run; the budget continues from what the run spent."""
    return AgentLoop(bus, parts=parts, reviewer=reviewer, budget=_budget(bus.store, bus.run_id, limits),
                     should_stop=should_stop).run()


def resume_run(store: Store, run_id: str, *, reviewer: Reviewer, should_stop: Callable[[], bool] | None = None,
               subscribers: tuple[Subscriber, ...] = (), limits: BudgetLimits | None = None) -> LoopResult:
    """Continue a run that was interrupted or killed, from its stored graph, decisions and events."""
    run = store.runs.get(run_id)
    if run is None:
        known = ", ".join(r["id"] for r in store.runs.list()[-5:]) or "none"
        raise RunNotResumable(f"run {run_id} does not exist (recent runs: {known}); see `pioneer-tui runs`")
    bus = EventBus(store, run_id)
    for fn in subscribers:
        bus.subscribe(fn)
    if run["status"] == "finished":
        return result_of(store, run_id)
    target = MODE_FACTORIES.get(run["mode"])
    if target is None:
        raise RunNotResumable(f"run {run_id} is a {run['mode']} run, which this build cannot resume "
                              f"(resumable modes: {', '.join(sorted(MODE_FACTORIES))})")
    module, name = target.split(":")
    parts = getattr(importlib.import_module(module), name)(store, run, bus)
    stored = BudgetLimits(**((run["config"] or {}).get("budget") or {}))
    return run_loop(bus, parts, reviewer, limits or stored, should_stop)


def result_of(store: Store, run_id: str) -> LoopResult:
    """A finished run's result, read back from its run_finished event."""
    finished = [e for e in store.runs.events(run_id) if e.type == "run_finished"]
    if not finished:
        run = store.runs.get(run_id) or {}
        return LoopResult(run_id, str(run.get("status") or "unknown"), str(run.get("stop_reason") or ""))
    p = finished[-1].payload
    return LoopResult(run_id, str(p.get("status")), str(p.get("reason") or ""), p.get("best_node"),
                      p.get("best_score"), p.get("promoted_model"), str(p.get("outcome") or ""))


def _budget(store: Store, run_id: str, limits: BudgetLimits) -> Budget:
    spent = (store.runs.get(run_id) or {}).get("spent") or {}
    budget = Budget.from_dict(spent) if spent else Budget(limits)
    budget.limits = limits
    return budget


# -- helpers ------------------------------------------------------------------------------------------

def _failures(node: Node) -> FailureSummary:
    raw = node.metrics.get("failures") or {}
    return FailureSummary(
        confusion_pairs=tuple((str(a), str(b), int(n)) for a, b, n in raw.get("confusion_pairs") or ()),
        false_positives=int(raw.get("false_positives") or 0), false_negatives=int(raw.get("false_negatives") or 0),
        train_score=raw.get("train_score"), eval_score=raw.get("eval_score"),
        patterns=tuple((str(p), int(n)) for p, n in raw.get("patterns") or ()))


def _merit(node: Node) -> tuple[float, float]:
    """Best first: the larger estimated traffic gain (production's traffic rule), else the higher
    score; sorted() is stable, so of equals the oldest comes first."""
    evidence = (node.metrics.get("candidate") or {}).get("evidence")
    gain = TrafficEvidence(**evidence).gain() if evidence else 0.0
    return -gain, -(node.score or 0.0)


def promote_command(node_id: str) -> str:
    """What a person runs to promote a close call after the run (engine.promotion)."""
    return f'pioneer-tui promote {node_id} --reason "..."'


def _gate_summary(node: Node) -> str:
    return gates_summary((node.metrics.get("gates") or {}).get("results") or [])


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _finite(value: float) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


__all__ = [
    "MODE_FACTORIES", "AgentLoop", "LoopConfig", "LoopParts", "LoopResult", "NodeEvaluation", "NodeFailed",
    "NodeRunner", "RunNotResumable", "open_run", "result_of", "resume_run", "run_loop",
]
