"""A pipeline pi = (D, H, S): what data to build, how to train, and how to supervise and evaluate.

Frozen, self-validating dataclasses so a bad proposal (from a rule, an LLM or a person) fails here
with a message naming the field, before anything is trained. `hash` is the identity of a node in
the search graph: two proposals with the same canonical JSON are the same pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.dotted import flatten
from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.tasks import task_type

Mode = Literal["cold_start", "production"]
Supervision = Literal["direct", "chain_of_thought"]
MODES: tuple[str, ...] = ("cold_start", "production")
SUPERVISIONS: tuple[str, ...] = ("direct", "chain_of_thought")
# Distillation from the deployed model: "focal" distils only rows it got right (positive-congruent).
DISTILLATIONS: tuple[str, ...] = ("none", "focal")
# Production replay: "share" samples the replay fraction (10-20% of the replay pool, the paper's rule);
# "all" replays every D_parent row and every verified pass outside the protected evaluation sets.
REPLAY_SCOPES: tuple[str, ...] = ("share", "all")
# Gold filter: "neighbours" drops gold whose correction its verified nearest neighbours contradict.
GOLD_FILTERS: tuple[str, ...] = ("none", "neighbours")

# Curriculum composition bands (fractions of the curriculum; replay rows are drawn from D_parent).
# Production: gold 40-60%, hard negatives 25-35%, replay 10-20%. Cold-start: about 65:35 gold:hard.
BANDS: dict[str, dict[str, tuple[float, float]]] = {
    "production": {"gold": (0.40, 0.60), "hard_negative": (0.25, 0.35), "replay": (0.10, 0.20)},
    "cold_start": {"gold": (0.55, 0.75), "hard_negative": (0.25, 0.45), "replay": (0.0, 0.0)},
}
_SUM_TOLERANCE = 1e-3
MAX_TARGETED = 10

# H is the backends' own TrainConfig: one definition of the hyperparameters, validated in one place.
Hyperparams = TrainConfig


def _fail(name: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{name}={value!r} is invalid: use {expected}")


def _check(checks: list[tuple[bool, str, Any, str]]) -> None:
    for ok, name, value, expected in checks:
        if not ok:
            _fail(name, value, expected)


@dataclass(frozen=True)
class CurationConstraints:
    """Quality controls every dataset version built for this pipeline must satisfy."""

    max_label_ratio: float = 3.0
    near_dup_jaccard: float = 0.8
    max_surface_repeats: int = 3
    min_patterns_per_label: int = 3
    max_patterns_per_label: int = 5

    def __post_init__(self) -> None:
        p = "DatasetSpec.constraints"
        _check([
            (self.max_label_ratio >= 1.0, f"{p}.max_label_ratio", self.max_label_ratio, "a number >= 1 (3.0)"),
            (0.0 < self.near_dup_jaccard <= 1.0, f"{p}.near_dup_jaccard", self.near_dup_jaccard,
             "a Jaccard similarity in (0, 1] (0.8)"),
            (self.max_surface_repeats >= 1, f"{p}.max_surface_repeats", self.max_surface_repeats,
             "an integer >= 1 (3)"),
            (1 <= self.min_patterns_per_label <= self.max_patterns_per_label, f"{p}.min_patterns_per_label",
             self.min_patterns_per_label, "an integer in [1, max_patterns_per_label] (3-5)"),
        ])


@dataclass(frozen=True)
class DatasetSpec:
    """D: which dataset versions to draw from, the curriculum composition and its constraints.

    `focus_pairs` are label-confusion pairs that get hard negatives; `targeted` lists failure
    patterns with the number of targeted examples to add for each (surgical augmentation, 2-3).
    `replay_scope` (production): "share" replays the replay fraction, "all" the whole replay pool.
    `gold_filter`: "neighbours" drops gold rows whose correction the nearest verified rows contradict
    (classification; what a person's "bad corrections" veto asks for). `balance` (with replay_scope
    "all"): weight the slices so the gold / hard-negative / replay fractions hold as shares of the loss
    (off: every row weighs one, so a large pool dominates; on a small pool of fixable failures
    balancing overfit them: 20% of held-out passes broken on an AdaptFT CLINC150 stage).
    """

    mode: Mode = "cold_start"
    source_versions: tuple[str, ...] = ()
    gold_fraction: float = 0.65
    hard_negative_fraction: float = 0.35
    replay_fraction: float = 0.0
    constraints: CurationConstraints = field(default_factory=CurationConstraints)
    focus_pairs: tuple[tuple[str, str], ...] = ()
    targeted: tuple[tuple[str, int], ...] = ()
    replay_scope: str = "share"
    gold_filter: str = "none"
    balance: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.source_versions, str):
            _fail("DatasetSpec.source_versions", self.source_versions, "a list of dataset version ids")
        object.__setattr__(self, "source_versions", tuple(self.source_versions))
        object.__setattr__(self, "focus_pairs", tuple(tuple(p) for p in self.focus_pairs))
        object.__setattr__(self, "targeted", tuple(tuple(t) for t in self.targeted))
        if self.mode not in MODES:
            _fail("DatasetSpec.mode", self.mode, f"one of {', '.join(MODES)}")
        if not isinstance(self.balance, bool) or (self.balance and self.replay_scope != "all"):
            _fail("DatasetSpec.balance", self.balance, "true or false; true only with replay_scope 'all'")
        if self.gold_filter not in GOLD_FILTERS:
            _fail("DatasetSpec.gold_filter", self.gold_filter, f"one of {', '.join(GOLD_FILTERS)}")
        if self.replay_scope not in REPLAY_SCOPES or (self.mode == "cold_start" and self.replay_scope != "share"):
            _fail("DatasetSpec.replay_scope", self.replay_scope,
                  f"one of {', '.join(REPLAY_SCOPES)} (cold-start curricula replay nothing: 'share')")
        bands = BANDS[self.mode]
        for part in ("gold", "hard_negative", "replay"):
            value = getattr(self, f"{part}_fraction")
            lo, hi = bands[part]
            if not (isinstance(value, int | float) and math.isfinite(value)
                    and lo - 1e-9 <= value <= hi + 1e-9):
                _fail(f"DatasetSpec.{part}_fraction", value,
                      f"a fraction in [{lo:.2f}, {hi:.2f}] for {self.mode} curricula")
        total = self.gold_fraction + self.hard_negative_fraction + self.replay_fraction
        if abs(total - 1.0) > _SUM_TOLERANCE:
            _fail("DatasetSpec.gold_fraction + hard_negative_fraction + replay_fraction", round(total, 4),
                  "fractions that sum to 1")
        _check([
            (all(isinstance(v, str) and v for v in self.source_versions), "DatasetSpec.source_versions",
             self.source_versions, "a list of dataset version ids"),
            (all(len(p) == 2 and all(isinstance(x, str) and x for x in p) for p in self.focus_pairs),
             "DatasetSpec.focus_pairs", self.focus_pairs, "a list of [label, label] pairs"),
            (all(len(t) == 2 and isinstance(t[0], str) and t[0] and isinstance(t[1], int)
                 and 1 <= t[1] <= MAX_TARGETED for t in self.targeted)
             and len({t[0] for t in self.targeted}) == len(self.targeted), "DatasetSpec.targeted",
             self.targeted, f"a list of [pattern, count] with distinct patterns and 1 <= count <= {MAX_TARGETED} "
                            "(the paper adds 2-3 per pattern)"),
        ])


@dataclass(frozen=True)
class Strategy:
    """S: direct or chain-of-thought supervision, the teacher writing rationales, the eval method, and
    distillation from the deployed model ("focal": its probabilities on the rows it got right, at
    `distill_weight`), which keeps its right answers right (fewer regressions at equal fixes), and
    `merge_deployed`: the deployed model's share in a weight-space average with the trained candidate
    (WiSE-FT; 0 = none), which keeps its right answers at the cost of an evaluation, not a training run."""

    supervision: Supervision = "direct"
    teacher: str | None = None
    eval_method: str = "accuracy"
    judge_model: str | None = None
    distillation: str = "none"
    distill_weight: float = 1.0
    merge_deployed: float = 0.0

    def __post_init__(self) -> None:
        _check([
            (self.supervision in SUPERVISIONS, "Strategy.supervision", self.supervision,
             f"one of {', '.join(SUPERVISIONS)}"),
            (self.teacher is None or (isinstance(self.teacher, str) and bool(self.teacher)), "Strategy.teacher",
             self.teacher, "a model name or null"),
            (isinstance(self.eval_method, str) and bool(self.eval_method), "Strategy.eval_method",
             self.eval_method, "a metric name (accuracy, macro_f1, span_f1, exact_match) or 'judge'"),
            (self.eval_method != "judge" or bool(self.judge_model), "Strategy.judge_model", self.judge_model,
             "a model name when eval_method is 'judge'"),
            (self.distillation in DISTILLATIONS, "Strategy.distillation", self.distillation,
             f"one of {', '.join(DISTILLATIONS)}"),
            (isinstance(self.distill_weight, int | float) and 0.0 < self.distill_weight <= 100.0,
             "Strategy.distill_weight", self.distill_weight, "a weight in (0, 100] (1)"),
            (isinstance(self.merge_deployed, int | float) and 0.0 <= self.merge_deployed < 1.0,
             "Strategy.merge_deployed", self.merge_deployed, "a share in [0, 1) (0: no averaging)"),
        ])


@dataclass(frozen=True)
class Pipeline:
    data: DatasetSpec
    hyperparams: Hyperparams
    strategy: Strategy = field(default_factory=Strategy)

    def __post_init__(self) -> None:
        kind = task_type(self.hyperparams.task)
        if self.strategy.supervision == "chain_of_thought" and not kind.generative:
            _fail("Strategy.supervision", self.strategy.supervision,
                  f"'direct' for a {self.hyperparams.task} task (chain-of-thought needs a generative model)")
        if self.strategy.merge_deployed and self.data.mode != "production":
            _fail("Strategy.merge_deployed", self.strategy.merge_deployed,
                  "0 in a cold start (there is no deployed model to average with)")
        if self.strategy.distillation != "none" and not kind.distillable:
            _fail("Strategy.distillation", self.strategy.distillation,
                  f"'none' for a {self.hyperparams.task} task (distillation is implemented for classifiers)")

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(self.canonical_json())

    def canonical_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Pipeline:
        if not isinstance(raw, dict):
            _fail("pipeline", raw, "a JSON object with keys data, hyperparams, strategy")
        _known(raw, "pipeline", {"data", "hyperparams", "strategy"})
        data = dict(raw.get("data") or {})
        _known(data, "pipeline.data", {f.name for f in dataclasses.fields(DatasetSpec)})
        constraints = data.pop("constraints", None) or {}
        _known(constraints, "pipeline.data.constraints", {f.name for f in dataclasses.fields(CurationConstraints)})
        hyper = raw.get("hyperparams")
        if not isinstance(hyper, dict) or "task" not in hyper:
            _fail("pipeline.hyperparams", hyper, "an object with at least 'task'")
        _known(hyper, "pipeline.hyperparams", {f.name for f in dataclasses.fields(TrainConfig)})
        strategy = raw.get("strategy") or {}
        _known(strategy, "pipeline.strategy", {f.name for f in dataclasses.fields(Strategy)})
        try:
            return cls(DatasetSpec(**data, constraints=CurationConstraints(**constraints)),
                       TrainConfig(**hyper), Strategy(**strategy))
        except TypeError as exc:  # a wrongly typed value that broke a comparison
            raise ConfigError(f"pipeline has a value of the wrong type: {exc}") from exc

    # -- derivation -------------------------------------------------------------------------
    def to_train_config(self, seed: int | None = None) -> TrainConfig:
        return self.hyperparams if seed is None else dataclasses.replace(self.hyperparams, seed=seed)

    def modify(self, changes: dict[str, Any]) -> Pipeline:
        """A new pipeline with dotted-key changes applied, e.g. {"hyperparams.epochs": 2.0}."""
        raw = self.to_dict()
        for key, value in changes.items():
            parts = key.split(".")
            target = raw
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    _fail(f"pipeline field {key!r}", value, f"one of {', '.join(sorted(flatten(raw)))}")
                target = target[part]
            if parts[-1] not in target:
                _fail(f"pipeline field {key!r}", value, f"one of {', '.join(sorted(flatten(raw)))}")
            target[parts[-1]] = value
        return Pipeline.from_dict(raw)

    def diff(self, other: Pipeline) -> dict[str, list[Any]]:
        """Dotted keys whose value differs: {key: [mine, other's]}."""
        mine, theirs = flatten(self.to_dict()), flatten(other.to_dict())
        return {k: [mine.get(k), theirs.get(k)] for k in sorted(mine) if mine.get(k) != theirs.get(k)}


def _known(raw: Any, where: str, allowed: set[str]) -> None:
    if not isinstance(raw, dict):
        _fail(where, raw, "a JSON object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}")
