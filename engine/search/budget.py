"""Run budgets: iterations, wall-clock seconds, LLM tokens and dollars.

The run stops cleanly when one is spent and says which. Spending is plain data so it can be stored
in the run row (`runs.spent`) and in `budget` events, and a resumed run continues from it: wall
time already spent carries over, time while the run was not running does not count.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import ConfigError

_FIELDS = ("iterations", "seconds", "tokens", "dollars")


@dataclass(frozen=True)
class BudgetLimits:
    """None means unlimited."""

    iterations: int | None = None
    seconds: float | None = None
    tokens: int | None = None
    dollars: float | None = None

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"BudgetLimits.{name}={value!r} is invalid: use a number >= 0 or null (unlimited)")


@dataclass
class Spent:
    iterations: int = 0
    seconds: float = 0.0
    tokens: int = 0
    dollars: float = 0.0


@dataclass
class Budget:
    limits: BudgetLimits = field(default_factory=BudgetLimits)
    spent: Spent = field(default_factory=Spent)
    clock: Callable[[], float] = time.monotonic
    _since: float | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Start (or resume) counting wall-clock time."""
        if self._since is None:
            self._since = self.clock()

    def pause(self) -> None:
        self._sync()
        self._since = None

    def charge_iteration(self) -> None:
        self.spent.iterations += 1

    def charge_llm(self, tokens: int, dollars: float) -> None:
        if tokens < 0 or dollars < 0:
            raise ValueError(f"cannot charge negative usage (tokens={tokens}, dollars={dollars})")
        self.spent.tokens += int(tokens)
        self.spent.dollars += float(dollars)

    def exhausted(self) -> str | None:
        """The first spent budget, e.g. 'iterations: 10 of 10 spent', or None."""
        self._sync()
        for name in _FIELDS:
            limit, used = getattr(self.limits, name), getattr(self.spent, name)
            if limit is not None and used >= limit:
                return f"{name} budget spent: {_fmt(used)} of {_fmt(limit)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        self._sync()
        return {"spent": asdict(self.spent), "limits": asdict(self.limits)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> Budget:
        unknown = set(raw) - {"spent", "limits"}
        if unknown:
            raise ConfigError(f"budget has unknown field(s) {', '.join(sorted(unknown))}: use spent, limits")
        try:
            return cls(BudgetLimits(**(raw.get("limits") or {})), Spent(**(raw.get("spent") or {})), clock)
        except TypeError as exc:
            raise ConfigError(f"budget is invalid: {exc}; fields are {', '.join(_FIELDS)}") from exc

    def _sync(self) -> None:
        if self._since is not None:
            now = self.clock()
            self.spent.seconds += now - self._since
            self._since = now


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, int) else f"{value:.4g}"
