"""Planners propose the next pipelines. `Planner` is the seam; `RulePlanner` is the offline default.

RulePlanner encodes the paper's rules on top of the iteration policy's band:
- rework the data: reasoning task with a teacher -> chain-of-thought supervision; a label-confusion
  cluster -> hard negatives for that pair; recall-dominated errors -> more gold;
  precision-dominated errors -> more hard negatives and a decision-threshold sweep;
- tune hyperparameters (data fixed): overfitting -> fewer epochs / lower learning rate;
  plateau -> more capacity (LoRA rank) or another method; precision-dominated -> threshold sweep;
- surgical augmentation: 2-3 targeted examples per remaining failure pattern.
- a node that fixed the failures but broke what worked (a regression gate or the regression budget
  failed) gets, before any band rule, moves that forget less: replaying the whole pool, a lower
  learning rate, fewer epochs, more replay, then focal distillation from the deployed model (its
  answers where it was right) and a stronger one. A linear probe has no learning rate to lower: its
  frozen features put the fixed failures and the broken passes on one linear boundary, so it moves to
  fine-tuning the encoder (or a stronger L2).
- a person's veto names what is wrong (engine.search.reviewer.VETO_REASONS); each reason maps to a
  revision of the vetoed pipeline (too much replay -> sample the replay band; too little gold -> more
  gold; wrong focus -> drop the focus pairs and targeted examples; bad corrections -> drop gold whose
  correction its verified neighbours contradict).
The search learns from outcomes: a move (the fields it changed and in which direction) that did not
improve on its parent is not proposed again from that node or its descendants, and moves that cut
regressions before are tried first when regressions are what failed.
When the rules give fewer candidates than asked, seeded moves of the same band fill the list.
A move that changes only hyperparameters the method never reads (`INERT`: a learning rate for a
linear probe) would train the same model again, so it is never proposed.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.search.graph import Node
from engine.search.pipeline import BANDS, Pipeline
from engine.search.policy import Action
from engine.tasks import task_type

Operator = Literal["expand", "evolve", "fuse"]
# Gates whose failure means the candidate broke what worked (the paper's rule, then the traffic rule's budget).
REGRESSION_GATES = frozenset({"regression_set", "cross_checkpoint", "regression_rate", "regression_budget",
                              "cross_budget"})
Signature = frozenset  # of (dotted field, direction) pairs: what a move changed, and which way
_COMPOSITION = ("data.gold_fraction", "data.hard_negative_fraction", "data.replay_fraction")
# Hyperparameters a method's training never reads (a linear probe is fitted by L-BFGS on frozen features).
INERT: dict[str, frozenset[str]] = {
    "linear_probe": frozenset({"learning_rate", "head_learning_rate", "epochs", "batch_size", "warmup_ratio",
                               "lora_rank", "lora_alpha", "lora_dropout"}),
    "full": frozenset({"lora_rank", "lora_alpha", "lora_dropout"}),
}


def move_signature(base: Pipeline, pipeline: Pipeline) -> Signature:
    """What a move changed and which way ("up"/"down" for numbers, the new value otherwise), so the
    same kind of move is recognised from another starting point."""
    out = set()
    for key, (old, new) in base.diff(pipeline).items():
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
        out.add((key, ("up" if new > old else "down") if numeric else repr(new)))
    return frozenset(out)


@dataclass(frozen=True)
class MoveOutcome:
    """A move made in this search and what it did to its parent's result."""

    signature: Signature
    improved: bool
    fewer_regressions: bool
    at: str  # the child node


@dataclass(frozen=True)
class VetoFeedback:
    """What a person said about a vetoed curriculum: structured reasons and their own words."""

    reasons: tuple[str, ...]
    text: str
    node_id: str


def changes_nothing(base: Pipeline, pipeline: Pipeline) -> bool:
    """True when `pipeline` differs from `base` only in hyperparameters its method ignores."""
    inert = INERT.get(pipeline.hyperparams.method, frozenset())
    diff = base.diff(pipeline)
    return bool(diff) and all(k.startswith("hyperparams.") and k.split(".", 1)[1] in inert for k in diff)


@dataclass(frozen=True)
class FailureSummary:
    """What the evaluation of the current node says about its errors."""

    confusion_pairs: tuple[tuple[str, str, int], ...] = ()  # (expected, predicted, count)
    false_positives: int = 0
    false_negatives: int = 0
    train_score: float | None = None
    eval_score: float | None = None
    patterns: tuple[tuple[str, int], ...] = ()  # remaining failure patterns and their sizes

    def to_dict(self) -> dict[str, Any]:
        return {"confusion_pairs": [list(p) for p in self.confusion_pairs], "false_positives": self.false_positives,
                "false_negatives": self.false_negatives, "train_score": self.train_score,
                "eval_score": self.eval_score, "patterns": [list(p) for p in self.patterns]}


@dataclass(frozen=True)
class SearchState:
    node: Node                      # the node to grow from
    action: Action                  # the policy's verdict for this step
    operator: Operator = "expand"
    failures: FailureSummary = field(default_factory=FailureSummary)
    history: tuple[Node, ...] = ()  # root .. node
    top: tuple[Node, ...] = ()      # best nodes of distinct branches, best first (fuse)
    seen: frozenset[str] = frozenset()
    reasoning: bool = False
    teacher: str | None = None
    plateau: bool = False
    n_candidates: int = 1
    iteration: int = 0
    seed: int = 0
    outcomes: tuple[MoveOutcome, ...] = ()  # moves on the path to node and from node, with their results
    veto: VetoFeedback | None = None        # set when revising a vetoed pipeline (node is the vetoed one)

    @property
    def failed_moves(self) -> dict[Signature, str]:
        """Moves that did not improve, and the node that showed it (never repeated from here)."""
        return {o.signature: o.at for o in self.outcomes if not o.improved}

    @property
    def helpful_moves(self) -> set[Signature]:
        """Moves that cut regressions somewhere in this search."""
        return {o.signature for o in self.outcomes if o.fewer_regressions}

    @property
    def task(self) -> str:
        return self.node.pipeline.hyperparams.task


@dataclass(frozen=True)
class Proposal:
    pipeline: Pipeline
    operator: Operator
    modification: dict[str, list[Any]]  # dotted key -> [old, new]
    rationale: str
    sources: tuple[str, ...] = ()
    planner: str = "rule"
    fallback_reason: str | None = None


@dataclass(frozen=True)
class ClusterInfo:
    """A failure cluster as diagnosis describes it (the taxonomy_built event's cluster fields)."""

    id: str
    size: int
    examples: tuple[dict[str, Any], ...] = ()  # trace_id, input, prediction, correction, reasoning
    characteristics: dict[str, Any] = field(default_factory=dict)
    confirmation_rate: float | None = None
    kind: str = ""

    @classmethod
    def of(cls, cluster: Any) -> ClusterInfo:
        """From diagnosis' FailureCluster, or anything with the same fields."""
        return cls(id=cluster.id, size=cluster.size, examples=tuple(cluster.examples),
                   characteristics=dict(cluster.characteristics), confirmation_rate=cluster.confirmation_rate,
                   kind=cluster.kind)


@dataclass(frozen=True)
class Fixability:
    verdict: Literal["fixable", "external"]
    reason: str


@dataclass(frozen=True)
class PlannerStep:
    """One planning call, for the curation log and the token / dollar budget."""

    operator: str
    planner: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: tuple[str, ...] = ()
    fallback_reason: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Planner(Protocol):
    def expand(self, state: SearchState) -> list[Proposal]: ...
    def evolve(self, state: SearchState) -> Proposal: ...
    def fuse(self, state: SearchState) -> Proposal: ...
    def name_cluster(self, cluster: ClusterInfo) -> str: ...
    def judge_fixability(self, cluster: ClusterInfo) -> Fixability: ...
    def take_steps(self) -> list[PlannerStep]: ...


@dataclass(frozen=True)
class RuleConfig:
    overfit_gap: float = 0.10          # train - eval score above this is overfitting
    imbalance_ratio: float = 1.5       # FN > ratio * FP is recall-dominated (and vice versa)
    min_confusions: int = 2            # a confusion pair needs this many errors to be a cluster
    fraction_step: float = 0.05
    threshold_grid: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    max_rank: int = 64
    min_confirmation: float = 0.5      # probes must reproduce at least this share of a cluster


Change = tuple[dict[str, Any], str]  # (dotted changes, rationale)


class RulePlanner:
    def __init__(self, config: RuleConfig | None = None, seed: int = 0) -> None:
        self.config = config or RuleConfig()
        self.seed = seed
        self._steps: list[PlannerStep] = []

    # -- Planner ----------------------------------------------------------------------------
    def expand(self, state: SearchState) -> list[Proposal]:
        if state.veto is not None:
            proposals = self.realise(state, self._revise(state), "expand", state.n_candidates,
                                     f"revised after {state.veto.node_id} was vetoed"
                                     + (f" (\"{state.veto.text}\")" if state.veto.text else "") + ": ")
            self._log("expand")
            return proposals
        band = state.action.band
        rules: list[Change]
        if band == "rework_data":
            rules = self._chain_of_thought(state) + self._confusion(state) + self._error_balance(state, data=True)
        elif band == "tune_hyperparams":
            rules = (self._chain_of_thought(state) + self._overfitting(state) + self._plateau(state)
                     + self._error_balance(state, data=False))
        else:
            rules = self._surgical(state) or self._threshold_sweep(state.node.pipeline)
        rules = self._keep_passes(state) + rules
        rng = self._rng(state, "expand")
        fill = self._data_moves(state.node.pipeline) if band == "rework_data" else self._tune_moves(state.node.pipeline)
        rng.shuffle(fill)
        prefix = f"{state.action.reason}; " if state.action.kind == "rollback" else ""
        proposals = self.realise(state, rules + fill, "expand", state.n_candidates, prefix)
        self._log("expand")
        return proposals

    def evolve(self, state: SearchState) -> Proposal:
        """Mutate the best node, leaving alone every field whose change improved the score on its path."""
        kept: set[str] = set()
        for before, after in zip(state.history, state.history[1:], strict=False):
            if before.score is not None and after.score is not None and after.score > before.score:
                kept |= set(before.pipeline.diff(after.pipeline))
        base = state.node.pipeline
        moves = self._tune_moves(base) + self._data_moves(base) + self._plateau(replace(state, plateau=True))
        self._rng(state, "evolve").shuffle(moves)
        moves = self._keep_passes(state) + moves
        free = [m for m in moves if not (set(m[0]) & kept)]
        note = f"keep {', '.join(sorted(kept))}; " if kept else ""
        out = self.realise(state, free + moves, "evolve", 1, f"evolve {state.node.id}: {note}")
        self._log("evolve")
        return out[0] if out else self._identity(state, "evolve", "evolve found no unseen mutation")

    def fuse(self, state: SearchState) -> Proposal:
        """Start from the best node and add each other branch's own changes (from the root) that the
        better nodes did not already make; composition fractions move as one group."""
        sources = state.top or (state.node,)
        root = (state.history or (state.node,))[0].pipeline
        merged, taken = sources[0].pipeline, set(root.diff(sources[0].pipeline))
        used = [sources[0].id]
        for other in sources[1:]:
            changes = root.diff(other.pipeline)
            groups: list[dict[str, Any]] = []
            if set(changes) & set(_COMPOSITION) and not (taken & set(_COMPOSITION)):
                groups.append({k: flat for k in _COMPOSITION if (flat := _get(other.pipeline, k)) is not None})
            for key, (_, new) in changes.items():
                if key in _COMPOSITION:
                    continue
                if key not in taken:
                    groups.append({key: new})
                elif isinstance(new, list):  # list fields (focus pairs, targets) are unioned
                    current = _get(merged, key)
                    groups.append({key: current + [x for x in new if x not in current]})
            for group in groups:
                try:
                    candidate = merged.modify(group)
                except ConfigError:
                    continue
                if candidate != merged:
                    merged, taken = candidate, taken | set(group)
                    if other.id not in used:
                        used.append(other.id)
        self._log("fuse")
        if merged.hash in state.seen:
            return self._identity(state, "fuse", "fusing the top branches gives a pipeline already tried")
        return Proposal(merged, "fuse", sources[0].pipeline.diff(merged),
                        f"fuse {', '.join(used)}: combine what each branch changed", sources=tuple(used))

    def name_cluster(self, cluster: ClusterInfo) -> str:
        pairs = Counter((str(e.get("correction")), str(e.get("prediction"))) for e in cluster.examples
                        if e.get("correction") is not None and e.get("prediction") is not None
                        and len(str(e.get("correction"))) <= 40 and len(str(e.get("prediction"))) <= 40)
        if pairs:
            expected, predicted = sorted(pairs, key=lambda k: (-pairs[k], k))[0]
            return f"{expected} misread as {predicted}"
        words = Counter(w for e in cluster.examples for w in re.findall(r"[a-z]{4,}", str(e.get("input", "")).lower())
                        if w not in _STOPWORDS)
        if words:  # most frequent first, ties alphabetical, so the name does not depend on example order
            return "inputs about " + "/".join(sorted(words, key=lambda w: (-words[w], w))[:3])
        return f"cluster {cluster.id}"

    def judge_fixability(self, cluster: ClusterInfo) -> Fixability:
        cfg = self.config
        if cluster.characteristics.get("external_reason"):
            return Fixability("external", str(cluster.characteristics["external_reason"]))
        if cluster.confirmation_rate is not None and cluster.confirmation_rate < cfg.min_confirmation:
            return Fixability("external", f"probes reproduced only {cluster.confirmation_rate:.0%} of the failures")
        examples = cluster.examples
        if examples and sum(len(re.findall(r"[A-Za-z]{2,}", str(e.get("input", "")))) == 0
                            for e in examples) > len(examples) / 2:
            return Fixability("external", "most inputs are empty or not text")
        if examples and sum(e.get("correction") in (None, "") for e in examples) > len(examples) / 2:
            return Fixability("external", "most failures have no correction to learn from")
        answers: dict[str, set[str]] = {}
        for e in examples:
            answers.setdefault(str(e.get("input")), set()).add(str(e.get("correction")))
        if any(len(v) > 1 for v in answers.values()):
            return Fixability("external", "the same input has conflicting corrections (label noise)")
        return Fixability("fixable", "consistent corrections on text inputs")

    def take_steps(self) -> list[PlannerStep]:
        steps, self._steps = self._steps, []
        return steps

    # -- rules ------------------------------------------------------------------------------
    def _chain_of_thought(self, state: SearchState) -> list[Change]:
        p = state.node.pipeline
        if state.reasoning and state.teacher and task_type(state.task).generative \
                and p.strategy.supervision == "direct":
            return [({"strategy.supervision": "chain_of_thought", "strategy.teacher": state.teacher},
                     f"reasoning task with teacher {state.teacher}: chain-of-thought supervision")]
        return []

    def _confusion(self, state: SearchState) -> list[Change]:
        pairs = [p for p in state.failures.confusion_pairs if p[2] >= self.config.min_confusions]
        out = []
        for expected, predicted, count in pairs[:2]:
            data = state.node.pipeline.data
            focus = [list(x) for x in data.focus_pairs]
            if [expected, predicted] in focus:
                continue
            changes = {"data.focus_pairs": focus + [[expected, predicted]],
                       **(self._shift(state.node.pipeline, "hard_negative") or {})}
            out.append((changes, f"label confusion {expected} -> {predicted} ({count}): hard negatives for that pair"))
        return out

    def _error_balance(self, state: SearchState, *, data: bool) -> list[Change]:
        f, ratio = state.failures, self.config.imbalance_ratio
        p = state.node.pipeline
        if f.false_negatives > ratio * f.false_positives:
            shift = self._shift(p, "gold")
            why = f"recall-dominated errors (FN {f.false_negatives} vs FP {f.false_positives}): more gold"
            return [(shift, why)] if data and shift else []
        if f.false_positives > ratio * f.false_negatives:
            why = f"precision-dominated errors (FP {f.false_positives} vs FN {f.false_negatives})"
            shift = self._shift(p, "hard_negative")
            out = [(shift, f"{why}: more hard negatives")] if data and shift else []
            return out + [(c, f"{why}: {r}") for c, r in self._threshold_sweep(p)]
        return []

    def _threshold_sweep(self, p: Pipeline) -> list[Change]:
        if not task_type(p.hyperparams.task).thresholded:
            return []
        current = p.hyperparams.threshold or 0.5
        above = [t for t in self.config.threshold_grid if t > current + 1e-9][:2]
        return [({"hyperparams.threshold": t}, f"threshold sweep: {current:g} -> {t:g}") for t in above]

    def _overfitting(self, state: SearchState) -> list[Change]:
        f, h = state.failures, state.node.pipeline.hyperparams
        if f.train_score is None or f.eval_score is None or f.train_score - f.eval_score <= self.config.overfit_gap:
            return []
        why = f"overfitting (train {f.train_score:.3f} vs eval {f.eval_score:.3f})"
        out = []
        if h.epochs > 1.0:
            out.append(({"hyperparams.epochs": _round(max(1.0, h.epochs * 0.6))}, f"{why}: fewer epochs"))
        out.append(({"hyperparams.learning_rate": _round(h.learning_rate * 0.5)}, f"{why}: lower learning rate"))
        return out

    def _plateau(self, state: SearchState) -> list[Change]:
        if not state.plateau:
            return []
        h = state.node.pipeline.hyperparams
        if h.method in ("lora", "qlora") and h.lora_rank * 2 <= self.config.max_rank:
            rank = h.lora_rank * 2
            return [({"hyperparams.lora_rank": rank, "hyperparams.lora_alpha": rank * 2},
                     f"plateau: more capacity (LoRA rank {h.lora_rank} -> {rank})"),
                    ({"hyperparams.method": "full"}, "plateau: full fine-tuning instead of LoRA")]
        if h.method in ("lora", "qlora"):
            return [({"hyperparams.method": "full"}, "plateau at the maximum rank: full fine-tuning")]
        if h.method == "linear_probe":
            return [(_fine_tune(h), "plateau: a linear probe cannot learn more; LoRA")]
        return [({"hyperparams.method": "lora", "hyperparams.lora_rank": self.config.max_rank // 2,
                  "hyperparams.lora_alpha": self.config.max_rank},
                 "plateau with full fine-tuning: a high-rank LoRA regularises")]

    def _surgical(self, state: SearchState) -> list[Change]:
        targets = state.action.targets
        if not targets:
            return []
        merged = {**dict(state.node.pipeline.data.targeted), **dict(targets)}
        return [({"data.targeted": [[name, merged[name]] for name in sorted(merged)]},
                 "surgical augmentation: " + ", ".join(f"{n} targeted example(s) for {name}" for name, n in targets))]

    def _keep_passes(self, state: SearchState) -> list[Change]:
        """The moves for a candidate that broke passes, those that cut regressions before first."""
        out, helpful, p = self._average(state) + self._forget_less(state), state.helpful_moves, state.node.pipeline
        if helpful:
            out.sort(key=lambda change: _signature_of(p, change[0]) not in helpful)
        return out

    def _average(self, state: SearchState) -> list[Change]:
        """The candidate broke passes: average its weights with the deployed model's (WiSE-FT,
        engine.models.merging, where the measured effect is). It reuses the candidate's weights, so it
        costs an evaluation. When a regression gate failed, a 70% share for the deployed model is tried too
        (fewer breaks, fewer fixes)."""
        node, p = state.node, state.node.pipeline
        if p.data.mode != "production" or not node.regressions:
            return []
        share, broke = p.strategy.merge_deployed, _failed_gates(node) & REGRESSION_GATES
        stronger = ({"strategy.merge_deployed": 0.7},
                    f"{node.regressions} pass(es) broken ({', '.join(sorted(broke))} gate failed): average the "
                    "weights with the deployed model's, 70% of them its own")
        if not share:
            half = ({"strategy.merge_deployed": 0.5},
                    f"{node.regressions} held-out pass(es) broken: average the weights half and half with the "
                    "deployed model's (WiSE-FT), which keeps much of what it got right")
            return [half, stronger] if broke else [half]
        return [stronger] if broke and share < 0.7 else []

    def _forget_less(self, state: SearchState) -> list[Change]:
        """The candidate learnt the failures but broke what the deployed model got right. Retraining from
        the base while keeping the deployed model's answers (distillation), on more of what it knew
        (replay), or with a gentler recipe keeps it; when its errors are mostly spurious outputs (NER
        hallucinations on sentences the deployed model rightly left empty), a higher decision threshold
        comes first: it reuses the candidate's weights, so it costs an evaluation, not a training run."""
        node, f = state.node, state.failures
        failed = _failed_gates(node)
        broke = failed & REGRESSION_GATES
        if "gain" in failed and node.regressions:
            broke |= {"gain"}
        if not broke or "failure_set" in failed:
            return []
        h, p = node.pipeline.hyperparams, node.pipeline
        why = f"failures fixed but {node.regressions} regression(s) ({', '.join(sorted(broke))} gate failed)"
        out: list[Change] = []
        if f.false_positives > f.false_negatives:
            out += [(c, f"{why}, mostly spurious outputs (FP {f.false_positives} vs FN {f.false_negatives}): {r}")
                    for c, r in self._threshold_sweep(p)[:1]]
        if p.data.mode == "production" and p.data.replay_scope == "share":
            out.append(({"data.replay_scope": "all"},
                        f"{why}: replay every verified pass and all of D_parent"))
        if h.method == "linear_probe":
            out += [(_fine_tune(h), f"{why}: frozen features hold the fixed failures and the broken passes on one "
                                    "linear boundary; fine-tune the encoder (LoRA) from the probe's head"),
                    ({"hyperparams.weight_decay": _stronger_l2(h)}, f"{why}: a stronger L2 on the probe")]
        else:
            lower = {"hyperparams.learning_rate": _round(h.learning_rate * 0.5)}
            if h.head_learning_rate is not None:
                lower["hyperparams.head_learning_rate"] = _round(h.head_learning_rate * 0.5)
            out.append((lower, f"{why}: lower learning rate"))
            if h.epochs > 1.0:
                out.append(({"hyperparams.epochs": _round(max(1.0, h.epochs * 0.6))}, f"{why}: fewer epochs"))
            if p.data.replay_scope == "share" and (shift := self._shift(p, "replay")) is not None:
                out.append((shift, f"{why}: more replay of the parent data"))
                out.append(({**shift, **lower}, f"{why}: more replay and a lower learning rate"))
        # distillation last: on the CLINC deployments measured (scripts/bench_regression_control.py) it cost
        # fixes and added flips; the search keeps it only where it helps
        if task_type(h.task).distillable and p.strategy.distillation == "none":
            out.append(({"strategy.distillation": "focal"},
                        f"{why}: distil the deployed model where it was right (focal distillation)"))
        elif p.strategy.distillation != "none" and p.strategy.distill_weight < 100:
            weight = _round(min(100.0, p.strategy.distill_weight * 3))
            out.append(({"strategy.distill_weight": weight}, f"{why}: stronger distillation ({weight:g})"))
        return out

    def _revise(self, state: SearchState) -> list[Change]:
        """A person's veto reasons as changes to the vetoed pipeline, in the order they were given."""
        veto, p = state.veto, state.node.pipeline
        assert veto is not None
        out: list[Change] = []
        for reason in veto.reasons:
            if reason == "too_much_replay":
                change: dict[str, Any] = {"data.replay_scope": "share", "data.balance": False} \
                    if p.data.replay_scope == "all" else {}
                low = self._shift(p, "gold") if not change else None
                out.append(({**change, **(low or {})}, "too much replay: sample the replay band"
                            if change else "too much replay: more gold instead"))
            elif reason == "too_little_gold" and p.data.replay_scope == "all" and not p.data.balance:
                out.append(({"data.balance": True}, "too little gold: keep the whole pool, weight gold to its "
                                                     "share of the loss"))
            elif reason == "too_little_gold":
                out.append((self._shift(p, "gold") or {}, "too little gold: more gold"))
            elif reason == "wrong_focus":
                change = {k: [] for k in ("data.focus_pairs", "data.targeted")
                          if getattr(p.data, k.split(".")[1])}
                out.append((change or (self._shift(p, "gold") or {}),
                            "wrong focus: drop the focus pairs and targeted examples" if change
                            else "wrong focus: fewer hard negatives, more gold"))
            elif reason == "bad_corrections" and task_type(p.hyperparams.task).single_label \
                    and p.data.gold_filter == "none":
                out.append(({"data.gold_filter": "neighbours"},
                            "bad corrections: drop gold whose correction its verified neighbours contradict"))
        return [(change, why) for change, why in out if change]

    # -- seeded fill-in moves ---------------------------------------------------------------
    def _tune_moves(self, p: Pipeline) -> list[Change]:
        h = p.hyperparams
        if h.method == "linear_probe":  # L2 is the probe's one training knob
            weaker = _round(h.weight_decay / 3) if h.weight_decay else 1e-4
            return [({"hyperparams.weight_decay": _stronger_l2(h)}, "stronger L2 on the probe"),
                    ({"hyperparams.weight_decay": weaker}, "weaker L2 on the probe"),
                    *self._threshold_sweep(p)[:1]]
        moves = [({"hyperparams.learning_rate": _round(h.learning_rate * 2)}, "higher learning rate"),
                 ({"hyperparams.learning_rate": _round(h.learning_rate * 0.5)}, "lower learning rate"),
                 ({"hyperparams.epochs": _round(h.epochs + 1)}, "one more epoch")]
        if h.batch_size >= 2:
            moves.append(({"hyperparams.batch_size": h.batch_size // 2}, "smaller batches (more updates)"))
        return moves + self._threshold_sweep(p)[:1]

    def _data_moves(self, p: Pipeline) -> list[Change]:
        moves = []
        for part, why in (("gold", "more gold examples"), ("hard_negative", "more hard negatives"),
                          ("replay", "more replay of the parent data")):
            if (shift := self._shift(p, part)) is not None:
                moves.append((shift, why))
        return moves

    def _shift(self, p: Pipeline, towards: str) -> dict[str, float] | None:
        """Move `fraction_step` of the curriculum to `towards` from the largest other part, within bands."""
        bands = BANDS[p.data.mode]
        parts = {k: getattr(p.data, f"{k}_fraction") for k in ("gold", "hard_negative", "replay")}
        room_up = bands[towards][1] - parts[towards]
        donors = sorted((k for k in parts if k != towards), key=lambda k: parts[k] - bands[k][0], reverse=True)
        donor = donors[0]
        step = min(self.config.fraction_step, room_up, parts[donor] - bands[donor][0])
        if step <= 1e-9:
            return None
        parts[towards], parts[donor] = round(parts[towards] + step, 4), round(parts[donor] - step, 4)
        return {f"data.{k}_fraction": v for k, v in parts.items()}

    # -- helpers ----------------------------------------------------------------------------
    def realise(self, state: SearchState, changes: list[Change], operator: Operator, n: int,
                 prefix: str = "") -> list[Proposal]:
        """The first `n` changes that give a valid pipeline not yet in the graph, that change something the
        method reads, and whose kind of move has not already failed to improve on this path."""
        base, seen, failed = state.node.pipeline, set(state.seen), state.failed_moves
        out: list[Proposal] = []
        for delta, why in changes:
            method = delta.get("hyperparams.method")
            if base.strategy.merge_deployed and method not in (None, base.hyperparams.method):
                delta = {**delta, "strategy.merge_deployed": 0.0}  # only a model trained the same way is averaged
            try:
                pipeline = base.modify(delta)
            except ConfigError:
                continue
            if pipeline.hash in seen or changes_nothing(base, pipeline) or move_signature(base, pipeline) in failed:
                continue
            seen.add(pipeline.hash)
            out.append(Proposal(pipeline, operator, base.diff(pipeline), prefix + why))
            if len(out) >= n:
                break
        return out

    def _identity(self, state: SearchState, operator: Operator, why: str) -> Proposal:
        return Proposal(state.node.pipeline, operator, {}, why)

    def _rng(self, state: SearchState, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{state.seed}:{what}:{state.node.pipeline.hash}")

    def _log(self, operator: str) -> None:
        self._steps.append(PlannerStep(operator, "rule"))


def _signature_of(p: Pipeline, change: dict[str, Any]) -> Signature:
    try:
        return move_signature(p, p.modify(change))
    except ConfigError:
        return frozenset()


def _failed_gates(node: Node) -> set[str]:
    return {r["gate"] for r in (node.metrics.get("gates") or {}).get("results") or [] if not r["passed"]}


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _fine_tune(h: TrainConfig) -> dict[str, Any]:
    """Leave a linear probe for LoRA: the fields the probe ignored say nothing about fine-tuning, so
    they restart from TrainConfig's defaults (learning rate, epochs, batch size...)."""
    defaults = TrainConfig(task=h.task)
    changes: dict[str, Any] = {"hyperparams.method": "lora"}
    for name in sorted(INERT["linear_probe"]):
        if getattr(h, name) != getattr(defaults, name):
            changes[f"hyperparams.{name}"] = getattr(defaults, name)
    return changes


def _stronger_l2(h: TrainConfig) -> float:
    """Unset, the probe's L2 is 1/n (about 1e-3 or less here): 1e-2 is clearly stronger."""
    return _round(h.weight_decay * 3) if h.weight_decay else 1e-2


def _get(p: Pipeline, dotted: str) -> Any:
    value: Any = p.to_dict()
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


_STOPWORDS = frozenset("what when where which with that this from have your about would could there their "
                       "them they then than will into also just like some more most very much does make".split())
