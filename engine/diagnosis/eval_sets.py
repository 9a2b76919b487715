"""The two sets a candidate is gated on.

- failure set: all of T_fail, each item with the judging method its trace recorded (a person, an LLM
  judge, exact match...), so a score is only compared with scores judged the same way. Items carry
  their triage verdict so the gate can also score the fixable part alone.
- regression set: a stratified sample of T_pass (by label / entity type), 30-100% of |T_fail| (the
  paper's rule) or a share of T_pass (the traffic rule, whose break-rate bound needs the sample to
  scale with the passes it stands for): what worked must keep working;
- fix holdout: a stratified sample of the fixable failures kept out of training, so the traffic
  rule measures the fix rate on failures the candidate never saw.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.diagnosis.fixability import TriageResult
from engine.diagnosis.traces import Trace
from engine.errors import ConfigError
from engine.tasks import task_type

_JUDGE_KEYS = ("judge", "judge_method", "judged_by", "eval_method")


def judge_method(trace: Trace) -> str:
    """A person's verdict wins; else the method the trace's metadata names; else 'auto'."""
    if trace.human_verdict is not None:
        return "human"
    for key in _JUDGE_KEYS:
        value = trace.metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, Mapping) and value.get("method"):
            return str(value["method"])
    return "auto"


@dataclass(frozen=True)
class EvalItem:
    id: str
    input: str
    expected: Any  # JSON form: label, [{start, end, label}] or text; None when the trace has no correction
    stratum: str
    judge: str
    fixable: bool | None = None


@dataclass
class EvalSet:
    name: str
    task: str
    items: list[EvalItem]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def inputs(self) -> list[str]:
        return [i.input for i in self.items]

    def to_rows(self) -> list[dict[str, Any]]:
        return [{"id": i.id, "input": i.input, "expected": i.expected, "stratum": i.stratum, "judge": i.judge,
                 "fixable": i.fixable} for i in self.items]


def failure_set(fail: Sequence[Trace], triage: Mapping[str, TriageResult] | None = None) -> EvalSet:
    if not fail:
        raise ValueError("the failure set is empty: there are no failing traces to improve on")
    task = fail[0].task
    items = [EvalItem(t.id, t.input, task_type(task).to_json(t.correction),
                      task_type(task).stratum(t.correction) if t.correction is not None else "uncorrected",
                      judge_method(t), None if triage is None or t.id not in triage else not triage[t.id].poison)
             for t in fail]
    judges = Counter(i.judge for i in items)
    return EvalSet("failure", task, items, {
        "source": "T_fail", "size": len(items), "judges": dict(sorted(judges.items())),
        "uncorrected": sum(i.expected is None for i in items),
        "fixable": sum(i.fixable is True for i in items), "poison": sum(i.fixable is False for i in items),
    })


def regression_set(pass_: Sequence[Trace], n_fail: int, *, fraction: float = 0.5, seed: int = 0,
                   bounds: tuple[float, float] = (0.3, 1.0), size: int | None = None) -> EvalSet:
    """ceil(fraction x |T_fail|) passing traces (or `size` of them when given), allocated to strata in
    proportion to T_pass (largest remainder; every stratum gets one when the budget allows), sampled
    with a seeded RNG."""
    if not bounds[0] <= fraction <= bounds[1]:
        raise ConfigError(f"regression fraction {fraction} is outside {bounds[0]}-{bounds[1]} of |T_fail|: "
                          "choose a value in that range")
    if n_fail < 0:
        raise ValueError(f"n_fail={n_fail} must be >= 0")
    task = pass_[0].task if pass_ else "classification"
    wanted = math.ceil(fraction * n_fail - 1e-9) if size is None else size  # never below what was asked
    target = min(len(pass_), wanted)
    chosen = stratified_sample(pass_, target, lambda t: task_type(task).stratum(t.gold), seed)
    strata = Counter(task_type(task).stratum(t.gold) for t in pass_)
    items = [EvalItem(t.id, t.input, task_type(task).to_json(t.gold), stratum, judge_method(t))
             for stratum, t in chosen]
    return EvalSet("regression", task, items, {
        "source": "T_pass", "size": len(items), "fraction": fraction, "n_fail": n_fail, "seed": seed,
        "target": wanted, "short": len(items) < wanted,
        "strata": dict(sorted(Counter(i.stratum for i in items).items())),
        "population": dict(sorted(strata.items())),
    })


def fix_holdout(items: Sequence[EvalItem], fraction: float, seed: int = 0, at_least: int = 0) -> list[str]:
    """Ids of about fraction x n fixable, corrected failure-set items, stratified by expected answer:
    kept out of training so a candidate's fix rate is measured on failures it never saw. With a
    fraction > 0, at least `at_least` inputs are held out (never more than half of them): a share of
    few failures is too few to measure a fix rate on. Inputs are drawn, not traces: every copy of a
    repeated request is held out with it (a copy left in training would teach the held-out answer)."""
    fixable = [i for i in items if i.fixable is not False and i.expected is not None]
    first: dict[str, EvalItem] = {}
    for item in sorted(fixable, key=lambda i: i.id):
        first.setdefault(item.input, item)
    n = max(round(fraction * len(first)), min(at_least, len(first) // 2)) if fraction > 0 else 0
    chosen = stratified_sample(list(first.values()), n, lambda i: i.stratum, seed)
    held = {i.input for _, i in chosen}
    return sorted(i.id for i in fixable if i.input in held)


def stratified_sample(population: Sequence[Any], n: int, stratum_of: Any, seed: int) -> list[tuple[str, Any]]:
    """(stratum, member) pairs: `n` members allocated to strata in proportion (see `allocate`), each
    stratum sampled with one seeded RNG in stratum order, members in id order first."""
    strata: dict[str, list[Any]] = defaultdict(list)
    for member in sorted(population, key=lambda m: m.id):
        strata[stratum_of(member)].append(member)
    alloc = allocate(n, {k: len(v) for k, v in strata.items()})
    rng = random.Random(seed)
    chosen: list[tuple[str, Any]] = []
    for stratum in sorted(strata):
        chosen += [(stratum, m) for m in rng.sample(strata[stratum], alloc.get(stratum, 0))]
    return chosen


def allocate(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Split `total` over strata of `sizes`: one each when the budget allows, the rest in proportion
    (largest remainder, ties to the bigger stratum, then by name), never above a stratum's size."""
    if total <= 0 or not sizes:
        return {}
    n = sum(sizes.values())
    if total >= len(sizes):  # one each first, then proportionally
        alloc = {k: 1 for k in sizes}
        rest = {k: v - 1 for k, v in sizes.items()}
        remaining, pool = total - len(sizes), n - len(sizes)
    else:
        alloc = dict.fromkeys(sizes, 0)
        rest, remaining, pool = dict(sizes), total, n
    if remaining and pool:
        quotas = {k: remaining * v / pool for k, v in rest.items()}
        for k, q in quotas.items():
            alloc[k] += int(q)
        left = remaining - sum(int(q) for q in quotas.values())
        order = sorted(quotas, key=lambda k: (-(quotas[k] - int(quotas[k])), -sizes[k], k))
        for k in order:
            if left == 0:
                break
            if alloc[k] < sizes[k]:
                alloc[k] += 1
                left -= 1
    return alloc
