"""The runs of a workspace as `pioneer-tui runs` and the workbench's runs list both show them: one reading
of the run rows (the budget is stored as {"spent": ..., "limits": ...}) and one way to print each cell."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from store import Store
from widgets.formatting import budget_text, number, score

COLUMNS = ("run", "mode", "status", "best", "iter", "spent", "started UTC")


@dataclass(frozen=True)
class RunRow:
    id: str
    mode: str
    status: str
    best_score: float | None
    spent: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    started_at: str = ""
    finished_at: str | None = None

    def cells(self) -> tuple[str, ...]:
        """The row under COLUMNS: iterations as "spent/limit", the budget as the status bar shows it, the
        start as month-day hour:minute (the full timestamp is in --json), so the row fits 80 columns."""
        limit = self.limits.get("iterations")
        iterations = number(int(self.spent.get("iterations", 0))) + (f"/{number(int(limit))}" if limit else "")
        return (self.id, self.mode, self.status, score(self.best_score), iterations,
                budget_text(self.spent, self.limits), self.started_at[5:16].replace("T", " "))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_rows(store: Store) -> list[RunRow]:
    """Every run in start order."""
    rows = []
    for r in store.runs.list():
        budget = r.get("spent") or {}
        rows.append(RunRow(r["id"], r["mode"], r["status"], r["best_score"], dict(budget.get("spent") or {}),
                           dict(budget.get("limits") or {}), r["stop_reason"], str(r["started_at"] or ""),
                           r["finished_at"]))
    return rows
