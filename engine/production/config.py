"""Production mode's settings: what a user chooses for a run (the deployed model, the gate and its
budget, the search's limits), validated in one place and stored with the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from engine.diagnosis.embedders import (
    EMBEDDERS,
)
from engine.diagnosis.traces import TraceWindow
from engine.errors import ConfigError
from engine.models.base import TrainConfig
from engine.records import TASKS
from engine.search.budget import BudgetLimits
from engine.search.gates import DEFAULT_MAX_REGRESSION_RATE, GateConfig
from engine.search.loop import (
    LoopConfig,
)
from engine.search.mcgs import MCGSConfig

# The traffic rule's regression set grows with T_pass up to this many items. Every item is a pass kept
# out of training, and beyond 500 the break rate's 95% half-width is already under 1.5 points (1.0 at
# 1,179): on the mature CLINC deployment, naive retraining with Pioneer's recipe beat it by 2.0 points
# unseen when half of 2,358 passes were withheld (scripts/bench_production.py --scenario mature).
MAX_REGRESSION_ITEMS = 500


@dataclass(frozen=True)
class ProductionConfig:
    """`model`: registry id or name of the deployed model. `composition`: the root curriculum's
    gold / hard-negative / replay fractions. `hyperparams`: overrides of the deployed model's own
    training recipe for the root pipeline (e.g. {"epochs": 5}). `embedder`: "auto" is the embedded
    MiniLM when its package is installed (TF-IDF flagged ~9% of perturbed in-domain failures as
    off-domain on the demo), else TF-IDF. `full_replay_below`: a D_parent of at most this many rows is
    replayed in full (see engine.curriculum); larger ones get the searchable 10-20% band.
    `probe_head`: a fine-tuned classifier starts its head from the linear probe of the same rows
    (engine.models.base.head_init says when and why). `gate`: the promotion rule (engine.search.gates:
    "traffic", the default, or the paper's "strict"), with the traffic rule's regression budget
    (`max_regressions`, `max_regression_rate`); `fix_holdout`: the share of fixable failures kept out of
    training to measure the fix rate (default 0.2 under the traffic rule, 0 under strict: the paper
    trains on every failure), but at least `min_fix_holdout` (never over half) when that share is fewer: a
    perfect fix rate on 2 held-out failures has a 95% lower bound of 0.43, too weak for a real fix to pass
    the gain gate, on 5 it is 0.65; `regression_pass_share`: the traffic rule's regression set as a share of
    T_pass (strict sizes it as `regression_fraction` of |T_fail|). `churn_budget`: before the search,
    retrain the deployed model's recipe on its own training data with another seed, and raise the
    regression budget (`max_regression_rate`) to the share of held-out passes that retrain breaks: the
    churn any retrain from the base carries, which for a small generative model is far above 5% (see
    engine.production.mode.churn_budget). `search_on`: candidates to try for a better one after a pass
    short of tau (engine.search.loop.LoopConfig)."""

    model: str
    task: str | None = None
    seed: int = 0
    tau: float = 0.96
    epsilon: int = 2
    cross_epsilon: int = 2
    max_iterations: int | None = 6
    max_minutes: float | None = 30.0
    regression_fraction: float = 0.5
    probe_threshold: float = 0.3
    embedder: str = "auto"
    full_replay_below: int = 5000
    composition: tuple[float, float, float] = (0.5, 0.3, 0.2)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    candidates_per_expansion: int = 1
    trainer_threads: int | None = None
    probe_head: bool = True
    gate: str = "traffic"
    max_regressions: int | None = None
    max_regression_rate: float | None = DEFAULT_MAX_REGRESSION_RATE
    fix_holdout: float | None = None
    min_fix_holdout: int = 5
    regression_pass_share: float = 0.5
    churn_budget: bool = False
    search_on: int = 2
    since: str | None = None  # the traces read: since <= ts < until (ISO), at most max_traces (a seeded sample)
    until: str | None = None
    max_traces: int | None = None
    llm: str | None = None  # a litellm model for the planner (its moves and fixability calls); rules without
    llm_options: dict[str, Any] = field(default_factory=dict)  # to every litellm call (api_base, mock_response)

    def __post_init__(self) -> None:
        object.__setattr__(self, "composition", tuple(float(x) for x in self.composition))
        checks = [
            (isinstance(self.model, str) and bool(self.model.strip()), "model", "a registry model id or name"),
            (self.task is None or self.task in TASKS, "task", f"one of {', '.join(TASKS)} or unset"),
            (self.max_iterations is None or self.max_iterations >= 1, "max_iterations", "an integer >= 1 or unset"),
            (self.max_minutes is None or self.max_minutes > 0, "max_minutes", "a number > 0 or unset"),
            (0.3 <= self.regression_fraction <= 1.0, "regression_fraction", "a fraction of |T_fail| in [0.3, 1.0]"),
            (0.0 <= self.probe_threshold <= 1.0, "probe_threshold", "a probe failure rate in [0, 1]"),
            (self.embedder in EMBEDDERS, "embedder", f"one of {', '.join(EMBEDDERS)}"),
            (len(self.composition) == 3, "composition", "three fractions: gold, hard_negative, replay"),
            (isinstance(self.hyperparams, dict), "hyperparams", "a mapping of TrainConfig fields"),
            (self.candidates_per_expansion >= 1, "candidates_per_expansion", "an integer >= 1"),
            (self.trainer_threads is None or self.trainer_threads >= 1, "trainer_threads", "an integer >= 1 or unset"),
            (isinstance(self.probe_head, bool), "probe_head", "true or false"),
            (isinstance(self.full_replay_below, int) and self.full_replay_below >= 0, "full_replay_below",
             "a row count >= 0 (0: always sample 10-20% of D_parent)"),
            (self.fix_holdout is None or 0.0 <= self.fix_holdout <= 0.5, "fix_holdout",
             "a share of the fixable failures in [0, 0.5] or unset"),
            (isinstance(self.min_fix_holdout, int) and self.min_fix_holdout >= 0, "min_fix_holdout",
             "a count of fixable failures >= 0 (5)"),
            (0.05 <= self.regression_pass_share <= 0.9, "regression_pass_share", "a share of T_pass in [0.05, 0.9]"),
            (isinstance(self.search_on, int) and self.search_on >= 0, "search_on", "an integer >= 0 (2)"),
            (not self.churn_budget or (self.gate == "traffic" and self.max_regression_rate is not None),
             "churn_budget", "false with the strict rule or without a max_regression_rate (it raises that rate)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"ProductionConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")
        self.gates()  # validates the gate settings
        self.trace_window()  # and the trace window
        allowed = {f.name for f in fields(TrainConfig)} - {"task"}
        unknown = sorted(set(self.hyperparams) - allowed)
        if unknown:
            raise ConfigError(f"ProductionConfig.hyperparams has unknown or fixed field(s) {', '.join(unknown)}: "
                              f"use TrainConfig fields other than task")

    def limits(self) -> BudgetLimits:
        return BudgetLimits(iterations=self.max_iterations,
                            seconds=None if self.max_minutes is None else self.max_minutes * 60.0)

    def gates(self) -> GateConfig:
        return GateConfig(self.tau, self.epsilon, self.cross_epsilon, rule=self.gate,
                          max_regressions=self.max_regressions, max_regression_rate=self.max_regression_rate)

    @property
    def holdout_share(self) -> float:
        if self.fix_holdout is not None:
            return self.fix_holdout
        return 0.2 if self.gate == "traffic" else 0.0

    def trace_window(self) -> TraceWindow:
        return TraceWindow(self.since, self.until, self.max_traces, self.seed)

    def loop_config(self) -> LoopConfig:
        return LoopConfig(mcgs=MCGSConfig(horizon=self.max_iterations or 20, seed=self.seed,
                                          candidates_per_expansion=self.candidates_per_expansion),
                          gates=self.gates(), search_on=self.search_on)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ProductionConfig:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"stored production configuration is invalid: {exc}") from exc
