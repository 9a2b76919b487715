"""Gates: when to stop, and whether a candidate may replace the deployed model.

- stop: f >= tau (0.96), lowered only through `lower_tau` with a recorded basis and reason;
- production: a(pi) >= tau on the failure set AND r(pi) <= epsilon (2) on the regression set,
  and again r <= 2 on the previous checkpoint's evaluation set (cross-checkpoint);
- traffic (production): the candidate's estimated accuracy on the run's traffic (failures it gets right
  plus passes at the regression set's retention rate) is at least the deployed model's pass rate. Two
  regressions allowed on a small regression set can cost more passes than the fixes gain when most
  failures are unfixable (AdaptFT-Bench sms_spam: 10 of 58 failures fixable, 2 of 58 sampled passes
  broken, est. 295.8 right of 354 against 296: promoted, held-out accuracy fell 1.2 points);
- monotone: a candidate never scores below the deployed model, so deployed scores never decrease.
`Deployment` promotes only a candidate whose GateReport passed, and rolls back to the model the
deployed one replaced, with the dataset version it was trained on, through registry statuses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from engine.events import EventBus
from engine.models.base import ConfigError
from store import Store

TauBasis = Literal["plateau", "unfixable_residuals", "user"]
TAU_BASES: tuple[str, ...] = ("plateau", "unfixable_residuals", "user")


class GateError(RuntimeError):
    """A promotion or rollback that the gates or the registry state do not allow."""


@dataclass(frozen=True)
class GateConfig:
    tau: float = 0.96
    epsilon: int = 2
    cross_epsilon: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"GateConfig.tau={self.tau!r} is invalid: use a score in (0, 1] (0.96)")
        for name in ("epsilon", "cross_epsilon"):
            if getattr(self, name) < 0:
                raise ConfigError(f"GateConfig.{name}={getattr(self, name)!r} is invalid: use an integer >= 0 (2)")


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
    rule: str  # ">=" or "<="


@dataclass(frozen=True)
class GateReport:
    node_id: str
    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.gate for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "passed": self.passed,
                "results": [{"gate": r.gate, "passed": r.passed, "value": r.value, "threshold": r.threshold,
                             "rule": r.rule} for r in self.results]}


def at_least(gate: str, value: float, threshold: float) -> GateResult:
    return GateResult(gate, value >= threshold, float(value), float(threshold), ">=")


def at_most(gate: str, value: float, threshold: float) -> GateResult:
    return GateResult(gate, value <= threshold, float(value), float(threshold), "<=")


def stop_gate(score: float, config: GateConfig) -> GateResult:
    return at_least("stop", score, config.tau)


@dataclass(frozen=True)
class Candidate:
    """A trained model waiting for the gates. Production candidates carry a(pi) (`failure_score`) and
    r(pi) (`regressions`); `cross_regressions` is None only when there is no previous checkpoint;
    `traffic_score` is the estimated traffic accuracy and `traffic_floor` the deployed model's."""

    node_id: str
    model_id: str
    score: float
    failure_score: float | None = None
    regressions: int | None = None
    cross_regressions: int | None = None
    traffic_score: float | None = None
    traffic_floor: float | None = None


def check(candidate: Candidate, config: GateConfig, deployed_score: float | None = None) -> GateReport:
    c = candidate
    results = []
    if c.failure_score is not None:
        if c.regressions is None:
            raise ValueError(f"candidate {c.model_id} has a failure-set score but no regression count")
        results += [at_least("failure_set", c.failure_score, config.tau),
                    at_most("regression_set", c.regressions, config.epsilon)]
    else:
        results.append(stop_gate(c.score, config))
    if c.cross_regressions is not None:
        results.append(at_most("cross_checkpoint", c.cross_regressions, config.cross_epsilon))
    if c.traffic_score is not None:
        if c.traffic_floor is None:
            raise ValueError(f"candidate {c.model_id} has a traffic estimate but no floor")
        results.append(at_least("traffic", c.traffic_score, c.traffic_floor))
    if deployed_score is not None:
        results.append(at_least("monotone", c.score, deployed_score))
    return GateReport(c.node_id, tuple(results))


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
                self.bus.emit("gate_checked", node_id=candidate.node_id, gate=r.gate, passed=r.passed,
                              value=r.value, threshold=r.threshold)
        return report

    def promote(self, candidate: Candidate, report: GateReport) -> None:
        """Deploy the candidate and retire the model it replaces. The candidate must be registered
        with parent_id = the deployed model, so lineage is the deployment history rollback follows."""
        if report.node_id != candidate.node_id or not report.passed:
            raise GateError(f"candidate {candidate.model_id} did not pass the gates "
                            f"({', '.join(report.failed) or 'report is for another node'}): it is never promoted")
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
            self.bus.emit("promoted", node_id=candidate.node_id, model_id=candidate.model_id,
                          score=candidate.score)

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
            self.bus.emit("rollback", node_id=node_id, from_model=current["id"], to_model=target["id"],
                          reason=reason)
        return RollbackRecord(current["id"], target["id"], target["dataset_version_id"],
                              target["hyperparameters"], reason)
