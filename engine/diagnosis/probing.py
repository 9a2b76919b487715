"""Live confirmation of a failure cluster: probe inputs run through the deployed model.

A cluster is real (systematic, worth a curriculum) when inputs *like* its failures fail too: nearest
neighbours from the trace and training pools, small variants of the failing inputs (casing,
punctuation, typos), and boundary pairs across its confusion. Failing probes become training
candidates; a cluster whose probes pass was likely noise in the traces.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.data.quality import normalise
from engine.diagnosis.embedders import Embedder, fitted_tfidf
from engine.diagnosis.taxonomy import FailureCluster
from engine.diagnosis.traces import LabelledText, Trace
from engine.records import Span
from engine.tasks import task_type


@dataclass(frozen=True)
class Probe:
    input: str
    expected: Any  # canonical output: label, tuple of Spans, or text
    kind: str  # neighbour | boundary | variant:casing | variant:punctuation | variant:typo
    source: str  # the trace id or pool row id it came from
    cluster: str
    task: str


@dataclass(frozen=True)
class ProbeConfig:
    neighbours_per_trace: int = 2
    variants_per_trace: int = 3
    boundary_pairs: int = 5
    max_probes: int = 60
    seed: int = 0


def generate_probes(cluster: FailureCluster, traces: Sequence[Trace] | Mapping[str, Trace],
                    pool: Sequence[LabelledText], task: str, *, embedder: Embedder | None = None,
                    config: ProbeConfig | None = None) -> list[Probe]:
    """Probes for one cluster, interleaved by kind so a `max_probes` cap keeps every kind."""
    config = config or ProbeConfig()
    by_id = traces if isinstance(traces, Mapping) else {t.id: t for t in traces}
    failing = [by_id[tid] for tid in cluster.trace_ids if tid in by_id and by_id[tid].correction is not None]
    rng = random.Random(f"{config.seed}:{cluster.id}")
    own = {normalise(t.input) for t in failing}
    candidates = [p for p in pool if normalise(p.input) not in own]
    kinds: dict[str, list[Probe]] = {"variant": [], "neighbour": [], "boundary": []}
    for t in failing:
        for kind, text in _variants(t, task, rng, config.variants_per_trace):
            kinds["variant"].append(Probe(text, t.correction, f"variant:{kind}", t.id, cluster.id, task))
    if candidates and (failing or len(cluster.labels) >= 2):
        embedder = embedder or fitted_tfidf([p.input for p in candidates], [t.input for t in failing],
                                            seed=config.seed)
        pool_vecs = embedder.embed([p.input for p in candidates])
        if failing and config.neighbours_per_trace > 0:
            sims = embedder.embed([t.input for t in failing]) @ pool_vecs.T
            used: set[int] = set()
            for row in sims:
                taken = 0
                for j in np.argsort(-row, kind="stable"):
                    if taken == config.neighbours_per_trace:
                        break
                    if int(j) not in used:
                        used.add(int(j))
                        taken += 1
                        p = candidates[int(j)]
                        kinds["neighbour"].append(Probe(p.input, p.output, "neighbour", p.id, cluster.id, task))
        for p in _boundary_pairs(cluster, candidates, pool_vecs, task, config.boundary_pairs):
            kinds["boundary"].append(Probe(p.input, p.output, "boundary", p.id, cluster.id, task))
    probes, seen = [], set()
    queues = [list(q) for q in kinds.values()]
    while any(queues) and len(probes) < config.max_probes:
        for q in queues:
            if q and len(probes) < config.max_probes:
                probe = q.pop(0)
                if normalise(probe.input) not in seen:  # one input is run (and counted) once
                    seen.add(normalise(probe.input))
                    probes.append(probe)
    return probes


def _boundary_pairs(cluster: FailureCluster, pool: Sequence[LabelledText], vecs: np.ndarray, task: str,
                    n_pairs: int) -> list[LabelledText]:
    """The most similar cross-label pairs (one side labels[0], the other labels[1:]): the inputs
    nearest the decision boundary the cluster is confused about."""
    if not task_type(task).labelled or len(cluster.labels) < 2 or n_pairs <= 0:
        return []
    first, others = cluster.labels[0], set(cluster.labels[1:])
    labs = [set(task_type(task).labels(p.output)) for p in pool]
    side_a = [i for i, s in enumerate(labs) if first in s and not s & others]
    side_b = [i for i, s in enumerate(labs) if s & others and first not in s]
    if not side_a or not side_b:
        return []
    sims = vecs[side_a] @ vecs[side_b].T
    out, used_a, used_b = [], set(), set()
    for flat in np.argsort(-sims, axis=None, kind="stable"):
        a, b = divmod(int(flat), len(side_b))
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        out += [pool[side_a[a]], pool[side_b[b]]]
        if len(out) >= 2 * n_pairs:
            break
    return out


_WORD = re.compile(r"[A-Za-z]{4,}")


def _variants(trace: Trace, task: str, rng: random.Random, limit: int) -> list[tuple[str, str]]:
    """Small meaning-preserving edits. For NER only edits that keep every gold span's offsets valid."""
    text = trace.input
    spans_task = task_type(task).spans
    spans: tuple[Span, ...] = trace.correction if spans_task else ()
    last_end = max((s.end for s in spans), default=0)
    out: list[tuple[str, str]] = []
    for cased in (text.lower(), text.upper(), text[:1].upper() + text[1:].lower()):
        if cased != text and len(cased) == len(text):
            out.append(("casing", cased))
            break
    stripped = text.rstrip()
    if stripped and stripped[-1] in ".!?":
        punct = stripped.rstrip(".!?")
    else:
        punct = stripped + "?"
    if punct != text and punct.strip() and len(punct) >= last_end and punct[:last_end] == text[:last_end]:
        out.append(("punctuation", punct))
    words = [m for m in _WORD.finditer(text)
             if not any(s.start < m.end() and m.start() < s.end for s in spans)]
    if words:
        m = words[rng.randrange(len(words))]
        i = m.start() + rng.randrange(1, len(m.group()) - 2)
        if text[i] != text[i + 1]:
            out.append(("typo", text[:i] + text[i + 1] + text[i] + text[i + 2:]))
        elif not spans_task:
            out.append(("typo", text[:i] + text[i + 1:]))
    return out[:limit]


def _as_output(value: Any, task: str) -> Any:
    value = getattr(value, "output", value)
    if task_type(task).spans and not (isinstance(value, tuple) and all(isinstance(s, Span) for s in value)):
        return task_type(task).parse(value, "probe prediction")
    return value


@dataclass
class ProbeReport:
    cluster_id: str
    task: str
    n_probes: int
    n_failed: int
    threshold: float
    by_kind: dict[str, dict[str, int]]
    failing: list[Probe] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n_probes if self.n_probes else 0.0

    @property
    def confirmed(self) -> bool:
        return self.n_probes > 0 and self.failure_rate >= self.threshold

    def candidates(self) -> list[dict[str, Any]]:
        """Failing probes as gold training rows for the curriculum (their expected answers are known)."""
        return [{"input": p.input, "output": task_type(self.task).to_json(p.expected), "slice": "gold",
                 "source": f"probe:{p.kind}:{p.source}", "cluster": p.cluster} for p in self.failing]

    def to_dict(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "n_probes": self.n_probes, "n_failed": self.n_failed,
                "failure_rate": round(self.failure_rate, 4), "threshold": self.threshold,
                "confirmed": self.confirmed, "by_kind": self.by_kind}


def run_probes(cluster: FailureCluster, probes: Sequence[Probe], predict_fn: Callable[[list[str]], Sequence[Any]],
               expected_fn: Callable[[Probe], Any] | None = None, *, threshold: float = 0.3,
               match: Callable[[Any, Any], bool] | None = None) -> ProbeReport:
    """Run the probes through `predict_fn` (outputs or Predictions, one per input) and compare with
    `expected_fn(probe)` (default: the probe's own expected answer) using `match` (default: equal
    labels / span sets / whitespace-normalised text)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"probe threshold {threshold} must be in [0, 1]")
    task = probes[0].task if probes else "classification"
    expected_fn = expected_fn or (lambda p: p.expected)
    match = match or (lambda pred, exp: task_type(task).key(pred) == task_type(task).key(exp))
    predictions = list(predict_fn([p.input for p in probes])) if probes else []
    if len(predictions) != len(probes):
        raise ValueError(f"predict_fn returned {len(predictions)} outputs for {len(probes)} probes")
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "failed": 0})
    failing = []
    for probe, pred in zip(probes, predictions, strict=True):
        kind = probe.kind.split(":")[0]
        by_kind[kind]["n"] += 1
        if not match(_as_output(pred, task), expected_fn(probe)):
            by_kind[kind]["failed"] += 1
            failing.append(probe)
    return ProbeReport(cluster.id, task, len(probes), len(failing), threshold, dict(sorted(by_kind.items())), failing)
