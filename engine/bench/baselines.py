"""The retraining baselines AdaptFT-Bench compares the agent with.

Realistic naive retraining labels every incoming log the way an unfiltered feedback stream does:
clean examples carry their correct label; a noisy (fixable-only) example the deployed model got
wrong gets no correction about 30% of the time, so the model trains on its own wrong output;
a poisoned example gets a wrong correction about 50% of the time, the right one about 20% (by
chance) and none (its own output) otherwise. Controlled baselines: the same logs with oracle
labels, clean logs only, and random augmentation (fixable-noise copies of clean-pool examples,
as many as the stage adds). Every baseline retrains from the base on the clean pool plus its
labelled logs of all stages so far (each log once), with no filtering and no rollback.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.bench.stages import is_poisoned
from engine.data.perturb import DEFAULT_RATES, perturb_examples
from engine.data.perturb_types import BY_NAME

ARMS = ("naive", "oracle", "clean_only", "random_aug")


@dataclass(frozen=True)
class NaiveNoise:
    uncorrected: float = 0.30  # noisy failures left with the model's own output
    poison_wrong: float = 0.50  # poisoned examples given a wrong correction
    poison_right: float = 0.20  # ... and the right one by chance (the rest: own output)


def answer(row: dict[str, Any]) -> Any:
    """The row's right answer, or for a poisoned row with none (off-domain, gibberish) the label
    its source example had."""
    out = row["output"]
    return row["metadata"].get("original_output") if out is None else out


def plain(output: Any) -> Any:
    """A prediction as JSON data (NER span tuples as dicts)."""
    if isinstance(output, tuple | list):
        return [{"start": s.start, "end": s.end, "label": s.label} if hasattr(s, "start") else s for s in output]
    return output


def naive_labels(rows: Sequence[dict[str, Any]], predictions: Sequence[Any], labels: Sequence[str], seed: int,
                 noise: NaiveNoise = NaiveNoise()) -> list[tuple[Any, str]]:
    """(training label, how it was obtained) per log: correct | own_output | wrong | right_by_chance."""
    rng = random.Random(seed)
    outputs = [answer(r) for r in rows]
    out = []
    for row, pred, right in zip(rows, predictions, outputs, strict=True):
        pred = plain(pred)
        u = rng.random()
        if is_poisoned(row):
            if u < noise.poison_wrong:
                out.append((_wrong(right, pred, labels, outputs, rng), "wrong"))
            elif u < noise.poison_wrong + noise.poison_right and right is not None:
                out.append((right, "right_by_chance"))
            else:
                out.append((pred, "own_output"))
        elif right is None or (row["metadata"].get("perturbations") and pred != right and u < noise.uncorrected):
            out.append((pred, "own_output"))
        else:
            out.append((right, "correct"))
    return out


def _wrong(right: Any, pred: Any, labels: Sequence[str], outputs: Sequence[Any], rng: random.Random) -> Any:
    """A label that is neither the right answer nor (when possible) the model's output."""
    if labels:
        options = [lab for lab in labels if lab != right and lab != pred] or [lab for lab in labels if lab != right]
        return rng.choice(options or list(labels))
    others = [o for o in outputs if o is not None and o != right]
    return rng.choice(others) if others else pred


def oracle_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    return [(r, r["output"]) for r in rows if r["output"] is not None]


def clean_rows(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    return [(r, r["output"]) for r in rows if not r["metadata"].get("perturbations")]


def random_augmentation(clean: Sequence[dict[str, Any]], n: int, task: str, seed: int) -> list[tuple[dict[str, Any], Any]]:
    """`n` copies of random clean-pool examples with fixable noise only (labels unchanged)."""
    rng = random.Random(seed)
    picked = [dict(rng.choice(list(clean)), id=f"aug{seed}-{i}") for i in range(n)]
    rates = {name: (0.0 if BY_NAME[name].cls == "poisonous" or BY_NAME[name].kind == "rows" else min(1.0, 3 * r))
             for name, r in DEFAULT_RATES.items()}
    rows = perturb_examples(picked, seed=seed, task=task, rates=rates)
    return [(r, r["output"]) for r in rows if r["output"] is not None]
