"""Quality controls enforced on every dataset version, with a report the Reviewer reads.

Rows are curriculum rows: {input, output, slice, source, cluster}; output is a label, a list of
{start, end, label} spans (NER) or text. Controls, in order:
1. leakage: no row whose normalised input hashes like an evaluation / regression example (dropped);
2. exact duplicates (same normalised input; a conflicting output is reported, the first kept);
3. near duplicates: Jaccard >= 0.8 on word shingles with the same output (MinHash + LSH, so 10k rows
   stay fast). Near-duplicates with *different* outputs are kept: they are contrastive pairs, the
   whole point of hard negatives;
4. NER surface forms repeated at most 3 times;
5. no label above 3x another (the majority is downsampled);
then reported: length distance to the failing inputs, and 3-5 surface patterns per label.

Rows are kept in slice priority (gold, hard_negative, replay): duplicates resolve to the gold row,
and the caps drop replay first. Gold corrections are the failures being fixed, so by default the caps
(4, 5) never drop them; a violation that only gold could fix is reported instead.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.tasks import task_type

SLICE_PRIORITY = {"gold": 0, "hard_negative": 1, "replay": 2}
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation removed, whitespace collapsed: 'What's up?' == 'whats up'."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub("", text).split())


def input_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def _spans(output: Any) -> list[Mapping[str, Any]]:
    return [s for s in output if isinstance(s, Mapping)] if isinstance(output, list | tuple) else []


def _output_key(output: Any) -> str:
    if isinstance(output, list | tuple):
        return repr(sorted((int(s["start"]), int(s["end"]), str(s["label"])) for s in _spans(output)))
    return " ".join(str(output).split())


def row_label(row: Mapping[str, Any], task: str) -> str | None:
    """The label a row counts toward: its class; for NER its most frequent entity type (None for
    rows without entities or generation rows, which no label ratio applies to)."""
    out = row.get("output")
    if isinstance(out, list | tuple):
        counts = Counter(str(s["label"]) for s in _spans(out))
        return min(counts, key=lambda lab: (-counts[lab], lab)) if counts else None
    return str(out) if task_type(task).single_label else None


def surface_pattern(text: str) -> str:
    """A coarse template of an input: sentence type, its opening two words, and a length bucket."""
    words = normalise(text).split()
    qtype = "q" if text.rstrip().endswith("?") or (words and words[0] in _QWORDS) else "s"
    size = "short" if len(words) <= 5 else "medium" if len(words) <= 12 else "long"
    return f"{qtype}:{' '.join(words[:2])}:{size}"


_QWORDS = {"what", "how", "why", "when", "where", "who", "which", "can", "could", "is", "are", "do", "does",
           "will", "would", "should", "whats", "hows"}


@dataclass(frozen=True)
class QCConfig:
    max_label_ratio: float = 3.0
    max_surface_repeats: int = 3
    patterns_per_label: tuple[int, int] = (3, 5)
    near_dup_jaccard: float = 0.8
    shingle_size: int = 2
    protect_slices: tuple[str, ...] = ("gold",)  # the caps never drop these
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_label_ratio < 1 or self.max_surface_repeats < 1 or not 0 < self.near_dup_jaccard <= 1:
            raise ValueError("QCConfig: max_label_ratio >= 1, max_surface_repeats >= 1, near_dup_jaccard in (0, 1]")


@dataclass
class QCReport:
    task: str
    n_in: int
    n_out: int
    leakage: dict[str, int] = field(default_factory=dict)
    leaked: list[str] = field(default_factory=list)
    exact_duplicates: int = 0
    conflicts: int = 0
    near_duplicates: int = 0
    contrastive_pairs: int = 0
    surface_repeats: dict[str, Any] = field(default_factory=dict)
    label_ratio: dict[str, Any] = field(default_factory=dict)
    patterns: dict[str, Any] = field(default_factory=dict)
    length: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_quality_controls(rows: Sequence[Mapping[str, Any]], task: str, *,
                         target_inputs: Sequence[str] = (),
                         protected: Mapping[str, Iterable[str]] | None = None,
                         config: QCConfig | None = None) -> tuple[list[dict[str, Any]], QCReport]:
    """Apply every control; returns the kept rows (original order) and the report.

    `protected` maps a set name (e.g. 'regression', 'eval') to its inputs; `target_inputs` are the
    failing inputs whose length distribution the training inputs should match."""
    config = config or QCConfig()
    report = QCReport(task=task, n_in=len(rows), n_out=0)
    items = [{**r, "_i": i, "_task": task} for i, r in enumerate(rows)]
    for r in items:
        if not isinstance(r.get("input"), str):
            raise ValueError(f"dataset row {r['_i']}: field input must be text")
    items.sort(key=lambda r: (SLICE_PRIORITY.get(r.get("slice"), 3), r["_i"]))
    dropped: Counter = Counter()

    hashes = {r["_i"]: input_hash(r["input"]) for r in items}
    leaked_by: dict[str, str] = {}
    for name, inputs in sorted((protected or {}).items()):
        for h in {input_hash(x) for x in inputs}:
            leaked_by.setdefault(h, name)
    kept = []
    for r in items:
        name = leaked_by.get(hashes[r["_i"]])
        if name is None:
            kept.append(r)
        else:
            report.leakage[name] = report.leakage.get(name, 0) + 1
            report.leaked.append(str(r.get("source") or r["_i"]))
            dropped["leakage"] += 1
    items = kept

    first: dict[str, dict] = {}
    kept = []
    for r in items:
        other = first.get(hashes[r["_i"]])
        if other is None:
            first[hashes[r["_i"]]] = r
            kept.append(r)
        else:
            report.exact_duplicates += 1
            report.conflicts += _output_key(other["output"]) != _output_key(r["output"])
            dropped["exact_duplicate"] += 1
    items = kept

    items, report.near_duplicates, report.contrastive_pairs = _drop_near_duplicates(items, config)
    dropped["near_duplicate"] += report.near_duplicates

    if task_type(task).spans:
        items, report.surface_repeats = _cap_surface_forms(items, config)
        dropped["surface_repeat"] += report.surface_repeats["dropped"]
    if task_type(task).labelled:
        items, report.label_ratio = _cap_label_ratio(items, config)
        dropped["label_ratio"] += sum(report.label_ratio["downsampled"].values())
    report.patterns = _pattern_report(items, config)
    report.length = length_distance([r["input"] for r in items], target_inputs)
    report.dropped = {k: v for k, v in sorted(dropped.items()) if v}
    items.sort(key=lambda r: r["_i"])
    out = [{k: v for k, v in r.items() if not k.startswith("_")} for r in items]
    report.n_out = len(out)
    return out, report


# -- near duplicates ---------------------------------------------------------------------------

_PRIME = np.uint64(4294967311)


def _shingles(text: str, n: int) -> set[str]:
    words = normalise(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def _minhash(shingles: set[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not shingles:
        return np.full(len(a), np.iinfo(np.uint64).max, dtype=np.uint64)
    h = np.array([zlib.crc32(s.encode("utf-8")) for s in shingles], dtype=np.uint64)
    return ((np.outer(h, a) + b) % _PRIME).min(axis=0)


def _drop_near_duplicates(items: list[dict], config: QCConfig, bands: int = 32, rows: int = 4):
    """MinHash signatures banded for LSH (32 x 4: pairs at Jaccard 0.8 collide with p > 0.999);
    candidates are then verified with the exact Jaccard."""
    rng = np.random.default_rng(config.seed)
    n_perm = bands * rows
    a = rng.integers(1, 2**32 - 1, size=n_perm, dtype=np.uint64)
    b = rng.integers(0, 2**32 - 1, size=n_perm, dtype=np.uint64)
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    kept, shingle_of, removed, contrastive = [], [], 0, 0
    for r in items:
        sh = _shingles(r["input"], config.shingle_size)
        sig = _minhash(sh, a, b)
        keys = [(band, sig[band * rows:(band + 1) * rows].tobytes()) for band in range(bands)]
        candidates = {j for key in keys for j in buckets.get(key, ())}
        duplicate = False
        for j in sorted(candidates):
            other = shingle_of[j]
            union = len(sh | other)
            if union and len(sh & other) / union >= config.near_dup_jaccard:
                if _output_key(kept[j]["output"]) == _output_key(r["output"]):
                    duplicate = True
                    break
                contrastive += 1
        if duplicate:
            removed += 1
            continue
        for key in keys:
            buckets[key].append(len(kept))
        kept.append(r)
        shingle_of.append(sh)
    return kept, removed, contrastive


# -- caps --------------------------------------------------------------------------------------

def _cap_surface_forms(items: list[dict], config: QCConfig) -> tuple[list[dict], dict]:
    """Keep a row only while each (entity text, type) it carries has been seen < cap times."""
    seen: Counter = Counter()
    kept, dropped = [], 0
    for r in items:
        forms = [(normalise(r["input"][int(s["start"]):int(s["end"])]), str(s["label"])) for s in _spans(r["output"])]
        over = any(seen[f] >= config.max_surface_repeats for f in forms)
        if over and r.get("slice") not in config.protect_slices:
            dropped += 1
            continue
        seen.update(forms)
        kept.append(r)
    over_cap = {f"{text} ({lab})": n for (text, lab), n in seen.most_common() if n > config.max_surface_repeats}
    return kept, {"cap": config.max_surface_repeats, "dropped": dropped, "over_cap_protected": over_cap}


def _cap_label_ratio(items: list[dict], config: QCConfig) -> tuple[list[dict], dict]:
    """Downsample every label above max_ratio x the rarest one, dropping the lowest-priority slice
    first (random within a slice, seeded)."""
    before = Counter(lab for r in items if (lab := row_label(r, r["_task"])) is not None)
    if len(before) < 2:
        return items, {"max_ratio": config.max_label_ratio, "before": dict(before), "after": dict(before),
                       "downsampled": {}, "violations": []}
    cap = int(config.max_label_ratio * min(before.values()))
    rng = random.Random(config.seed)
    drop: set[int] = set()
    downsampled = {}
    for lab, n in sorted(before.items()):
        if n <= cap:
            continue
        rows = [r for r in items if row_label(r, r["_task"]) == lab and r.get("slice") not in config.protect_slices]
        by_slice = defaultdict(list)
        for r in rows:
            by_slice[SLICE_PRIORITY.get(r.get("slice"), 3)].append(r)
        need = n - cap
        for prio in sorted(by_slice, reverse=True):
            group = by_slice[prio]
            take = rng.sample(group, min(need, len(group)))
            drop.update(r["_i"] for r in take)
            need -= len(take)
            if need == 0:
                break
        if n - cap - need:
            downsampled[lab] = n - cap - need
    kept = [r for r in items if r["_i"] not in drop]
    after = Counter(lab for r in kept if (lab := row_label(r, r["_task"])) is not None)
    floor = min(after.values())
    violations = [{"label": lab, "count": n, "rarest": floor, "why": "only protected rows remain above the cap"}
                  for lab, n in sorted(after.items()) if n > config.max_label_ratio * floor]
    return kept, {"max_ratio": config.max_label_ratio, "before": dict(sorted(before.items())),
                  "after": dict(sorted(after.items())), "downsampled": downsampled, "violations": violations}


# -- reports -----------------------------------------------------------------------------------

def _pattern_report(items: list[dict], config: QCConfig) -> dict[str, Any]:
    patterns: dict[str, set[str]] = defaultdict(set)
    for r in items:
        kind = task_type(r["_task"])
        labels = set(kind.labels(kind.parse(r["output"], "curriculum row"))) or {"all"}
        for lab in labels:
            patterns[lab].add(surface_pattern(r["input"]))
    lo, hi = config.patterns_per_label
    counts = {lab: len(p) for lab, p in sorted(patterns.items())}
    return {"range": [lo, hi], "per_label": counts,
            "below": sorted(lab for lab, n in counts.items() if n < lo),
            "above": sorted(lab for lab, n in counts.items() if n > hi)}


def length_distance(train_inputs: Sequence[str], target_inputs: Sequence[str]) -> dict[str, Any]:
    """How far the training inputs' token-count distribution is from the failing inputs':
    Wasserstein-1 (in tokens) and the two-sample KS statistic."""
    if not train_inputs or not target_inputs:
        return {"wasserstein": None, "ks": None, "train_mean": None, "target_mean": None,
                "n_target": len(target_inputs)}
    from scipy.stats import ks_2samp, wasserstein_distance

    a = np.array([len(t.split()) for t in train_inputs], dtype=float)
    b = np.array([len(t.split()) for t in target_inputs], dtype=float)
    return {"wasserstein": round(float(wasserstein_distance(a, b)), 4),
            "ks": round(float(ks_2samp(a, b).statistic), 4),
            "train_mean": round(float(a.mean()), 2), "target_mean": round(float(b.mean()), 2),
            "n_target": len(b)}


def qc_checks(report: QCReport, config: QCConfig) -> dict[str, Any]:
    """The quality-control report as pass/fail checks (what the Reviewer and the curation log show)."""
    after = (report.label_ratio or {}).get("after") or {}
    ratio = max(after.values()) / min(after.values()) if len(after) >= 2 and min(after.values()) else 1.0
    patterns = report.patterns or {}
    counts = list((patterns.get("per_label") or {}).values())
    checks = [
        {"name": "leakage", "passed": True, "value": 0, "limit": 0, "dropped": sum(report.leakage.values())},
        {"name": "exact_duplicates", "passed": True, "value": 0, "limit": 0, "dropped": report.exact_duplicates,
         "conflicts": report.conflicts},
        {"name": "near_duplicates", "passed": True, "value": 0, "limit": 0, "dropped": report.near_duplicates,
         "jaccard": config.near_dup_jaccard, "contrastive_pairs": report.contrastive_pairs},
        {"name": "label_ratio", "passed": not (report.label_ratio or {}).get("violations"), "value": round(ratio, 3),
         "limit": config.max_label_ratio},
        {"name": "patterns_per_label", "passed": not patterns.get("below") and not patterns.get("above"),
         "value": f"{min(counts)}-{max(counts)}" if counts else "—",
         "limit": f"{config.patterns_per_label[0]}-{config.patterns_per_label[1]}"},
    ]
    if report.surface_repeats:
        worst = max(report.surface_repeats.get("over_cap_protected", {}).values(), default=0)
        checks.append({"name": "surface_repeats", "passed": not worst, "value": worst or "—",
                       "limit": config.max_surface_repeats, "dropped": report.surface_repeats.get("dropped", 0)})
    return {"checks": checks, "length_distance": report.length, "rows": f"{report.n_out} of {report.n_in} kept",
            "dropped": report.dropped}
