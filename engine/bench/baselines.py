"""The retraining baselines AdaptFT-Bench compares the agent with.

Labels. Realistic naive retraining labels every incoming log the way an unfiltered feedback stream
does (issue 7): clean examples carry their correct label; a noisy (fixable-only) example the
deployed model got wrong gets no correction about 30% of the time, so the model trains on its own
wrong output; a poisoned example gets a wrong correction about 50% of the time, the right one about
20% (by chance) and none (its own output) otherwise. The issue does not say what the wrong
correction is. Ours is the one the poison pushes a labeller towards when it points somewhere: the
injected target of a prompt injection, the label of the retracted request of a label flip (what a
reader skimming its first half sees). Where the poison points nowhere (off-domain, gibberish,
boundary probes, jailbreaks...), any label is arbitrary: a random label that is neither the right
one nor the model's output. The `naive_random` arm puts a uniformly random wrong label on every
poisoned row instead.

Procedure. Realistic naive retraining ("naive") does what continual fine-tuning without a loop
does: at each stage it trains the deployed naive checkpoint further on that stage's labelled logs,
each log once, with no filtering, no replay of older data and no rollback. We choose this as the
realistic arm because it is the standard naive continual-learning procedure and because it is
exactly what the paper's agent adds to: the agent replays D_parent and retrains from the base,
remedies that only make sense against training on the new logs alone. With the linear-probe recipe
"continuing" is a refit of the head on the stage's logs (the L2-regularised logistic loss is convex:
its optimum does not depend on the starting head); with full fine-tuning the naive checkpoint is
the starting point. A team could instead append the logs to its training set and retrain from the
base, which forgets nothing: the `naive_cumulative` arm (clean pool + every stage's labelled logs so
far, retrained from the base) measures that stronger variant, and the report prints the gap against
it too. Controlled baselines, all cumulative like naive_cumulative: the same logs with oracle
labels, the clean logs only, and random augmentation (fixable-noise copies of clean-pool examples,
as many as the stage adds).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.bench.stages import is_poisoned
from engine.data.perturb import DEFAULT_RATES, perturb_examples
from engine.data.perturb_types import BY_NAME

ARMS = ("naive", "naive_cumulative", "naive_random", "oracle", "clean_only", "random_aug")
CUMULATIVE = frozenset(ARMS) - {"naive"}  # arms that retrain from the base on the clean pool plus every log so far
WRONG = ("pushed", "random")


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
                 noise: NaiveNoise = NaiveNoise(), wrong: str = "pushed") -> list[tuple[Any, str]]:
    """(training label, how it was obtained) per log: correct | own_output | wrong | right_by_chance.
    `wrong`: "pushed" (where the poison points, else random) or "random" (always random)."""
    if wrong not in WRONG:
        raise ValueError(f"wrong={wrong!r}: use one of {', '.join(WRONG)}")
    rng = random.Random(seed)
    outputs = [answer(r) for r in rows]
    out = []
    for row, pred, right in zip(rows, predictions, outputs, strict=True):
        pred = plain(pred)
        u = rng.random()
        if is_poisoned(row):
            if u < noise.poison_wrong:
                random_label = _random_wrong(right, pred, labels, outputs, rng)  # drawn either way: same draws
                target = pushed_label(row, right, labels) if wrong == "pushed" else None
                out.append((random_label if target is None else target, "wrong"))
            elif u < noise.poison_wrong + noise.poison_right and right is not None:
                out.append((right, "right_by_chance"))
            else:
                out.append((pred, "own_output"))
        elif right is None or (row["metadata"].get("perturbations") and pred != right and u < noise.uncorrected):
            out.append((pred, "own_output"))
        else:
            out.append((right, "correct"))
    return out


def pushed_label(row: dict[str, Any], right: Any, labels: Sequence[str]) -> Any:
    """The wrong label (of `labels`) a poisoned log points a labeller to, or None when it points nowhere."""
    meta = row["metadata"]
    types = {p["type"] for p in meta.get("perturbations", [])}
    candidates = []
    if "prompt_injection" in types:
        candidates.append(meta.get("injected_target"))
    if "label_flipping_adversarials" in types:
        candidates.append(meta.get("original_output"))
    return next((c for c in candidates if c in labels and c != right), None)


def _random_wrong(right: Any, pred: Any, labels: Sequence[str], outputs: Sequence[Any], rng: random.Random) -> Any:
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
