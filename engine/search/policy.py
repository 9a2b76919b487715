"""The iteration policy: which kind of change the next iteration makes, from the current score.

score < 0.80 -> rework the data; 0.80-0.95 -> tune hyperparameters with the data fixed;
> 0.95 -> surgical augmentation (2-3 targeted examples per remaining failure pattern);
any regression from the previous iteration -> roll back to its dataset and configuration, then
continue in the band of the restored score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.errors import ConfigError

ActionKind = Literal["rework_data", "tune_hyperparams", "surgical_augmentation", "rollback"]


@dataclass(frozen=True)
class PolicyConfig:
    rework_below: float = 0.80
    surgical_above: float = 0.95
    min_per_pattern: int = 2
    max_per_pattern: int = 3
    score_tolerance: float = 0.0  # a drop larger than this counts as a regression

    def __post_init__(self) -> None:
        if not 0.0 <= self.rework_below <= self.surgical_above <= 1.0:
            raise ConfigError(f"PolicyConfig.rework_below={self.rework_below!r} / surgical_above="
                              f"{self.surgical_above!r} are invalid: use 0 <= rework_below <= surgical_above <= 1")
        if not 1 <= self.min_per_pattern <= self.max_per_pattern:
            raise ConfigError(f"PolicyConfig.min_per_pattern={self.min_per_pattern!r} is invalid: "
                              "use 1 <= min_per_pattern <= max_per_pattern (2-3)")
        if self.score_tolerance < 0:
            raise ConfigError(f"PolicyConfig.score_tolerance={self.score_tolerance!r} is invalid: use >= 0")


@dataclass(frozen=True)
class Outcome:
    """What one iteration scored: f and, in production, the regression count r."""

    node_id: str
    score: float
    regressions: int | None = None


@dataclass(frozen=True)
class Action:
    """What the next iteration should change. For a rollback, `band` is the restored node's band."""

    kind: ActionKind
    reason: str
    band: ActionKind
    rollback_to: str | None = None
    targets: tuple[tuple[str, int], ...] = ()  # (failure pattern, examples to add) for surgical work

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "reason": self.reason, "band": self.band, "rollback_to": self.rollback_to,
                "targets": [list(t) for t in self.targets]}


class IterationPolicy:
    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    def band(self, score: float) -> ActionKind:
        if score < self.config.rework_below:
            return "rework_data"
        if score <= self.config.surgical_above:
            return "tune_hyperparams"
        return "surgical_augmentation"

    def regressed(self, current: Outcome, previous: Outcome) -> str | None:
        """Why `current` is a regression from `previous`, or None."""
        if current.score < previous.score - self.config.score_tolerance:
            return f"score fell from {previous.score:.4f} to {current.score:.4f}"
        if current.regressions is not None and previous.regressions is not None \
                and current.regressions > previous.regressions:
            return f"regressions rose from {previous.regressions} to {current.regressions}"
        return None

    def decide(self, current: Outcome, previous: Outcome | None = None,
               failure_patterns: dict[str, int] | None = None) -> Action:
        """The next action after `current` (derived from `previous`), given the failures left.

        `failure_patterns` maps each remaining failure pattern to its number of failing examples;
        a pattern with more failures gets the upper end of the 2-3 targeted examples.
        """
        cfg = self.config
        if previous is not None and (why := self.regressed(current, previous)):
            return Action("rollback", f"{why}: restore the dataset and configuration of {previous.node_id}",
                          band=self.band(previous.score), rollback_to=previous.node_id)
        band = self.band(current.score)
        f = f"{current.score:.4f}"
        if band == "rework_data":
            return Action(band, f"score {f} < {cfg.rework_below}: rework the data", band)
        if band == "tune_hyperparams":
            return Action(band, f"score {f} in [{cfg.rework_below}, {cfg.surgical_above}]: tune "
                                "hyperparameters with the data fixed", band)
        targets = tuple(
            (name, cfg.max_per_pattern if count >= cfg.max_per_pattern else cfg.min_per_pattern)
            for name, count in sorted((failure_patterns or {}).items()))
        return Action(band, f"score {f} > {cfg.surgical_above}: add targeted examples for "
                            f"{len(targets)} remaining failure pattern(s)", band, targets=targets)
