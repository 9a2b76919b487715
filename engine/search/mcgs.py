"""Monte Carlo graph search over pipelines (the paper's Algorithm 1), without any training in it.

Each call to `next_step` says what the loop does next: evaluate the oldest unevaluated node
(unvisited children first), or grow the graph from a node chosen by
UCT(v) = mean descendant reward + c(t) * sqrt(ln N / n_v), with c(t) decaying over iterations and,
late in the search, only the top-K nodes eligible. After k evaluations without a new best score
the search evolves the best node or fuses the best nodes of different branches.

All state is derived from the graph (replayed on load) and every random choice is drawn from a
Random seeded by (seed, what, t, graph size), so a resumed run makes the same choices as an
uninterrupted one. A loop is a thin composition around `next_step`:

    evaluate  -> review the curriculum, train, evaluate; then record / record_failure / veto
    expand, evolve, fuse -> node, action = expansion_target(step, policy, patterns)
                 (or decide, then roll_back once a person confirmed the rollback)
                 add_proposals(node, planner.<kind>(state(step, node, action, failures)))
    exhausted -> stop
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from engine.errors import ConfigError
from engine.search.gates import TrafficEvidence
from engine.search.graph import PENDING, Node, SearchGraph, best_of
from engine.search.pipeline import Pipeline
from engine.search.planner import FailureSummary, MoveOutcome, Proposal, SearchState, move_signature
from engine.search.policy import Action, IterationPolicy, Outcome

StepKind = Literal["evaluate", "expand", "evolve", "fuse", "exhausted"]


@dataclass(frozen=True)
class ExplorationSchedule:
    """c(t): exponential c0*exp(-rate*t), linear from c0 to c_min over `horizon`, or constant."""

    kind: Literal["exponential", "linear", "constant"] = "exponential"
    c0: float = 1.0
    c_min: float = 0.05
    rate: float = 0.15

    def __post_init__(self) -> None:
        if self.kind not in ("exponential", "linear", "constant"):
            raise ConfigError(f"ExplorationSchedule.kind={self.kind!r} is invalid: use exponential, linear or constant")
        if not 0.0 <= self.c_min <= self.c0:
            raise ConfigError(f"ExplorationSchedule.c_min={self.c_min!r} is invalid: use 0 <= c_min <= c0")
        if self.rate < 0:
            raise ConfigError(f"ExplorationSchedule.rate={self.rate!r} is invalid: use a number >= 0")

    def c(self, t: int, horizon: int) -> float:
        if self.kind == "constant":
            return self.c0
        if self.kind == "exponential":
            return max(self.c_min, self.c0 * math.exp(-self.rate * t))
        return self.c0 - (self.c0 - self.c_min) * min(1.0, t / max(1, horizon))


@dataclass(frozen=True)
class MCGSConfig:
    schedule: ExplorationSchedule = field(default_factory=ExplorationSchedule)
    horizon: int = 20               # planned iterations (the loop sets it from the budget)
    exploit_after: float = 0.6      # fraction of the horizon after which only the top-K are expanded
    top_k: int = 3
    stagnation_k: int = 3           # non-improving evaluations that trigger evolve / fuse
    plateau_after: int = 2          # non-improving evaluations after which the planner hears "plateau"
    min_improvement: float = 1e-3
    max_children: int = 6
    candidates_per_expansion: int = 2
    fuse_probability: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.horizon >= 1, "horizon", "an integer >= 1"),
            (0.0 <= self.exploit_after <= 1.0, "exploit_after", "a fraction in [0, 1]"),
            (self.top_k >= 1, "top_k", "an integer >= 1"),
            (self.stagnation_k >= 1, "stagnation_k", "an integer >= 1"),
            (self.plateau_after >= 1, "plateau_after", "an integer >= 1"),
            (self.min_improvement >= 0, "min_improvement", "a number >= 0"),
            (self.max_children >= 1, "max_children", "an integer >= 1"),
            (self.candidates_per_expansion >= 1, "candidates_per_expansion", "an integer >= 1"),
            (0.0 <= self.fuse_probability <= 1.0, "fuse_probability", "a probability in [0, 1]"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"MCGSConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")

    @property
    def exploit_from(self) -> int:
        return math.ceil(self.exploit_after * self.horizon)


@dataclass(frozen=True)
class Step:
    """`node`: the node to evaluate, or the parent to grow from (the best source for a fuse)."""

    kind: StepKind
    node: Node | None = None
    sources: tuple[Node, ...] = ()
    reason: str = ""


class MCGS:
    def __init__(self, graph: SearchGraph, config: MCGSConfig | None = None) -> None:
        self.graph = graph
        self.config = config or MCGSConfig()
        self.t = 0
        self.best_score: float | None = None
        self.stale = 0
        roots = graph.roots()
        resets = set(roots[0].metrics.get("stagnation_resets", [])) if roots else set()
        for node in graph.nodes.values():  # replay in creation order (= evaluation order)
            if node.status in ("evaluated", "failed"):
                self._observe(node)
                if self.t in resets:
                    self.stale = 0

    # -- growing the graph ------------------------------------------------------------------
    def add_root(self, pipeline: Pipeline, rationale: str = "initial pipeline") -> Node:
        if self.graph.nodes:
            raise ValueError(f"run {self.graph.run_id} already has a root; resume it instead")
        return self.graph.add(pipeline, operator="root", rationale=rationale)

    def add_proposals(self, parent: Node, proposals: list[Proposal]) -> list[Node]:
        """Add the proposals new to the graph as children of `parent`; duplicates are skipped.

        A normal expansion that adds nothing marks the parent exhausted, so it is not chosen again.
        """
        added = []
        with self.graph.store.transaction():
            for p in proposals:
                if self.graph.find(p.pipeline.hash) is not None:
                    continue
                sources = tuple(s for s in p.sources if s != parent.id)
                added.append(self.graph.add(p.pipeline, parent_id=parent.id, operator=p.operator,
                                            iteration=self.t, rationale=p.rationale,
                                            modification=p.modification, sources=sources))
            if any(p.operator in ("evolve", "fuse") for p in proposals):
                # answered stagnation, even with a pipeline already tried: remember when, for replay
                root = self.graph.roots()[0]
                self.graph.annotate(root.id, stagnation_resets=[*root.metrics.get("stagnation_resets", []), self.t])
                self.stale = 0
            elif not added:
                self.graph.mark_exhausted(parent.id, "expansion proposed nothing new")
        return added

    # -- results ----------------------------------------------------------------------------
    def record(self, node_id: str, score: float, regressions: int | None = None,
               metrics: dict[str, object] | None = None) -> Node:
        if not (isinstance(score, int | float) and 0.0 <= score <= 1.0):
            raise ValueError(f"score {score!r} for node {node_id} must be in [0, 1]")
        node = self.graph.record_result(node_id, status="evaluated", reward=float(score), score=float(score),
                                        regressions=regressions, metrics=metrics or {})
        self._observe(node)
        return node

    def record_failure(self, node_id: str, reason: str) -> Node:
        """Training or evaluation failed: reward 0, so the branch is discouraged, and never expanded."""
        node = self.graph.record_result(node_id, status="failed", reward=0.0, score=None, regressions=None,
                                        metrics={"error": reason})
        self._observe(node)
        return node

    def veto(self, node_id: str, reason: str) -> Node:
        """A person refused the curriculum: the node is closed without a visit."""
        node = self.graph.get(node_id)
        return self.graph.set_status(node_id, "vetoed", metrics={**node.metrics, "veto_reason": reason})

    # -- choosing ---------------------------------------------------------------------------
    def next_step(self) -> Step:
        pending = [n for n in self.graph.nodes.values() if n.status in PENDING]
        revisions = [n for n in pending if n.parent_id and self.graph.get(n.parent_id).status == "vetoed"]
        if revisions:  # a person vetoed the parent: its revision is what they review next
            return Step("evaluate", revisions[0], reason="the revision of a vetoed curriculum comes first")
        if pending:
            return Step("evaluate", pending[0], reason="unvisited nodes are evaluated first")
        if not self.graph.nodes:
            raise ValueError("the search graph is empty: add a root pipeline first")
        cfg = self.config
        if self.stale >= cfg.stagnation_k and (best := self.best()) is not None:
            why = f"{self.stale} evaluations without improving on {self.best_score:.4f}"
            sources = self.top_branches()
            if len(sources) >= 2 and self._rng("stagnation").random() < cfg.fuse_probability:
                return Step("fuse", sources[0], tuple(sources), reason=why)
            return Step("evolve", best, reason=why)
        candidates = self.expandable()
        if not candidates:
            return Step("exhausted", reason="no node is left to expand")
        late = self.t >= cfg.exploit_from
        node = self.select(candidates)
        return Step("expand", node, reason=("top-K exploitation" if late else "UCT") + f" at t={self.t}")

    def select(self, candidates: list[Node]) -> Node:
        if self.t >= self.config.exploit_from:
            candidates = sorted(candidates, key=lambda n: -(n.score or 0.0))[: self.config.top_k]
        values = [self.uct(n) for n in candidates]
        top = max(values)
        tied = [n for n, v in zip(candidates, values, strict=True) if top - v <= 1e-12]
        return tied[0] if len(tied) == 1 else self._rng("select").choice(tied)

    def uct(self, node: Node) -> float:
        if node.visits == 0:
            return math.inf
        total = sum(r.visits for r in self.graph.roots())
        bonus = math.sqrt(math.log(max(total, 1)) / node.visits)
        return node.mean_reward + self.c() * bonus

    def c(self) -> float:
        return self.config.schedule.c(self.t, self.config.horizon)

    def expandable(self) -> list[Node]:
        return [n for n in self.graph.evaluated()
                if not n.exhausted and len(n.children) < self.config.max_children]

    def best(self) -> Node | None:
        return best_of(self.graph.evaluated())

    def top_branches(self) -> list[Node]:
        """The best node of each branch, best first, at most top_k: the inputs of a fuse."""
        per_branch: dict[str, Node] = {}
        for node in self.graph.evaluated():
            branch = self.graph.branch(node.id)
            if branch is None:
                continue
            if branch not in per_branch or node.score > per_branch[branch].score:
                per_branch[branch] = node
        return sorted(per_branch.values(), key=lambda n: -n.score)[: self.config.top_k]

    # -- handing over to the policy and the planner ------------------------------------------
    def expansion_target(self, step: Step, policy: IterationPolicy,
                         failure_patterns: dict[str, int] | None = None) -> tuple[Node, Action]:
        """Where to grow from and what kind of change to make. A node that regressed from its parent
        is closed and the parent (its dataset and configuration) is grown from instead."""
        node = step.node
        if node is None or node.score is None:
            raise ValueError(f"a {step.kind} step has no evaluated node to grow from")
        action = self.decide(node, policy, failure_patterns)
        return (self.roll_back(node, action), action) if action.kind == "rollback" else (node, action)

    def decide(self, node: Node, policy: IterationPolicy, failure_patterns: dict[str, int] | None = None,
               *, from_parent: bool = True) -> Action:
        """The policy's action after `node`, judged against its parent (a regression: rollback) unless
        `from_parent` is False (a refused rollback keeps growing from the node, in its own band)."""
        parent = self.graph.get(node.parent_id) if from_parent and node.parent_id else None
        previous = Outcome(parent.id, parent.score, parent.regressions) \
            if parent is not None and parent.score is not None else None
        return policy.decide(Outcome(node.id, node.score, node.regressions), previous, failure_patterns)

    def roll_back(self, node: Node, action: Action) -> Node:
        """Close the regressed `node` and return the node it rolls back to."""
        self.graph.mark_exhausted(node.id, action.reason)
        return self.graph.get(action.rollback_to)

    def state(self, step: Step, node: Node, action: Action, failures: FailureSummary | None = None, *,
              reasoning: bool = False, teacher: str | None = None) -> SearchState:
        """What the planner sees for an expand / evolve / fuse step grown from `node`."""
        if step.kind not in ("expand", "evolve", "fuse"):
            raise ValueError(f"a {step.kind} step has nothing to plan")
        return SearchState(
            node=node, action=action, operator=step.kind,
            failures=failures or FailureSummary(), history=tuple(self.graph.path(node.id)),
            top=step.sources, seen=frozenset(n.pipeline.hash for n in self.graph.nodes.values()),
            reasoning=reasoning, teacher=teacher, plateau=self.stale >= self.config.plateau_after,
            n_candidates=self.config.candidates_per_expansion, iteration=self.t,
            seed=self.config.seed + self.t, outcomes=self.outcomes(node))

    def outcomes(self, node: Node) -> tuple[MoveOutcome, ...]:
        """What each move on the path to `node`, and each move already made from it, did to its parent."""
        path = self.graph.path(node.id)
        pairs = list(zip(path, path[1:], strict=False))
        pairs += [(node, self.graph.get(c)) for c in node.children]
        out = []
        for parent, child in pairs:
            if child.status != "evaluated" or parent.score is None or child.score is None:
                continue
            fewer = parent.regressions is not None and child.regressions is not None \
                and child.regressions < parent.regressions
            out.append(MoveOutcome(move_signature(parent.pipeline, child.pipeline), improved(parent, child), fewer,
                                   child.id))
        return tuple(out)

    # -- internals --------------------------------------------------------------------------
    def _observe(self, node: Node) -> None:
        self.t += 1
        improved = node.score is not None and (
            self.best_score is None or node.score > self.best_score + self.config.min_improvement)
        if improved:
            self.best_score = node.score
            self.stale = 0
        else:
            self.stale += 1

    def _rng(self, what: str) -> random.Random:
        return random.Random(f"{self.config.seed}:{what}:{self.t}:{len(self.graph.nodes)}")


def improved(parent: Node, child: Node) -> bool:
    """Whether a move helped: a larger estimated traffic gain when both nodes have one (production's
    traffic rule), else a higher score, or the same score with fewer regressions."""
    gains = [_gain(n) for n in (parent, child)]
    if None not in gains:
        return gains[1] > gains[0] + 1e-9
    if child.score > parent.score + 1e-9:
        return True
    return child.score >= parent.score - 1e-9 and None not in (parent.regressions, child.regressions) \
        and child.regressions < parent.regressions


def _gain(node: Node) -> float | None:
    evidence = (node.metrics.get("candidate") or {}).get("evidence")
    return None if not evidence else TrafficEvidence(**evidence).gain()
