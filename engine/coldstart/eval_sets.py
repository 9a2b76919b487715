"""The held-out evaluation set E, built before any training and never trained on.

E comes from the source's validation split when it has one, else from a seeded stratified share
of the data. Every training pool row whose normalised input hashes like an item of E is removed
(E wins), and each node's curriculum is checked against E's hashes before it trains, so nothing in
E is ever trained on. E is tagged into three subsets:

- E_pos: items with something to find, covering every label / entity type;
- E_neg: inputs that should fire nothing (the 'nothing applies' class, sentences without entities);
  for generation, adversarial inputs: held-out questions wrapped in label-preserving perturbations
  (preambles, format instructions, repetitions) whose answer is unchanged;
- E_boundary: confusable pairs, the most similar pairs of E items (by embedding) with different
  answers, both members kept.

E's content hash is recorded when it is built; `check_unchanged` and `check_disjoint` are the
guards the runner applies before every train step.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.coldstart.analysis import TaskAnalysis
from engine.coldstart.registry import LoadedData
from engine.data.perturb import DEFAULT_RATES, perturb_examples
from engine.data.quality import input_hash
from engine.diagnosis.embedders import Embedder
from engine.diagnosis.eval_sets import allocate
from engine.errors import LeakageError
from engine.eval import metrics as m
from engine.records import Example
from engine.tasks import TaskType, task_type
from store.artifacts import content_hash

SUBSETS = ("pos", "neg", "boundary")
# Label-preserving perturbations used as adversarial generation inputs (engine.data.perturb types).
ADVERSARIAL_RATES = {"preamble_injection": 0.5, "instruction_following_attempts": 0.4,
                     "intra_input_duplication": 0.2, "missing_modality_reference": 0.15, "very_long_inputs": 0.1}


@dataclass(frozen=True)
class HeldOutItem:
    id: str
    input: str
    expected: Any            # JSON form: a label, [{start, end, label}] or text
    subset: str              # pos | neg | boundary
    stratum: str             # label, most frequent entity type ('none'), or 'all'
    reference: Any = None    # what the metric compares with when it is not `expected` (HumanEval task id)
    partner: str | None = None
    similarity: float | None = None
    source: str | None = None  # the perturbations of an adversarial item, or the item it was made from


@dataclass
class HeldOutSet:
    task: str
    metric: str
    items: list[HeldOutItem]
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, name: str) -> list[HeldOutItem]:
        return [i for i in self.items if i.subset == name]

    def inputs(self) -> list[str]:
        return [i.input for i in self.items]

    def input_hashes(self) -> set[str]:
        return {input_hash(i.input) for i in self.items}

    def content_hash(self) -> str:
        """Identity of E: its items (ids, inputs, answers, subsets) in order."""
        return content_hash(json.dumps([asdict(i) for i in self.items], sort_keys=True, ensure_ascii=False,
                                       default=str))

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "items": [asdict(i) for i in self.items],
                "report": self.report}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HeldOutSet:
        return cls(raw["task"], raw["metric"], [HeldOutItem(**i) for i in raw["items"]], dict(raw.get("report") or {}))


# ---------------------------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------------------------

def _stratum(example: Example, task: str) -> str:
    return task_type(task).stratum(example.output)


def stratified_sample(examples: Sequence[Example], n: int, task: str, seed: int) -> list[Example]:
    """n examples allocated to strata in proportion (at least one per stratum when n allows)."""
    if n >= len(examples):
        return list(examples)
    strata: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        strata[_stratum(ex, task)].append(ex)
    rng = random.Random(seed)
    keys = sorted(strata)
    for k in keys:
        rng.shuffle(strata[k])
    alloc = allocate(n, {k: len(strata[k]) for k in keys})
    chosen = [ex for k in keys for ex in strata[k][: alloc.get(k, 0)]]
    order = {id(ex): i for i, ex in enumerate(examples)}
    return sorted(chosen, key=lambda ex: order[id(ex)])


def split_held_out(data: LoadedData, analysis: TaskAnalysis, *, fraction: float = 0.2, max_items: int | None = None,
                   seed: int = 0) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """(training pool, held-out examples, how): the validation split when the source has one, else a
    seeded stratified `fraction` of the data; pool rows that duplicate a held-out input are dropped."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"eval fraction {fraction} must be in (0, 1)")
    task = analysis.task
    if data.splits.get("validation"):
        pool, source = list(data.train), "the source's validation split"
        held = list(data.splits["validation"])
    else:
        train = list(data.train)
        held = stratified_sample(train, max(1, round(len(train) * fraction)), task, seed)
        chosen = {id(ex) for ex in held}
        pool = [ex for ex in train if id(ex) not in chosen]
        source = f"a stratified {fraction:.0%} of the data (seed {seed})"
    if max_items is not None and len(held) > max_items:
        held = stratified_sample(held, max_items, task, seed)
        source += f", sampled to {max_items}"
    unique: dict[str, Example] = {}
    for ex in held:
        unique.setdefault(input_hash(ex.input), ex)
    held = list(unique.values())
    blocked = set(unique)
    kept = [ex for ex in pool if input_hash(ex.input) not in blocked]
    info = {"source": source, "held_out": len(held), "pool": len(kept),
            "pool_duplicates_removed": len(pool) - len(kept), "test": len(data.splits.get("test") or [])}
    if not kept:
        raise ValueError("no training data left after holding out the evaluation set: provide more examples")
    return kept, held, info


# ---------------------------------------------------------------------------------------------
# Building E
# ---------------------------------------------------------------------------------------------

def _answer_key(expected: Any, task: str) -> Any:
    """What makes two answers different for confusable pairs: the entity types of span answers, else
    the whitespace-normalised answer."""
    if task_type(task).spans:
        return frozenset(s["label"] for s in expected)
    return " ".join(str(expected).split())


def _is_negative(example: Example, analysis: TaskAnalysis) -> bool:
    """Nothing to find: no spans, or the single label that means 'nothing applies'."""
    kind = task_type(analysis.task)
    if kind.spans:
        return not example.output
    return kind.single_label and analysis.negative_label is not None \
        and example.output == analysis.negative_label


def confusable_pairs(vectors: np.ndarray, keys: Sequence[Any], n_items: int,
                     blocked: Iterable[int] = ()) -> list[tuple[int, int, float]]:
    """Disjoint pairs (i, j, cosine) of the most similar items with different answers, greedily, until
    `n_items` items are paired. `blocked` items are never paired."""
    if n_items < 2 or len(keys) < 2:
        return []
    sims = vectors @ vectors.T
    key_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    codes = np.array([key_ids[k] for k in keys])
    sims[codes[:, None] == codes[None, :]] = -np.inf
    for b in blocked:
        sims[b, :] = -np.inf
        sims[:, b] = -np.inf
    best = sims.argmax(axis=1)
    order = sorted(range(len(keys)), key=lambda i: (-float(sims[i, best[i]]), i))
    taken: set[int] = set()
    pairs = []
    for i in order:
        if len(taken) + 2 > n_items:
            break
        if i in taken or not np.isfinite(sims[i, best[i]]):
            continue
        row = np.where(np.isin(np.arange(len(keys)), list(taken)), -np.inf, sims[i])
        j = int(row.argmax())
        if not np.isfinite(row[j]):
            continue
        pairs.append((i, j, float(row[j])))
        taken.update((i, j))
    return pairs


def _coverage_guard(held: Sequence[Example], task: str) -> list[int]:
    """Per label, one item that must stay in E_pos (so E_pos covers every label)."""
    first: dict[str, int] = {}
    for i, ex in enumerate(held):
        for lab in task_type(task).labels(ex.output):
            first.setdefault(str(lab), i)
    return sorted(set(first.values()))


def build_held_out_set(held: Sequence[Example], analysis: TaskAnalysis, *, embedder: Embedder | None = None,
                       seed: int = 0, boundary_share: float = 0.15, adversarial: int | None = None,
                       references: Mapping[str, Any] | None = None, labels: Sequence[str] = ()) -> HeldOutSet:
    """Tag the held-out examples into E_pos / E_neg / E_boundary (adding adversarial generation
    items) and report sizes and coverage."""
    task, refs = analysis.task, dict(references or {})
    if not 0.0 <= boundary_share <= 0.5:
        raise ValueError(f"boundary_share {boundary_share} must be in [0, 0.5]")
    expected = [task_type(task).to_json(ex.output) for ex in held]
    negative = [_is_negative(ex, analysis) for ex in held]
    guard = [i for i in _coverage_guard(held, task) if not negative[i]]
    pairs: list[tuple[int, int, float]] = []
    if embedder is not None and boundary_share > 0 and len(held) >= 4:
        vectors = np.asarray(embedder.embed([ex.input for ex in held]), dtype=np.float32)
        pairs = confusable_pairs(vectors, [_answer_key(e, task) for e in expected],
                                 round(boundary_share * len(held)), blocked=guard)
    partner: dict[int, tuple[int, float]] = {}
    for i, j, sim in pairs:
        partner[i], partner[j] = (j, sim), (i, sim)
    ids = [str(ex.id) if ex.id is not None else f"held:{n}" for n, ex in enumerate(held)]
    items = []
    for n, ex in enumerate(held):
        if n in partner:
            subset, (p, sim) = "boundary", partner[n]
            items.append(HeldOutItem(ids[n], ex.input, expected[n], subset, _stratum(ex, task), refs.get(ids[n]),
                                     ids[p], round(sim, 4)))
            continue
        items.append(HeldOutItem(ids[n], ex.input, expected[n], "neg" if negative[n] else "pos", _stratum(ex, task),
                                 refs.get(ids[n])))
    adversarial_items = _adversarial(held, ids, analysis, refs, seed, adversarial) \
        if task_type(task).generative else []
    items += adversarial_items
    result = HeldOutSet(task, analysis.metric, items)
    result.report = coverage_report(result, labels or analysis.labels, analysis, pairs_mined=len(pairs))
    return result


def _adversarial(held: Sequence[Example], ids: list[str], analysis: TaskAnalysis, refs: Mapping[str, Any],
                 seed: int, limit: int | None) -> list[HeldOutItem]:
    """Held-out questions wrapped in label-preserving perturbations: the answer must not change."""
    if analysis.metric == "pass@1":
        return []
    rates = {name: 0.0 for name in DEFAULT_RATES} | ADVERSARIAL_RATES
    n = len(held) if limit is None else min(limit, len(held))
    picked = random.Random(seed).sample(range(len(held)), n)
    rows = perturb_examples([{"input": held[i].input, "output": held[i].output} for i in picked], seed=seed,
                            task=analysis.task, rates=rates)
    if len(rows) != len(picked):  # only per-sample types are enabled: one row per source, in order
        raise RuntimeError(f"adversarial rewriting returned {len(rows)} rows for {len(picked)} items")
    items, seen = [], {input_hash(ex.input) for ex in held}
    for i, row in zip(picked, rows, strict=True):
        meta = row.get("metadata") or {}
        kinds = [p["type"] for p in meta.get("perturbations") or []]
        if not kinds or not meta.get("label_valid") or row.get("output") is None:
            continue
        h = input_hash(row["input"])
        if h in seen:
            continue
        seen.add(h)
        items.append(HeldOutItem(f"adv:{ids[i]}", row["input"], row["output"], "neg", "all", refs.get(ids[i]),
                                 source=f"{ids[i]} + {'+'.join(kinds)}"))
    return items


def coverage_report(eval_set: HeldOutSet, labels: Sequence[str], analysis: TaskAnalysis,
                    pairs_mined: int = 0) -> dict[str, Any]:
    """Sizes of E_pos / E_neg / E_boundary and which labels E_pos covers."""
    sizes = Counter(i.subset for i in eval_set.items)
    kind = task_type(eval_set.task)
    pos_labels: Counter = Counter()
    for item in eval_set.subset("pos"):
        if kind.single_label:
            pos_labels[str(item.expected)] += 1
        elif kind.spans:
            pos_labels.update(s["label"] for s in item.expected)
    wanted = [lab for lab in labels if lab != analysis.negative_label]
    missing = [lab for lab in wanted if pos_labels[lab] == 0]
    sims = [i.similarity for i in eval_set.subset("boundary") if i.similarity is not None]
    neg_kind = _negative_kind(kind, analysis)
    return {
        "size": len(eval_set.items), "pos": sizes.get("pos", 0), "neg": sizes.get("neg", 0),
        "boundary": sizes.get("boundary", 0), "boundary_pairs": pairs_mined,
        "boundary_mean_similarity": round(float(np.mean(sims)), 4) if sims else None,
        "neg_kind": neg_kind, "labels": len(wanted), "pos_covers": len(wanted) - len(missing),
        "missing_labels": missing, "content_hash": eval_set.content_hash(),
    }


def _negative_kind(kind: TaskType, analysis: TaskAnalysis) -> str:
    """What E_neg holds for this task type (see the module docstring)."""
    if kind.spans:
        return "sentences without entities"
    if kind.single_label:
        return f"class {analysis.negative_label!r}" if analysis.negative_label else \
            "no 'nothing applies' class in the label set"
    return "adversarial rewrites of held-out questions (answer unchanged)"


def report_markdown(report: Mapping[str, Any], split: Mapping[str, Any]) -> str:
    missing = report.get("missing_labels") or []
    cover = (f"covers {report['pos_covers']}/{report['labels']} labels" + (f", missing: {', '.join(missing[:10])}"
                                                                           if missing else "")
             if report["labels"] else "free-form answers, no label set")
    return (f"- built from {split.get('source')} before any training: {report['size']} items, content hash "
            f"`{str(report['content_hash'])[:16]}`\n"
            f"- E_pos {report['pos']} ({cover}), E_neg {report['neg']} ({report['neg_kind']}), "
            f"E_boundary {report['boundary']} ({report['boundary_pairs']} confusable pairs"
            + (f", mean cosine {report['boundary_mean_similarity']}" if report.get("boundary_mean_similarity")
               is not None else "") + ")\n"
            f"- training pool {split.get('pool')} rows ({split.get('pool_duplicates_removed', 0)} duplicates of "
            "held-out inputs removed); every curriculum is checked against E by input hash before training")


# ---------------------------------------------------------------------------------------------
# Guards
# ---------------------------------------------------------------------------------------------

def check_disjoint(eval_set: HeldOutSet, rows: Iterable[Mapping[str, Any]], where: str = "curriculum") -> None:
    """Raise LeakageError naming the first training row whose normalised input is in E."""
    held = eval_set.input_hashes()
    for n, row in enumerate(rows):
        if input_hash(str(row.get("input", ""))) in held:
            raise LeakageError(f"{where} row {n} (id {row.get('id') or row.get('source') or '?'}) is an item of the "
                               "held-out evaluation set: E is never trained on; remove the row")


def check_unchanged(eval_set: HeldOutSet, recorded_hash: str) -> None:
    if eval_set.content_hash() != recorded_hash:
        raise LeakageError(f"the held-out evaluation set changed since it was built (hash {recorded_hash[:16]} -> "
                           f"{eval_set.content_hash()[:16]}): a run must score every node on the same E")


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------

@dataclass
class HeldOutScore:
    score: float
    metrics: dict[str, Any]
    outputs: list[Any]
    correct: list[bool]


def normalise_output(output: Any, analysis: TaskAnalysis) -> Any:
    """A prediction in the form the metric compares: a label (case-insensitive match for text from a
    decoder), spans, or the answer after the last '####' of a worked solution."""
    kind = task_type(analysis.task)
    if kind.spans:
        return output if output is not None else ()
    if output is None:
        return None
    text = str(output)
    if kind.single_label:
        stripped = text.strip()
        lowered = {lab.lower(): lab for lab in analysis.labels}
        return lowered.get(stripped.lower().rstrip("."), stripped)
    if "####" in text and analysis.metric != "pass@1":
        return text.rsplit("####", 1)[1].strip()
    return text


def score_held_out(eval_set: HeldOutSet, outputs: Sequence[Any], analysis: TaskAnalysis) -> HeldOutScore:
    """The analysis metric over all of E, plus the share right in each subset."""
    if len(outputs) != len(eval_set.items):
        raise ValueError(f"{len(outputs)} outputs for {len(eval_set.items)} held-out items")
    task, metric = eval_set.task, eval_set.metric
    preds = [normalise_output(o, analysis) for o in outputs]
    expected = [i.reference if metric == "pass@1" else i.expected for i in eval_set.items]
    result = m.score(task, metric, expected, preds)
    if metric == "pass@1":
        correct = [r.passed for r in result.details.results]
    else:
        correct = [m.example_correct(task, metric, e, p) for e, p in zip(expected, preds, strict=True)]
    metrics: dict[str, Any] = {metric: round(result.value, 6), "n": len(preds)}
    for name in SUBSETS:
        flags = [c for c, i in zip(correct, eval_set.items, strict=True) if i.subset == name]
        if flags:
            metrics[f"E_{name}.accuracy"] = round(sum(flags) / len(flags), 6)
            metrics[f"E_{name}.n"] = len(flags)
    if task_type(task).single_label:
        report = result.details if metric.startswith("f1:") or metric in ("accuracy", "macro_f1", "micro_f1") \
            else m.classification_report(expected, preds)
        metrics["accuracy"] = round(report.accuracy, 6)
        metrics["macro_f1"] = round(report.macro_f1, 6)
        if analysis.positive_label is not None:
            scores = report.per_label.get(analysis.positive_label)
            if scores is not None:
                metrics[f"precision:{analysis.positive_label}"] = round(scores.precision, 6)
                metrics[f"recall:{analysis.positive_label}"] = round(scores.recall, 6)
    return HeldOutScore(float(result.value), metrics, preds, correct)
