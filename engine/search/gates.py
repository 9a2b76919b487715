"""Gates: when to stop, and whether a candidate may replace the deployed model.

- stop: f >= tau (0.96), lowered only through `lower_tau` with a recorded basis and reason;
- production, two rules (GateConfig.rule):
  - "traffic" (the default): the candidate must be significantly better on traffic like the run's,
    and stay within the user's regression budget. The gain is weighed at traffic proportions from
    items the candidate never trained on: the fix rate on held-out fixable failures against the
    break rate on the regression set (held-out passes); its one-sided lower confidence bound
    (MOVER: Wilson score limits of each rate recovered into the difference, Zou & Donner 2008)
    must be above zero. The budget caps the
    regression set's broken passes (`max_regressions`) and their rate (`max_regression_rate`, also
    on the previous checkpoint's set; never below epsilon broken items, so a small set is not held to
    a stricter rule than the paper's). A candidate that fails only the budget is a close call that a
    person may promote anyway, with a recorded reason.
  - "strict": the paper's rule unchanged: a(pi) >= tau on the failure set AND r(pi) <= epsilon (2) on
    the regression set, and again r <= 2 on the previous checkpoint's evaluation set. It assumes a
    mature deployed model (84.9% -> 99.3% on CLINC150); with a weak model or a 150-way task it refuses
    candidates far better on unseen traffic (a 12-intent deployment at 0.39 kept while its best
    candidate scored 0.87);
- monotone: a candidate never scores below the deployed model, so deployed scores never decrease.
`Deployment` promotes a candidate whose GateReport passed, or a close call with a person's reason,
and rolls back to the model the deployed one replaced, with the dataset version it was trained on,
through registry statuses.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
from typing import Any, Literal

from engine.errors import ConfigError, GateError
from engine.events import EventBus, GateChecked, Promoted, Rollback
from store import Store

TauBasis = Literal["plateau", "unfixable_residuals", "user"]
TAU_BASES: tuple[str, ...] = ("plateau", "unfixable_residuals", "user")
GateRule = Literal["traffic", "strict"]
GATE_RULES: tuple[str, ...] = ("traffic", "strict")
# The default regression budget: at most 5% of held-out passes broken (negative flips of 1-5% are usual
# for model updates; beyond it a person decides).
DEFAULT_MAX_REGRESSION_RATE = 0.05
# Gates a person may overrule (the regression budget); every other gate is a hard limit, except the score
# thresholds, whose failure only means "not there yet": the search goes on.
BUDGET_GATES = frozenset({"regression_budget", "regression_rate", "cross_budget"})
SCORE_GATES = frozenset({"stop", "failure_set"})


@dataclass(frozen=True)
class GateConfig:
    """`rule`: "traffic" (default) or "strict" (the paper's). strict uses tau, epsilon and
    cross_epsilon; traffic uses `confidence` for the gain bound and the budget: `max_regressions`
    (broken regression-set items, None = no cap) and `max_regression_rate` (their share, also on the
    previous checkpoint's set, at least `epsilon` / `cross_epsilon` items; None = no cap)."""

    tau: float = 0.96
    epsilon: int = 2
    cross_epsilon: int = 2
    rule: str = "traffic"
    confidence: float = 0.95
    max_regressions: int | None = None
    max_regression_rate: float | None = DEFAULT_MAX_REGRESSION_RATE

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"GateConfig.tau={self.tau!r} is invalid: use a score in (0, 1] (0.96)")
        for name in ("epsilon", "cross_epsilon"):
            if getattr(self, name) < 0:
                raise ConfigError(f"GateConfig.{name}={getattr(self, name)!r} is invalid: use an integer >= 0 (2)")
        if self.rule not in GATE_RULES:
            raise ConfigError(f"GateConfig.rule={self.rule!r} is invalid: use one of {', '.join(GATE_RULES)}")
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigError(f"GateConfig.confidence={self.confidence!r} is invalid: use a level in [0.5, 1) (0.95)")
        if self.max_regressions is not None and self.max_regressions < 0:
            raise ConfigError(f"GateConfig.max_regressions={self.max_regressions!r} is invalid: "
                              "use an integer >= 0 or unset")
        if self.max_regression_rate is not None and not 0.0 <= self.max_regression_rate <= 1.0:
            raise ConfigError(f"GateConfig.max_regression_rate={self.max_regression_rate!r} is invalid: "
                              "use a share in [0, 1] or unset")


@dataclass(frozen=True)
class TauChange:
    """The record that justifies a lower tau; store it with `record`."""

    old_tau: float
    new_tau: float
    basis: TauBasis
    reason: str

    def record(self, store: Store, run_id: str, who: str, node_id: str | None = None) -> int:
        return store.runs.record_decision(run_id, "threshold", "approve", who, node_id=node_id,
                                          reason=f"{self.basis}: {self.reason}",
                                          diff={"tau": [self.old_tau, self.new_tau], "basis": self.basis})


def lower_tau(config: GateConfig, new_tau: float, basis: str, reason: str) -> tuple[GateConfig, TauChange]:
    if basis not in TAU_BASES:
        raise ConfigError(f"tau basis {basis!r} is invalid: use one of {', '.join(TAU_BASES)}")
    if not reason or not reason.strip():
        raise ConfigError("lowering tau needs a reason (e.g. the residual failures judged unfixable)")
    if not 0.0 < new_tau < config.tau:
        raise ConfigError(f"new tau {new_tau!r} is invalid: use a score in (0, {config.tau}) (lower than now)")
    return replace(config, tau=new_tau), TauChange(config.tau, new_tau, basis, reason.strip())


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    value: float
    threshold: float
    rule: str  # ">=", "<=" or ">"


@dataclass(frozen=True)
class GateReport:
    node_id: str
    results: tuple[GateResult, ...]
    rule: str = "strict"

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.gate for r in self.results if not r.passed]

    @property
    def close_call(self) -> bool:
        """Failed only the regression budget: a person may promote it anyway, with a reason."""
        return standing(self.failed) == "close_call"

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "passed": self.passed, "rule": self.rule, "close_call": self.close_call,
                "results": [{"gate": r.gate, "passed": r.passed, "value": r.value, "threshold": r.threshold,
                             "rule": r.rule} for r in self.results]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GateReport:
        return cls(raw["node_id"], tuple(GateResult(r["gate"], bool(r["passed"]), float(r["value"]),
                                                    float(r["threshold"]), r["rule"]) for r in raw["results"]),
                   raw.get("rule", "strict"))


def standing(failed: Collection[str]) -> str:
    """A candidate's status from the gates it failed: "accepted" (none), "close_call" (only the regression
    budget), "evaluated" (only a score threshold) or "rejected" (a hard limit). The one reading of gate
    names: GateReport.close_call and the TUI's search graph both use it."""
    if not failed:
        return "accepted"
    if set(failed) <= BUDGET_GATES:
        return "close_call"
    return "evaluated" if set(failed) <= SCORE_GATES else "rejected"


def at_least(gate: str, value: float, threshold: float) -> GateResult:
    return GateResult(gate, value >= threshold, float(value), float(threshold), ">=")


def at_most(gate: str, value: float, threshold: float) -> GateResult:
    return GateResult(gate, value <= threshold, float(value), float(threshold), "<=")


def above(gate: str, value: float, threshold: float) -> GateResult:
    return GateResult(gate, value > threshold, float(value), float(threshold), ">")


def stop_gate(score: float, config: GateConfig) -> GateResult:
    return at_least("stop", score, config.tau)


def rate_bounds(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided Wilson score limits (lower, upper) of a rate, each at `confidence`; (0, 1) without
    trials. Wilson rather than the normal approximation: it stays inside [0, 1] and keeps its coverage
    for the rates near 0 or 1 that fix and break rates are."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class TrafficEvidence:
    """What the traffic rule weighs, all counts from one run: its traffic by stratum (`n_traffic`
    judged traces of which `n_fixable` are failures with a correction triage kept and `n_pass` are
    passes) and the two held-out samples a candidate never trained on (`holdout_fixed` of `holdout`
    fixable failures now right; `broken` of `regression` passes now wrong). Poison and uncorrected
    failures count as wrong for both models: their right answer is unknown."""

    n_traffic: int
    n_fixable: int
    n_pass: int
    holdout: int
    holdout_fixed: int
    regression: int
    broken: int

    def __post_init__(self) -> None:
        if not (0 <= self.holdout_fixed <= self.holdout and 0 <= self.broken <= self.regression
                and self.n_fixable + self.n_pass <= self.n_traffic):
            raise ValueError(f"inconsistent traffic evidence {asdict(self)}")

    @property
    def fix_rate(self) -> float:
        return self.holdout_fixed / self.holdout if self.holdout else 0.0

    @property
    def break_rate(self) -> float:
        return self.broken / self.regression if self.regression else 0.0

    def gain(self) -> float:
        """Estimated accuracy gain on traffic like the run's (a share of all requests)."""
        if not self.n_traffic:
            return 0.0
        return (self.n_fixable * self.fix_rate - self.n_pass * self.break_rate) / self.n_traffic

    def gain_bound(self, confidence: float) -> float:
        """The gain's one-sided lower confidence bound at `confidence`, by MOVER (the method of variance
        estimates recovery): each rate's distance to its own Wilson limit, weighted by its traffic share,
        combined in quadrature, so two independent samples are not both pushed to their extremes."""
        if not self.n_traffic:
            return 0.0
        fix_low = rate_bounds(self.holdout_fixed, self.holdout, confidence)[0]
        break_high = rate_bounds(self.broken, self.regression, confidence)[1] if self.n_pass else self.break_rate
        fix_side = self.n_fixable / self.n_traffic * (self.fix_rate - fix_low)
        break_side = self.n_pass / self.n_traffic * (break_high - self.break_rate)
        return self.gain() - math.hypot(fix_side, break_side)


@dataclass(frozen=True)
class Candidate:
    """A trained model waiting for the gates. Production candidates carry a(pi) (`failure_score`),
    r(pi) (`regressions`, of `regression_size` items), `cross_regressions` of `cross_size` (None when
    there is no previous checkpoint) and the traffic rule's `evidence`."""

    node_id: str
    model_id: str
    score: float
    failure_score: float | None = None
    regressions: int | None = None
    cross_regressions: int | None = None
    evidence: TrafficEvidence | None = None
    cross_size: int | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Candidate:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        evidence = known.get("evidence")
        return cls(**{**known, "evidence": TrafficEvidence(**evidence) if isinstance(evidence, dict) else evidence})


def check(candidate: Candidate, config: GateConfig, deployed_score: float | None = None) -> GateReport:
    c = candidate
    results = []
    if c.failure_score is None:
        results.append(stop_gate(c.score, config))
    else:
        if c.regressions is None:
            raise ValueError(f"candidate {c.model_id} has a failure-set score but no regression count")
        results += _strict(c, config) if config.rule == "strict" else _traffic(c, config)
    if deployed_score is not None:
        results.append(at_least("monotone", c.score, deployed_score))
    return GateReport(c.node_id, tuple(results), config.rule if c.failure_score is not None else "stop")


def _strict(c: Candidate, config: GateConfig) -> list[GateResult]:
    results = [at_least("failure_set", c.failure_score, config.tau),
               at_most("regression_set", c.regressions, config.epsilon)]
    if c.cross_regressions is not None:
        results.append(at_most("cross_checkpoint", c.cross_regressions, config.cross_epsilon))
    return results


def _traffic(c: Candidate, config: GateConfig) -> list[GateResult]:
    e = c.evidence
    if e is None:
        raise ValueError(f"candidate {c.model_id} has no traffic evidence: the traffic rule needs it "
                         "(use GateConfig(rule='strict') for the paper's rule)")
    results = [above("gain", round(e.gain_bound(config.confidence), 6), 0.0)]
    if config.max_regressions is not None:
        results.append(at_most("regression_budget", e.broken, config.max_regressions))
    if config.max_regression_rate is not None:
        results.append(at_most("regression_rate", round(e.break_rate, 6),
                               rate_budget(config.max_regression_rate, config.epsilon, e.regression)))
        if c.cross_regressions is not None and c.cross_size:
            results.append(at_most("cross_budget", round(c.cross_regressions / c.cross_size, 6),
                                   rate_budget(config.max_regression_rate, config.cross_epsilon, c.cross_size)))
    return results


def rate_budget(rate: float, allowance: int, size: int) -> float:
    """The break-rate cap on a set of `size` items: `rate`, but never below the paper's `allowance`
    of broken items (2) — on a small set (under 40 items at 5%) one break would otherwise be over
    budget, making the default rule stricter than the one it replaces."""
    return round(max(rate, allowance / size), 6) if size else rate


@dataclass(frozen=True)
class RollbackRecord:
    from_model: str
    to_model: str
    dataset_version_id: str | None
    hyperparameters: dict[str, Any]
    reason: str


class Deployment:
    """Registry transitions behind the gates. Every transition is one transaction with its event."""

    def __init__(self, store: Store, bus: EventBus, config: GateConfig | None = None) -> None:
        self.store = store
        self.bus = bus
        self.config = config or GateConfig()

    def deployed(self) -> dict[str, Any] | None:
        return self.store.models.deployed()

    def check(self, candidate: Candidate) -> GateReport:
        """Run every gate and emit one gate_checked event per gate."""
        current = self.deployed()
        deployed_score = None if current is None else current["metrics"].get("score")
        report = check(candidate, self.config, deployed_score)
        with self.store.transaction():
            for r in report.results:
                self.bus.emit(GateChecked(node_id=candidate.node_id, gate=r.gate, passed=r.passed, value=r.value,
                                          threshold=r.threshold, rule=r.rule, gate_rule=report.rule))
        return report

    def promote(self, candidate: Candidate, report: GateReport, *, override: str | None = None) -> None:
        """Deploy the candidate and retire the model it replaces. The candidate must be registered
        with parent_id = the deployed model, so lineage is the deployment history rollback follows.
        `override` is a person's reason to promote a close call (it failed only the regression budget);
        nothing else that failed a gate is ever promoted."""
        if report.node_id != candidate.node_id:
            raise GateError(f"the gate report is for {report.node_id}, not {candidate.node_id}")
        if not report.passed and not (override and override.strip() and report.close_call):
            why = "a reason is required to promote it anyway" if report.close_call else \
                "only a candidate that failed nothing but the regression budget can be promoted anyway"
            raise GateError(f"candidate {candidate.model_id} did not pass the gates ({', '.join(report.failed)}): "
                            f"{why}")
        model = self.store.models.get(candidate.model_id)
        if model is None:
            raise GateError(f"candidate model {candidate.model_id} is not registered")
        current = self.deployed()
        if current is not None and model["parent_id"] != current["id"]:
            raise GateError(f"candidate {candidate.model_id} has parent {model['parent_id']} but {current['id']} "
                            f"is deployed: register it with parent_id={current['id']}")
        with self.store.transaction():
            if current is not None:
                self.store.models.set_status(current["id"], "retired")
            self.store.models.update_metrics(candidate.model_id, {"score": candidate.score})
            self.store.models.set_status(candidate.model_id, "deployed")
            self.bus.emit(Promoted(node_id=candidate.node_id, model_id=candidate.model_id, score=candidate.score,
                                   override=override.strip() if override else None))

    def rollback(self, reason: str, node_id: str | None = None) -> RollbackRecord:
        """Restore the model the deployed one replaced (its nearest retired ancestor) exactly."""
        current = self.deployed()
        if current is None:
            raise GateError("no model is deployed: there is nothing to roll back")
        target = next((m for m in self.store.models.ancestors(current["id"])[1:] if m["status"] == "retired"), None)
        if target is None:
            raise GateError(f"model {current['id']} has no previously deployed ancestor to roll back to")
        with self.store.transaction():
            self.store.models.set_status(current["id"], "rolled_back")
            self.store.models.set_status(target["id"], "deployed")
            self.bus.emit(Rollback(node_id=node_id, from_model=current["id"], to_model=target["id"], reason=reason))
        return RollbackRecord(current["id"], target["id"], target["dataset_version_id"],
                              target["hyperparameters"], reason)
