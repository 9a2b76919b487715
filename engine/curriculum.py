"""The production curriculum D_post = gold corrections + hard negatives + replay.

- gold: the corrected failing traces of each fixable cluster (plus failing probes);
- hard negatives by the 2-for-1 rule: for a gold example at a boundary, up to two similar inputs
  whose right answer differs, mined by embedding similarity from the trace and training pools across
  the cluster's confusion (for classification: inputs labelled as what the model wrongly said);
  a teacher-LLM synthesiser hook fills a shortfall when one is configured;
- replay: a label-stratified sample of the replay pool (D_parent, and in production the verified
  passes outside the protected evaluation sets), 10-20% of it, so retraining from the base keeps what
  the parent learnt. With `replay_all` the whole pool is replayed: every candidate is retrained from
  the base, and a 10-20% sample of a few hundred rows is too little to keep the parent's competence
  (measured on the demo: 7-18 regressions per candidate with the sample, see
  scripts/bench_production.py). The gold and hard-negative bands then apply to the new data (gold +
  hard negatives), since replay is no longer a share of D_post.

The gold:hard ratio is set per cluster inside the design's bands (gold 40-60%, hard 25-35%):
recall-dominated clusters get more gold, precision-dominated ones (false positives, label
confusion) more hard negatives. Cold start uses ~65:35 and no replay.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.data.quality import input_hash
from engine.diagnosis.embedders import Embedder, fitted_tfidf
from engine.diagnosis.taxonomy import FailureCluster, Taxonomy
from engine.diagnosis.traces import LabelledText, Trace
from engine.errors import ConfigError
from engine.records import Example
from engine.tasks import task_type

SLICES = ("gold", "hard_negative", "replay")

# A teacher LLM: (gold row, how many, cluster) -> rows {input, output} whose answer differs from gold's.
HardNegativeSynth = Callable[[dict, int, FailureCluster], Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class CurriculumConfig:
    mode: str = "production"  # production | cold_start
    gold_band: tuple[float, float] = (0.40, 0.60)
    hard_band: tuple[float, float] = (0.25, 0.35)
    replay_band: tuple[float, float] = (0.10, 0.20)  # fraction of |D_parent|
    replay_share: float = 0.15  # preferred share of D_post, clamped into replay_band x |D_parent|
    replay_all: bool = False  # production: replay the whole pool instead of the replay band
    balance: bool = False  # with replay_all: weight the slices so the composition holds as loss shares
    cold_start_ratio: tuple[float, float] = (0.65, 0.35)  # gold : hard
    hard_per_gold: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.mode in ("production", "cold_start"), "mode", "production or cold_start"),
            (0 < self.gold_band[0] <= self.gold_band[1] < 1, "gold_band", "0 < low <= high < 1"),
            (0 < self.hard_band[0] <= self.hard_band[1] < 1, "hard_band", "0 < low <= high < 1"),
            (0 <= self.replay_band[0] <= self.replay_band[1] <= 1, "replay_band", "0 <= low <= high <= 1"),
            (0 <= self.replay_share < 1, "replay_share", "in [0, 1)"),
            (self.hard_per_gold >= 0, "hard_per_gold", "an integer >= 0"),
            (abs(sum(self.cold_start_ratio) - 1) < 1e-6, "cold_start_ratio", "two shares summing to 1"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"CurriculumConfig.{name}={getattr(self, name)!r} is invalid: use {expected}")


def cluster_ratio(cluster: FailureCluster, config: CurriculumConfig) -> tuple[float, float]:
    """(gold share, hard share) of D_post for this cluster: the hard share moves across its band with
    the cluster's precision share; gold takes what replay leaves, kept inside its band."""
    if config.mode == "cold_start":
        return config.cold_start_ratio
    p = min(1.0, max(0.0, cluster.precision_share))
    hard = config.hard_band[0] + (config.hard_band[1] - config.hard_band[0]) * p
    gold = min(config.gold_band[1], max(config.gold_band[0], 1.0 - config.replay_share - hard))
    return gold, hard


@dataclass(frozen=True)
class _Gold:
    input: str
    output: Any
    source: str
    prediction: Any


@dataclass
class Curriculum:
    task: str
    rows: list[dict[str, Any]]
    per_cluster: dict[str, dict[str, Any]]
    replay: dict[str, Any]
    skipped: dict[str, Any]
    config: CurriculumConfig
    parent_size: int = 0
    notes: list[str] = field(default_factory=list)

    def composition(self) -> dict[str, int]:
        counts = Counter(r["slice"] for r in self.rows)
        return {s: counts.get(s, 0) for s in SLICES}

    def shares(self) -> dict[str, float]:
        total = len(self.rows) or 1
        return {s: round(n / total, 4) for s, n in self.composition().items()}

    def bands(self) -> dict[str, dict[str, Any]]:
        """Each slice's share against its band — the Reviewer's check. Gold and hard negatives are shares
        of D_post and replay a share of the replay pool. When the whole pool is replayed, `replay_coverage`
        says how much of it survived the quality controls (rows mined as hard negatives count as covered),
        and the slices are shares of the loss when they are balanced (slice_weights: the composition holds
        by construction), else row shares with no band to meet (the pool's size sets them)."""
        comp, cfg = self.composition(), self.config
        if full_replay(self.parent_size, cfg):
            return self._whole_pool_bands(comp)
        out = {part: {"value": round(comp[part] / len(self.rows), 4) if self.rows else 0.0, "band": list(band),
                      "of": "D_post"}
               for part, band in (("gold", cfg.gold_band), ("hard_negative", cfg.hard_band))}
        if cfg.mode == "cold_start":
            out["gold"]["band"] = out["hard_negative"]["band"] = None
        if cfg.mode == "production":
            frac = comp["replay"] / self.parent_size if self.parent_size else None
            out["replay"] = {"value": None if frac is None else round(frac, 4), "band": list(cfg.replay_band),
                             "of": "replay pool"}
        for v in out.values():
            v["ok"] = v["band"] is None or (v["value"] is not None and v["band"][0] - 1e-9 <= v["value"] <= v["band"][1] + 1e-9)
        return out

    def _whole_pool_bands(self, comp: dict[str, int]) -> dict[str, dict[str, Any]]:
        cfg = self.config
        bands = {"gold": list(cfg.gold_band), "hard_negative": list(cfg.hard_band),
                 "replay": [round(max(0.0, cfg.replay_share - 0.05), 4), round(cfg.replay_share + 0.05, 4)]}
        if cfg.balance:
            shares = loss_shares(comp, {part: (band[0] + band[1]) / 2 for part, band in bands.items()})
            out: dict[str, dict[str, Any]] = {part: {"value": round(shares.get(part, 0.0), 4), "band": band,
                                                     "of": "loss"} for part, band in bands.items()}
        else:
            total = sum(comp.values()) or 1
            out = {part: {"value": round(comp[part] / total, 4), "band": None, "of": "D_post"} for part in bands}
        covered = comp["replay"] + self.replay.get("pool_as_hard_negatives", 0)
        pool = self.replay.get("replayable", self.parent_size)
        out["replay_coverage"] = {"value": round(covered / pool, 4) if pool else None, "band": [0.9, 1.0],
                                  "of": "replay pool"}
        for v in out.values():
            v["ok"] = v["band"] is None or (v["value"] is not None
                                            and v["band"][0] - 1e-9 <= v["value"] <= v["band"][1] + 1e-9)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "composition": self.composition(), "shares": self.shares(), "bands": self.bands(),
                "per_cluster": self.per_cluster, "replay": self.replay, "skipped": self.skipped,
                "notes": self.notes, "config": asdict(self.config)}


def build_curriculum(
    taxonomy: Taxonomy,
    traces: Iterable[Trace],
    *,
    clusters: Iterable[str] | None = None,
    pool: Sequence[LabelledText] = (),
    parent: Sequence[LabelledText] = (),
    embedder: Embedder | None = None,
    config: CurriculumConfig | None = None,
    extra_gold: Sequence[Mapping[str, Any]] = (),
    exclude_inputs: Iterable[str] = (),
    synthesize: HardNegativeSynth | None = None,
) -> Curriculum:
    """Build D_post for the fixable clusters (optionally only `clusters`, e.g. the confirmed ones).

    `pool` holds known-answer inputs (passing traces), `parent` is D_parent; both feed hard negatives,
    only `parent` feeds replay. `exclude_inputs` (evaluation and regression inputs) are never mined.
    `extra_gold` are failing-probe rows {input, output, source, cluster}."""
    config = config or CurriculumConfig()
    task = taxonomy.task
    wanted = set(clusters) if clusters is not None else None
    chosen = [c for c in taxonomy.clusters if c.fixability == "fixable" and (wanted is None or c.id in wanted)]
    skipped: dict[str, Any] = {"external_clusters": [c.id for c in taxonomy.clusters if c.fixability != "fixable"],
                               "unselected_clusters": [c.id for c in taxonomy.clusters if c.fixability == "fixable"
                                                       and c.id not in {x.id for x in chosen}],
                               "no_correction": 0, "missing_trace": 0, "extra_gold_unmatched": 0,
                               "synth_invalid": 0}
    gold = _gold_rows(chosen, traces, extra_gold, task, skipped)
    excluded = {input_hash(x) for x in exclude_inputs}
    gold_hashes = {input_hash(g.input) for gs in gold.values() for g in gs}
    candidates, seen = [], set()
    for p in [*pool, *parent]:
        h = input_hash(p.input)
        if h not in excluded and h not in gold_hashes and h not in seen:
            seen.add(h)
            candidates.append(p)

    rows: list[dict[str, Any]] = []
    for c in chosen:
        rows += [{"input": g.input, "output": task_type(task).to_json(g.output), "slice": "gold", "source": g.source,
                  "cluster": c.id} for g in gold[c.id]]
    used: set[int] = set()
    per_cluster = {}
    vectors = _Vectors(candidates, embedder, [g.input for gs in gold.values() for g in gs], config.seed)
    ratios = {c.id: cluster_ratio(c, config) for c in chosen}
    quotas = _hard_quotas(chosen, gold, ratios, len(parent), config)
    for c in chosen:
        g_share, h_share = ratios[c.id]
        quota = quotas[c.id]
        hard = _mine_hard(c, gold[c.id], candidates, vectors, used, quota, task, config)
        if len(hard) < quota and synthesize is not None:
            hard += _synthesise(c, gold[c.id], hard, quota, synthesize, excluded | gold_hashes, task, config, skipped)
        rows += hard
        per_cluster[c.id] = {"name": c.name, "error_mode": c.error_mode, "precision_share": round(c.precision_share, 4),
                             "gold_share": round(g_share, 4), "hard_share": round(h_share, 4),
                             "gold": len(gold[c.id]), "hard_negative_quota": quota, "hard_negative": len(hard),
                             "shortfall": max(0, quota - len(hard))}

    mined = {input_hash(candidates[i].input) for i in used}
    blocked = excluded | gold_hashes | mined
    available = []
    for p in parent:
        h = input_hash(p.input)
        if h not in blocked:
            blocked.add(h)
            available.append(p)
    replay_rows, replay = _replay(rows, available, len(parent), task, config)
    pool = {input_hash(p.input) for p in parent} - excluded - gold_hashes
    replay.update(pool_as_hard_negatives=len(pool & mined), replayable=len(pool))
    rows += replay_rows
    notes = []
    if config.mode == "production" and not parent:
        notes.append("no D_parent: the curriculum has no replay slice")
    return Curriculum(task, rows, per_cluster, replay, skipped, config, len(parent), notes)


def full_replay(parent_size: int, config: CurriculumConfig) -> bool:
    """Whether the whole replay pool is replayed (production with replay_all, and a pool to replay)."""
    return config.mode == "production" and config.replay_all and parent_size > 0


def _replay_bounds(parent_size: int, config: CurriculumConfig) -> tuple[int, int]:
    if full_replay(parent_size, config):
        return parent_size, parent_size
    return math.ceil(config.replay_band[0] * parent_size), math.floor(config.replay_band[1] * parent_size)


def _replay_size(n_new: int, parent_size: int, config: CurriculumConfig) -> int:
    """replay_share of D_post when the |D_parent| band allows it, else the nearest band edge."""
    if config.mode == "cold_start" or not parent_size:
        return 0
    lo, hi = _replay_bounds(parent_size, config)
    return min(max(round(n_new * config.replay_share / (1 - config.replay_share)), lo), hi)


def _hard_quotas(chosen: list[FailureCluster], gold: dict[str, list[_Gold]], ratios: dict[str, tuple[float, float]],
                 parent_size: int, config: CurriculumConfig) -> dict[str, int]:
    """Per cluster round(n_gold x hard/gold) (at most 2 per gold), scaled down together when the
    |D_parent| band keeps replay small enough that the hard slice would exceed its band."""
    quotas = {c.id: min(round(len(gold[c.id]) * ratios[c.id][1] / ratios[c.id][0]),
                        config.hard_per_gold * len(gold[c.id])) for c in chosen}
    n_gold = sum(len(g) for g in gold.values())
    high = config.cold_start_ratio[1] if config.mode == "cold_start" else config.hard_band[1]
    # replay only grows with the hard slice, so its size for gold alone is the conservative one
    cap = math.floor(high * (n_gold + _replay_size(n_gold, parent_size, config)) / (1 - high) + 1e-9)
    total = sum(quotas.values())
    if total <= cap:
        return quotas
    exact = {cid: q * cap / total for cid, q in quotas.items()}
    scaled = {cid: math.floor(v) for cid, v in exact.items()}
    for cid in sorted(exact, key=lambda c: (-(exact[c] - scaled[c]), c))[:cap - sum(scaled.values())]:
        scaled[cid] += 1
    return scaled


def _gold_rows(chosen: list[FailureCluster], traces: Iterable[Trace], extra: Sequence[Mapping[str, Any]], task: str,
               skipped: dict[str, Any]) -> dict[str, list[_Gold]]:
    by_id = {t.id: t for t in traces}
    gold: dict[str, list[_Gold]] = {c.id: [] for c in chosen}
    for c in chosen:
        for tid in c.trace_ids:
            t = by_id.get(tid)
            if t is None:
                skipped["missing_trace"] += 1
            elif t.correction is None:
                skipped["no_correction"] += 1
            else:
                gold[c.id].append(_Gold(t.input, t.correction, t.id, t.prediction))
    for i, row in enumerate(extra):
        cid = row.get("cluster")
        if cid not in gold or not isinstance(row.get("input"), str):
            skipped["extra_gold_unmatched"] += 1
            continue
        output = task_type(task).parse(row.get("output"), f"extra gold row {i} field output")
        gold[cid].append(_Gold(row["input"], output, str(row.get("source") or f"extra:{i}"), None))
    return gold


class _Vectors:
    """Embeds the candidate pool once, lazily (nothing to embed without candidates or gold)."""

    def __init__(self, candidates: Sequence[LabelledText], embedder: Embedder | None, gold_inputs: list[str],
                 seed: int) -> None:
        self.candidates = candidates
        self.embedder = embedder
        self.gold_inputs = gold_inputs
        self.seed = seed
        self._pool: np.ndarray | None = None

    def similarities(self, inputs: list[str]) -> np.ndarray:
        if self._pool is None:
            if self.embedder is None:
                self.embedder = fitted_tfidf([c.input for c in self.candidates], self.gold_inputs, seed=self.seed)
            self._pool = self.embedder.embed([c.input for c in self.candidates])
        return self.embedder.embed(inputs) @ self._pool.T


def _boundary_labels(g: _Gold, cluster: FailureCluster, task: str) -> set[str]:
    """Classification: the labels across the confusion from this gold example (what the model said,
    and the cluster's other labels). Empty set = any different answer will do."""
    if not task_type(task).single_label:
        return set()
    labels = set(cluster.labels) | ({str(g.prediction)} if g.prediction is not None else set())
    return labels - {str(g.output)}


def _mine_hard(cluster: FailureCluster, gold: list[_Gold], candidates: Sequence[LabelledText], vectors: _Vectors,
               used: set[int], quota: int, task: str, config: CurriculumConfig) -> list[dict[str, Any]]:
    if quota <= 0 or not candidates or not gold:
        return []
    key_ids: dict[Any, int] = {}
    keys = np.array([key_ids.setdefault(task_type(task).key(p.output), len(key_ids)) for p in candidates])
    depth = config.hard_per_gold * 4 + 8
    ranked: list[list[int]] = []
    for start in range(0, len(gold), 256):
        chunk = gold[start:start + 256]
        sims = vectors.similarities([g.input for g in chunk])
        for g, row in zip(chunk, sims, strict=True):
            allowed = keys != key_ids.get(task_type(task).key(g.output), -1)
            boundary = _boundary_labels(g, cluster, task)
            if boundary:  # classification: a candidate's key is its label
                wanted = (task_type(task).key(b) for b in boundary)
                allowed &= np.isin(keys, [key_ids[k] for k in wanted if k in key_ids])
            masked = np.where(allowed, row, -np.inf)
            top = np.argsort(-masked, kind="stable")[:depth]
            ranked.append([int(j) for j in top if np.isfinite(masked[j])])
    out: list[dict[str, Any]] = []
    cursor = [0] * len(gold)
    for _ in range(config.hard_per_gold):
        for i, g in enumerate(gold):
            if len(out) == quota:
                return out
            while cursor[i] < len(ranked[i]) and ranked[i][cursor[i]] in used:
                cursor[i] += 1
            if cursor[i] < len(ranked[i]):
                j = ranked[i][cursor[i]]
                used.add(j)
                p = candidates[j]
                out.append({"input": p.input, "output": task_type(task).to_json(p.output), "slice": "hard_negative",
                            "source": p.id, "cluster": cluster.id, "anchor": g.source})
    return out


def _synthesise(cluster: FailureCluster, gold: list[_Gold], have: list[dict[str, Any]], quota: int,
                synthesize: HardNegativeSynth, blocked: set[str], task: str, config: CurriculumConfig,
                skipped: dict[str, Any]) -> list[dict[str, Any]]:
    """Ask the teacher for the shortfall, gold by gold, keeping the 2-for-1 cap; invalid rows are counted."""
    per_anchor = Counter(r["anchor"] for r in have)
    out: list[dict[str, Any]] = []
    for g in gold:
        need = min(config.hard_per_gold - per_anchor[g.source], quota - len(have) - len(out))
        if need <= 0:
            continue
        anchor = {"input": g.input, "output": task_type(task).to_json(g.output), "source": g.source}
        for row in list(synthesize(anchor, need, cluster))[:need]:
            text = row.get("input") if isinstance(row, Mapping) else None
            try:
                output = task_type(task).parse(row.get("output"), "synthesised row field output") if text else None
            except ValueError:
                output = None
            if (not isinstance(text, str) or not text.strip() or output is None or input_hash(text) in blocked
                    or task_type(task).key(output) == task_type(task).key(g.output)):
                skipped["synth_invalid"] += 1
                continue
            blocked.add(input_hash(text))
            out.append({"input": text, "output": task_type(task).to_json(output), "slice": "hard_negative",
                        "source": f"synth:{g.source}", "cluster": cluster.id, "anchor": g.source})
    return out


def _replay(new_rows: list[dict[str, Any]], available: list[LabelledText], parent_size: int, task: str,
            config: CurriculumConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Label-stratified replay that fills the rarest labels first (water-filling), so replay also
    pulls D_post toward the 3x label-ratio cap instead of away from it."""
    lo, hi = _replay_bounds(parent_size, config)
    want = round(len(new_rows) * config.replay_share / (1 - config.replay_share))
    target = min(_replay_size(len(new_rows), parent_size, config), len(available))
    rng = random.Random(config.seed)
    strata: dict[str, list[LabelledText]] = defaultdict(list)
    for p in sorted(available, key=lambda p: p.id):
        strata[task_type(task).stratum(p.output)].append(p)
    for members in strata.values():
        rng.shuffle(members)
    counts = Counter(task_type(task).stratum(task_type(task).parse(r["output"], "curriculum row")) for r in new_rows)
    heap = [(counts.get(lab, 0), lab) for lab in sorted(strata)]
    heapq.heapify(heap)
    taken: Counter = Counter()
    for _ in range(target):
        while heap and taken[heap[0][1]] >= len(strata[heap[0][1]]):
            heapq.heappop(heap)
        if not heap:
            break
        n, lab = heapq.heappop(heap)
        taken[lab] += 1
        heapq.heappush(heap, (n + 1, lab))
    rows = [{"input": p.input, "output": task_type(task).to_json(p.output), "slice": "replay", "source": p.id,
             "cluster": None} for lab in sorted(taken) for p in strata[lab][:taken[lab]]]
    return rows, {"target": target, "wanted": want, "bounds": [lo, hi], "parent_size": parent_size,
                  "available": len(available), "strata": dict(sorted(taken.items()))}


def to_examples(rows: Iterable[Mapping[str, Any]], task: str) -> list[Example]:
    """Curriculum rows as backend Examples (NER outputs become Span tuples)."""
    return [Example(input=r["input"], output=task_type(task).parse(r["output"], f"dataset row {i} field output"),
                    id=str(r.get("source") or i)) for i, r in enumerate(rows)]


def loss_shares(counts: Mapping[str, int], shares: Mapping[str, float]) -> dict[str, float]:
    """Each present slice's share of the loss under slice_weights: its share renormalised over the
    slices that have rows."""
    present = {s: shares[s] for s, n in counts.items() if n and shares.get(s, 0.0) > 0}
    total = sum(present.values())
    return {s: v / total for s, v in present.items()} if total else {}


def slice_weights(rows: Sequence[Mapping[str, Any]], shares: Mapping[str, float]) -> list[float]:
    """Per-row loss weights giving each slice its share of the loss (renormalised over the slices
    present), mean weight 1. When the whole replay pool is replayed, replay can be 85% of the rows
    and gold 5%: the pipeline's composition then holds as loss shares, not row counts."""
    counts = Counter(str(r.get("slice")) for r in rows)
    present = {s: shares.get(s, 0.0) for s in counts if shares.get(s, 0.0) > 0}
    total = sum(present.values())
    if not rows or not total:
        return [1.0] * len(rows)
    per = {s: share / total * len(rows) / counts[s] for s, share in present.items()}
    weights = [per.get(str(r.get("slice")), 0.0) for r in rows]
    missing = sum(1 for w in weights if w == 0.0)  # rows of a slice the pipeline gives no share: weight 1
    scale = (len(rows) - missing) / len(rows) if missing else 1.0
    return [w * scale if w else 1.0 for w in weights]


def with_row_ids(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stable, unique row ids (slice:source, then #2, #3...) so a reviewer's edit diffs by row."""
    seen: Counter = Counter()
    out = []
    for r in rows:
        base = f"{r.get('slice')}:{r.get('source') or 'row'}"
        seen[base] += 1
        out.append({**r, "id": base if seen[base] == 1 else f"{base}#{seen[base]}"})
    return out


def slice_changes(before: Iterable[Mapping[str, Any]], after: Iterable[Mapping[str, Any]]) -> tuple[dict, dict]:
    """Rows added to and removed from each slice between two curricula, by (input, slice): a pool row
    that moved from hard negatives to replay counts as removed from one and added to the other."""
    old = {(r["input"], r.get("slice")) for r in before}
    new = {(r["input"], r.get("slice")) for r in after}
    return dict(Counter(part for _, part in new - old)), dict(Counter(part for _, part in old - new))
