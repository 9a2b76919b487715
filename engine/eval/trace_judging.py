"""Judging unjudged inference logs (`pioneer-tui judge`): each row's output is scored by an LLM judge
(engine.eval.judge) against the rubric, and a score at or above the pass mark is a `pass`; a `fail` takes
the judge's correction. Every verdict keeps the judge model, the rubric's hash and the raw score in the
row's `metadata`, so a later reader knows which judge said what under which rubric.

Spending stops at the cost or token budget; rows the judge could not answer (an API error, a malformed
verdict after a retry) or the budget did not reach are returned apart, unjudged, never guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.data.datasets_io import jsonl_rows
from engine.errors import ConfigError, DatasetError
from engine.eval.judge import Judge, JudgeResult
from engine.search.budget import Budget, BudgetLimits

OUTPUT_FIELDS = ("prediction", "output")
REFERENCE_FIELDS = ("reference", "expected")


@dataclass
class JudgingReport:
    judged: int = 0
    passed: int = 0
    failed: int = 0
    corrected: int = 0
    errors: int = 0
    not_reached: int = 0
    already_judged: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once a call's price is unknown
    stopped: str | None = None
    first_error: str | None = None
    unjudged: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "unjudged"}

    def add_usage(self, result: JudgeResult) -> None:
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        self.cost_usd = None if result.cost_usd is None or self.cost_usd is None else self.cost_usd + result.cost_usd


def rubric_id(criteria: str) -> str:
    return "sha256:" + hashlib.sha256(criteria.encode("utf-8")).hexdigest()[:16]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """JSONL rows, each an object with `input` and `prediction` (or `output`) text."""
    rows = []
    for number, row in jsonl_rows(path):
        where = f"{path}:{number}"
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object with input and prediction")
        if not isinstance(row.get("input"), str):
            raise DatasetError(f"{where}: field input: missing or not text")
        if not any(isinstance(row.get(k), str) for k in OUTPUT_FIELDS):
            raise DatasetError(f"{where}: field prediction: missing or not text (the output to judge)")
        if row.get("metadata") is not None and not isinstance(row["metadata"], dict):
            raise DatasetError(f"{where}: field metadata: expected an object")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{path}: no rows to judge")
    return rows


def judge_rows(rows: Sequence[dict[str, Any]], judge: Judge, *, model: str, criteria: str, pass_mark: float = 0.5,
               limits: BudgetLimits | None = None, progress: Callable[[int, int], None] | None = None
               ) -> tuple[list[dict[str, Any]], JudgingReport]:
    """(judged rows, report); rows that already carry a verdict pass through unchanged and uncharged.
    `limits` (tokens, dollars) stop the spending as a run's budget does (engine.search.budget)."""
    if not 0.0 < pass_mark <= 1.0:
        raise ConfigError(f"--pass-mark {pass_mark} is invalid: use a fraction of the scale in (0, 1]")
    budget = Budget(limits or BudgetLimits())
    report = JudgingReport()
    judged: list[dict[str, Any]] = []
    rubric = rubric_id(criteria)
    for i, row in enumerate(rows):
        if row.get("verdict") in ("pass", "fail"):
            report.already_judged += 1
            judged.append(row)
            continue
        if report.stopped is None and (reason := budget.exhausted()):
            report.stopped = reason
        if report.stopped is not None:
            report.not_reached += 1
            report.unjudged.append(row)
            continue
        output = next(row[k] for k in OUTPUT_FIELDS if isinstance(row.get(k), str))
        reference = next((str(row[k]) for k in REFERENCE_FIELDS if row.get(k) is not None), None)
        result = judge.judge(row["input"], output, reference)
        report.add_usage(result)
        budget.charge_llm(result.prompt_tokens + result.completion_tokens, result.cost_usd or 0.0)
        if progress is not None:
            progress(i + 1, len(rows))
        if not result.ok or result.score is None:
            report.errors += 1
            report.first_error = report.first_error or result.error
            report.unjudged.append(row)
            continue
        verdict = "pass" if result.score >= pass_mark else "fail"
        correction = result.correction if verdict == "fail" else None
        meta = {**(row.get("metadata") or {}), "judge": model, "judge_rubric": rubric, "judge_score": result.raw_score,
                "judge_reasoning": result.reasoning}
        judged.append({**{k: v for k, v in row.items() if k not in ("correction", "metadata")}, "verdict": verdict,
                       **({"correction": correction} if correction else {}), "metadata": meta})
        report.judged += 1
        report.passed += verdict == "pass"
        report.failed += verdict == "fail"
        report.corrected += correction is not None
    return judged, report
