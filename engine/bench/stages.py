"""AdaptFT-Bench stage protocol: a clean pool for C1, then three deployment stages of perturbed
inference logs whose poison rate rises (15% -> 25% -> 40%), each split 70/30 train/test.

A stage is built from perturbed rows (engine/data/perturb.py). A row is *poisoned* when any of its
perturbations has class "poisonous". The poison rate is controlled by choosing which perturbed rows
enter a stage: non-poisoned rows come from a pass at the paper's default rates, poisoned rows from a
pass over disjoint source examples with the poisonous types' rates scaled up (so enough exist for
40% of a stage), both seeded. Extra rows (duplicates, retry storms) stay with their source row in
the same stage and split, so a test input never leaks into training. The held-out set is the union
of the stage test splits: every checkpoint is scored on the same mixed slice.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.coldstart.registry import load_source
from engine.data.datasets_io import example_to_row
from engine.data.perturb import DEFAULT_RATES, REPLACEMENTS, perturb_examples
from engine.data.perturb_types import BY_NAME
from engine.errors import ConfigError
from engine.records import Example
from engine.tasks import task_type

DATASETS = {"clinc150": ("clinc150/data_full.json", "classification"),
            "sms_spam": ("sms_spam/SMSSpamCollection.tsv", "classification"),
            "wnut17": ("wnut17/wnut17train.conll", "ner")}
# Generative scenarios whose data installs from PyPI (no --data-root): two-term arithmetic with
# numbers below 100 (reasoning-gym basic_arithmetic, Apache-2.0), which SmolLM2-135M learns.
# (Its division items are not exact quotients, so the scenario uses + and -.)
PACKAGED = {"arithmetic": ("reasoning-gym:basic_arithmetic", "generation", {
    "size": 10000, "seed": 0, "min_terms": 2, "max_terms": 2, "max_digits": 2, "operators": ("+", "-"),
    "allow_parentheses": False, "allow_negation": False}),
    # who is whose relative in a family of 4-5 described in plain sentences, answered in one word
    # (reasoning-gym family_relationships, Apache-2.0): short-answer QA over ten relations
    "family_relationships": ("reasoning-gym:family_relationships", "generation", {
        "size": 10000, "seed": 0, "min_family_size": 4, "max_family_size": 5})}
POISON_BOOST = 6.0


@dataclass(frozen=True)
class StageConfig:
    """Sizes are in log rows; `quick` sizes make a run of a few minutes."""

    seed: int = 0
    clean_size: int = 1000
    stage_size: int = 500
    poison_rates: tuple[float, ...] = (0.15, 0.25, 0.40)
    test_fraction: float = 0.3

    def __post_init__(self) -> None:
        checks = [(self.clean_size >= 10, "clean_size", "an integer >= 10"),
                  (self.stage_size >= 10, "stage_size", "an integer >= 10"),
                  (bool(self.poison_rates) and all(0.0 <= r < 1.0 for r in self.poison_rates), "poison_rates",
                   "one or more rates in [0, 1)"),
                  (0.0 < self.test_fraction < 1.0, "test_fraction", "in (0, 1)")]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"StageConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")

    @classmethod
    def quick(cls, seed: int = 0) -> StageConfig:
        return cls(seed=seed, clean_size=300, stage_size=150)


@dataclass
class Stage:
    name: str
    poison_rate: float
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [*self.train, *self.test]

    @property
    def measured_poison_rate(self) -> float:
        return poison_share(self.rows)


@dataclass
class Bench:
    dataset: str
    task: str
    clean: list[dict[str, Any]]
    stages: list[Stage]
    labels: list[str] = field(default_factory=list)

    @property
    def held_out(self) -> list[dict[str, Any]]:
        return [row for stage in self.stages for row in stage.test]


def is_poisoned(row: dict[str, Any]) -> bool:
    return any(p["class"] == "poisonous" for p in row["metadata"].get("perturbations", []))


def poison_share(rows: Sequence[dict[str, Any]]) -> float:
    return sum(map(is_poisoned, rows)) / len(rows) if rows else 0.0


def load_dataset(name: str, data_root: str | Path) -> tuple[str, list[Example]]:
    """(task, examples) for a known benchmark name under `data_root`, or any source the cold-start
    registry loads (a file path or a packaged source); all splits are pooled, ids kept."""
    from engine.coldstart.analysis import DataSchema, analyse_by_rules

    known, packaged = DATASETS.get(name.lower()), PACKAGED.get(name.lower())
    if known is not None:
        path = Path(data_root) / known[0]
        if not path.exists():
            raise ConfigError(f"{path}: dataset {name} not found; pass --data-root pointing at the shared data folder")
        loaded = load_source(str(path), **({"oos": False} if name.lower() == "clinc150" else {}))
        task = known[1]
    elif packaged is not None:
        loaded, task = load_source(packaged[0], **packaged[2]), packaged[1]
    else:  # the cold start's rules read the task from the answers (spans, labels or text)
        loaded = load_source(name)
        task = analyse_by_rules("", DataSchema.of(loaded.train)).task
    examples = [ex for split in loaded.splits.values() for ex in split]
    if packaged is not None:  # a generator repeats items: one row per input, so no test input is trained on
        first: dict[str, Example] = {}
        for ex in examples:
            first.setdefault(ex.input, ex)
        examples = list(first.values())
    return task, examples


def _groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped with their source (extra rows follow the row they copy)."""
    by_root: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        meta = row["metadata"]
        by_root.setdefault(meta.get("duplicate_of") or meta.get("retry_of") or row["id"], []).append(row)
    return list(by_root.values())


def boosted_rates(factor: float = POISON_BOOST) -> dict[str, float]:
    """Poisonous rates scaled by `factor` (input replacements kept to a sum <= 0.9)."""
    rates = {n: min(1.0, r * factor) if BY_NAME[n].cls == "poisonous" else r for n, r in DEFAULT_RATES.items()}
    total = sum(rates[n] for n in REPLACEMENTS)
    if total > 0.9:
        for n in REPLACEMENTS:
            rates[n] *= 0.9 / total
    return rates


def build_stages(examples: Sequence[Example], task: str, config: StageConfig, dataset: str = "") -> Bench:
    """The clean pool and the stages, from disjoint source examples (seeded)."""
    rng = random.Random(config.seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    rows = [_as_row(examples[i], i) for i in order]
    n_stages = len(config.poison_rates)
    need_poison = sum(round(r * config.stage_size) for r in config.poison_rates)
    need_clean = config.stage_size * n_stages - need_poison
    # non-poisoned rows: ~70% of the default-rate pass qualifies; poisoned: ~50% of the boosted pass
    n_a, n_b = int(need_clean / 0.6) + 20, int(need_poison / 0.4) + 20
    if config.clean_size + n_a + n_b > len(rows):
        raise ConfigError(f"dataset {dataset or '?'} has {len(rows)} examples; the stage sizes need about "
                          f"{config.clean_size + n_a + n_b}: lower clean_size / stage_size")
    clean = [{**r, "metadata": {"perturbations": [], "label_valid": True}} for r in rows[:config.clean_size]]
    src_a = rows[config.clean_size:config.clean_size + n_a]
    src_b = rows[config.clean_size + n_a:config.clean_size + n_a + n_b]
    pert_a = perturb_examples(src_a, seed=config.seed, task=task)
    pert_b = perturb_examples(src_b, seed=config.seed + 1, task=task, rates=boosted_rates())
    normal = [g for g in _groups(pert_a) if not is_poisoned(g[0])]
    poison = [g for g in _groups(pert_b) if is_poisoned(g[0])]
    rng.shuffle(normal)
    rng.shuffle(poison)
    stages = []
    for k, rate in enumerate(config.poison_rates, start=1):
        want_poison = round(rate * config.stage_size)
        chosen_p = _take(poison, want_poison)
        chosen_n = _take(normal, config.stage_size - sum(map(len, chosen_p)))
        if sum(map(len, chosen_p)) < want_poison or not chosen_n:
            raise ConfigError(f"stage {k}: not enough perturbed rows for {config.stage_size} logs at "
                              f"{rate:.0%} poison; lower stage_size or use a larger dataset")
        train, test = [], []
        for groups in (chosen_p, chosen_n):  # stratified by poison, so both splits keep the stage's rate
            rng.shuffle(groups)
            n_test = round(config.test_fraction * len(groups))
            test += [r for g in groups[:n_test] for r in g]
            train += [r for g in groups[n_test:] for r in g]
        stages.append(Stage(f"stage{k}", rate, [_tag(r, k) for r in train], [_tag(r, k) for r in test]))
    labels = sorted({str(r["output"]) for r in rows}) if task_type(task).single_label else []
    return Bench(dataset, task, clean, stages, labels)


def _take(groups: list[list[dict[str, Any]]], n_rows: int) -> list[list[dict[str, Any]]]:
    """Pop groups until they hold `n_rows` rows (a group that would overshoot is skipped)."""
    out, got, i = [], 0, 0
    while got < n_rows and i < len(groups):
        if got + len(groups[i]) <= n_rows:
            got += len(groups[i])
            out.append(groups.pop(i))
        else:
            i += 1
    return out


def _tag(row: dict[str, Any], stage: int) -> dict[str, Any]:
    return {**row, "id": f"s{stage}:{row['id']}",
            "metadata": {**row["metadata"], **{k: f"s{stage}:{v}" for k, v in row["metadata"].items()
                                               if k in ("duplicate_of", "retry_of")}}}


def _as_row(example: Example, index: int) -> dict[str, Any]:
    row = example_to_row(example)
    row["id"] = str(example.id) if example.id is not None else f"ex{index:06d}"
    row.setdefault("metadata", {})
    return row


def to_example(row: dict[str, Any], output: Any = None) -> Example:
    """An Example from a bench row (NER spans from dicts); `output` overrides the row's answer."""
    from engine.records import Span

    out = row["output"] if output is None else output
    if isinstance(out, list):
        out = tuple(Span(s["start"], s["end"], s["label"]) for s in out)
    return Example(row["input"], out, id=row["id"])
