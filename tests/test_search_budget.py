"""Budgets: each limit stops the run and says which; wall time survives a resume; plain-data round trip."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.search.budget import Budget, BudgetLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_unlimited_budget_is_never_exhausted():
    budget = Budget()
    for _ in range(100):
        budget.charge_iteration()
    budget.charge_llm(10**6, 50.0)
    assert budget.exhausted() is None


def test_iterations_budget():
    budget = Budget(BudgetLimits(iterations=2))
    budget.charge_iteration()
    assert budget.exhausted() is None
    budget.charge_iteration()
    assert budget.exhausted() == "iterations budget spent: 2 of 2"


def test_token_and_dollar_budgets():
    tokens = Budget(BudgetLimits(tokens=1000))
    tokens.charge_llm(600, 0.01)
    tokens.charge_llm(400, 0.01)
    assert tokens.exhausted() == "tokens budget spent: 1000 of 1000"
    dollars = Budget(BudgetLimits(dollars=0.05))
    dollars.charge_llm(10, 0.049)
    assert dollars.exhausted() is None
    dollars.charge_llm(10, 0.002)
    assert dollars.exhausted() == "dollars budget spent: 0.051 of 0.05"
    with pytest.raises(ValueError, match="negative"):
        dollars.charge_llm(-1, 0.0)


def test_wall_clock_counts_only_while_running_and_survives_a_resume():
    clock = Clock()
    budget = Budget(BudgetLimits(seconds=60), clock=clock)
    budget.start()
    clock.now += 40
    assert budget.exhausted() is None
    budget.pause()
    clock.now += 1000  # the run was not running: does not count
    saved = budget.to_dict()
    assert saved == {"spent": {"iterations": 0, "seconds": 40.0, "tokens": 0, "dollars": 0.0},
                     "limits": {"iterations": None, "seconds": 60, "tokens": None, "dollars": None}}
    resumed = Budget.from_dict(saved, clock=clock)
    resumed.start()
    clock.now += 19
    assert resumed.exhausted() is None
    clock.now += 1
    assert resumed.exhausted() == "seconds budget spent: 60 of 60"


def test_bad_limits_and_payloads_are_refused():
    with pytest.raises(ConfigError, match="BudgetLimits.iterations=-1"):
        BudgetLimits(iterations=-1)
    with pytest.raises(ConfigError, match="BudgetLimits.dollars"):
        BudgetLimits(dollars=float("nan"))
    with pytest.raises(ConfigError, match="unknown field"):
        Budget.from_dict({"spent": {}, "extra": 1})
    with pytest.raises(ConfigError, match="budget is invalid"):
        Budget.from_dict({"spent": {"minutes": 3}})
