"""Failure taxonomy: put every failing trace (T_fail of engine.diagnosis.traces.partition) in exactly
one cluster C_1..C_K.

Why clusters rather than a flat error list: probing, fixability, the curriculum's gold / hard-negative
ratio and the Reviewer all act on a failure *pattern* (a confusion pair, a catch-all sink label, a
missed entity type, a topic of failing prompts), never on single rows.

The trace data model (Trace, outputs, pools, partition) lives in engine.diagnosis.traces.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.diagnosis.traces import Trace
from engine.errors import ConfigError
from engine.records import TASKS
from engine.tasks import task_type
from engine.tasks.ner import ner_errors

if TYPE_CHECKING:
    from engine.diagnosis.embedders import Embedder

POISON_KINDS = ("empty", "gibberish", "injection", "off_domain", "label_error")
# Kinds no training can fix: poison (never trained on), and failures with nothing to learn from.
EXTERNAL_KINDS = (*POISON_KINDS, "uncorrected", "unexplained")
_POISON_NAMES = {
    "empty": "empty inputs",
    "gibberish": "gibberish inputs",
    "injection": "prompt-injection / jailbreak attempts",
    "off_domain": "off-domain inputs",
    "label_error": "likely upstream label errors",
}


# --------------------------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------------------------

@dataclass
class FailureCluster:
    """A failure pattern. precision_share: 0 = the model misses things (recall), 1 = it asserts
    wrong things (false positives, label confusion); the curriculum turns it into a gold:hard ratio."""

    id: str
    name: str
    kind: str
    trace_ids: tuple[str, ...]
    labels: tuple[str, ...]
    error_mode: str
    precision_share: float
    fixability: str
    fixability_reason: str
    characteristics: dict
    examples: list[dict]
    confirmation_rate: float | None = None
    fixability_source: str = "rule"

    @property
    def size(self) -> int:
        return len(self.trace_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "size": self.size,
            "fixability": self.fixability, "fixability_reason": self.fixability_reason,
            "fixability_source": self.fixability_source, "confirmation_rate": self.confirmation_rate,
            "labels": list(self.labels), "error_mode": self.error_mode,
            "precision_share": round(self.precision_share, 4), "characteristics": self.characteristics,
            "examples": self.examples, "trace_ids": list(self.trace_ids),
        }


@dataclass
class Taxonomy:
    task: str
    clusters: list[FailureCluster]
    n_fail: int
    n_pass: int
    stats: dict

    def cluster_of(self, trace_id: str) -> FailureCluster:
        for c in self.clusters:
            if trace_id in c.trace_ids:
                return c
        raise KeyError(f"trace {trace_id} is in no cluster")

    def get(self, cluster_id: str) -> FailureCluster:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        raise KeyError(f"cluster {cluster_id} not found")

    def fixable(self) -> list[FailureCluster]:
        return [c for c in self.clusters if c.fixability == "fixable"]

    def with_confirmation(self, rates: Mapping[str, float]) -> Taxonomy:
        """A copy with probe failure rates recorded on the named clusters."""
        clusters = [replace(c, confirmation_rate=rates.get(c.id, c.confirmation_rate)) for c in self.clusters]
        return replace(self, clusters=clusters)

    def to_dict(self) -> dict[str, Any]:
        """The `taxonomy_built` event payload."""
        return {"task": self.task, "n_fail": self.n_fail, "n_pass": self.n_pass,
                "clusters": [c.to_dict() for c in self.clusters], "stats": self.stats}


@dataclass(frozen=True)
class TaxonomyConfig:
    sink_min_gold: int = 3  # a predicted label absorbing this many distinct gold labels is a sink
    min_pair_size: int = 2  # one-way pairs smaller than this go to the scattered cluster
    max_examples: int = 5
    k_max: int = 8  # generation: largest k tried
    min_silhouette: float = 0.05  # generation: below this the inputs form one cluster
    method: str = "kmeans"  # generation: kmeans | agglomerative
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("kmeans", "agglomerative"):
            raise ConfigError(f"TaxonomyConfig.method={self.method!r}: use kmeans or agglomerative")
        if self.sink_min_gold < 2 or self.min_pair_size < 1 or not 3 <= self.max_examples <= 5:
            raise ConfigError("TaxonomyConfig: sink_min_gold >= 2, min_pair_size >= 1, max_examples in [3, 5]")


@dataclass
class _Group:
    key: str
    kind: str
    name: str
    traces: list[Trace]
    labels: tuple[str, ...] = ()
    error_mode: str = "n/a"
    precision_share: float = 0.0
    extra: dict = field(default_factory=dict)


def build_taxonomy(
    fail: Sequence[Trace],
    pass_: Sequence[Trace] = (),
    task: str | None = None,
    *,
    poison: Mapping[str, str] | None = None,
    config: TaxonomyConfig | None = None,
    embedder: Embedder | None = None,
) -> Taxonomy:
    """Cluster T_fail. `poison` (trace id -> reason from fixability.triage) puts rule-flagged traces
    in their own external clusters first, so behavioural clusters hold only trainable failures."""
    config = config or TaxonomyConfig()
    task = task or (fail[0].task if fail else pass_[0].task if pass_ else None)
    if task not in TASKS:
        raise ConfigError(f"build_taxonomy: task {task!r} is unknown; pass one of {', '.join(TASKS)}")
    for t in fail:
        if t.verdict != "fail":
            raise ValueError(f"trace {t.id}: verdict is {t.verdict}; build_taxonomy takes T_fail only")
    poison = poison or {}
    groups: list[_Group] = []
    by_reason: dict[str, list[Trace]] = defaultdict(list)
    rest: list[Trace] = []
    for t in fail:
        if t.id in poison:
            by_reason[poison[t.id]].append(t)
        else:
            rest.append(t)
    for reason in sorted(by_reason):
        if reason not in POISON_KINDS:
            raise ValueError(f"poison reason {reason!r} for {by_reason[reason][0].id} is not one of {POISON_KINDS}")
        groups.append(_Group(reason, reason, _POISON_NAMES[reason], by_reason[reason]))

    trainable = rest
    if task_type(task).labelled:
        uncorrected = [t for t in rest if t.correction is None]
        unexplained = [t for t in rest if t.correction is not None
                       and task_type(task).key(t.correction) == task_type(task).key(t.prediction)]
        if uncorrected:
            groups.append(_Group("uncorrected", "uncorrected", "failures without a correction", uncorrected))
        if unexplained:
            groups.append(_Group("unexplained", "unexplained",
                                 "failures whose correction equals the prediction", unexplained))
        odd = {t.id for t in uncorrected} | {t.id for t in unexplained}
        trainable = [t for t in rest if t.id not in odd]

    if task_type(task).single_label:
        task_groups, stats = _classification_groups(trainable, config)
    elif task_type(task).spans:
        task_groups, stats = _ner_groups(trainable)
    else:
        task_groups, stats = _generation_groups(trainable, config, embedder)
    groups.extend(task_groups)
    stats["poison"] = {reason: len(ts) for reason, ts in sorted(by_reason.items())}

    baseline = _structure(pass_) if pass_ else None
    groups.sort(key=lambda g: (-len(g.traces), g.name, g.key))
    clusters = []
    for i, g in enumerate(groups, start=1):
        external = g.kind in EXTERNAL_KINDS
        reason = {"uncorrected": "no correction to learn from",
                  "unexplained": "the correction equals the prediction: nothing to learn"}.get(
            g.kind, f"rule: {g.kind} inputs are never trained on" if external else "rule: model behaviour")
        characteristics = {**_characterize(g.traces, task, baseline), **g.extra}
        clusters.append(FailureCluster(
            id=f"C{i}", name=g.name, kind=g.kind, trace_ids=tuple(t.id for t in g.traces),
            labels=g.labels, error_mode=g.error_mode, precision_share=g.precision_share,
            fixability="external" if external else "fixable", fixability_reason=reason,
            characteristics=characteristics, examples=_representatives(g.traces, task, config.max_examples),
        ))
    covered = [tid for c in clusters for tid in c.trace_ids]
    if sorted(covered) != sorted(t.id for t in fail):
        raise RuntimeError("taxonomy does not cover T_fail exactly once; this is a bug")
    return Taxonomy(task=task, clusters=clusters, n_fail=len(fail), n_pass=len(pass_), stats=stats)


# -- classification ----------------------------------------------------------------------------

def _classification_groups(fail: list[Trace], config: TaxonomyConfig) -> tuple[list[_Group], dict]:
    pairs: dict[tuple[str, str], list[Trace]] = defaultdict(list)
    for t in fail:
        pairs[(str(t.correction), "<none>" if t.prediction is None else str(t.prediction))].append(t)
    bidirectional = {p for p in pairs if (p[1], p[0]) in pairs}
    stats_pairs = [{"gold": g, "predicted": p, "count": len(ts),
                    "direction": "bidirectional" if (g, p) in bidirectional else "one-way"}
                   for (g, p), ts in sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    groups: list[_Group] = []
    done: set[tuple[str, str]] = set()
    for a, b in sorted(bidirectional):
        if (a, b) in done:
            continue
        done |= {(a, b), (b, a)}
        traces = pairs[(a, b)] + pairs[(b, a)]
        groups.append(_Group(f"{a}<->{b}", "bidirectional_confusion", f"{a} <-> {b} confusion", traces,
                             (a, b), "confusion", 1.0,
                             {"direction": "bidirectional", "counts": {f"{a}->{b}": len(pairs[(a, b)]),
                                                                        f"{b}->{a}": len(pairs[(b, a)])}}))
    remaining = {p: ts for p, ts in pairs.items() if p not in done}
    absorbed: dict[str, set[str]] = defaultdict(set)
    for g, p in remaining:
        absorbed[p].add(g)
    sinks = []
    for p in sorted(absorbed):
        if len(absorbed[p]) < config.sink_min_gold:
            continue
        golds = sorted(absorbed[p])
        traces = [t for g in golds for t in remaining.pop((g, p))]
        sinks.append({"label": p, "absorbs": golds, "count": len(traces)})
        groups.append(_Group(f"sink:{p}", "sink", f"catch-all sink: {p} absorbs {len(golds)} labels", traces,
                             (p, *golds), "precision", 1.0, {"absorbs": golds}))
    scattered: list[Trace] = []
    for (g, p), traces in sorted(remaining.items()):
        if len(traces) >= config.min_pair_size:
            groups.append(_Group(f"{g}->{p}", "one_way_confusion", f"{g} misread as {p}", traces, (g, p),
                                 "confusion", 1.0, {"direction": "one-way"}))
        else:
            scattered.extend(traces)
    if scattered:
        pairs_here = {(g, p) for (g, p), ts in remaining.items() if len(ts) < config.min_pair_size}
        labels = tuple(sorted({lab for pair in pairs_here for lab in pair}))
        n_pairs = len(pairs_here)
        groups.append(_Group("scattered", "scattered", f"scattered one-off confusions ({n_pairs} pairs)",
                             scattered, labels, "recall", 0.0))
    return groups, {"confusion_pairs": stats_pairs, "sinks": sinks}


# -- NER ---------------------------------------------------------------------------------------

_NER_NAMES = {
    "false_negative": "missed {} entities (false negatives)",
    "false_positive": "spurious {} entities (false positives)",
    "type_confusion": "entity type confusion {}",
    "boundary": "boundary errors on {} entities",
}


def _ner_groups(fail: list[Trace]) -> tuple[list[_Group], dict]:
    per_type: dict[str, Counter] = defaultdict(Counter)
    totals = Counter()
    keyed: dict[tuple[str, str], list[Trace]] = defaultdict(list)
    hallucinated, multi = [], []
    errors_of = {}
    for t in fail:
        e = ner_errors(t.prediction, t.correction)
        errors_of[t.id] = e
        totals["fp"] += e.fp
        totals["fn"] += e.fn
        totals["multi_label_spans"] += len(e.multi_label)
        for s in e.spurious:
            per_type[s.label]["fp"] += 1
        for s in e.missed:
            per_type[s.label]["fn"] += 1
        for g, _ in e.type_confusions:
            per_type[g.label]["type_confusion"] += 1
        for g, _ in e.boundary:
            per_type[g.label]["boundary"] += 1
        if not t.correction and t.prediction:
            hallucinated.append(t)
        elif e.multi_label:
            multi.append(t)
        else:
            counts = Counter()
            for s in e.missed:
                counts[("false_negative", s.label)] += 1
            for s in e.spurious:
                counts[("false_positive", s.label)] += 1
            for g, p in e.type_confusions:
                counts[("type_confusion", f"{g.label}->{p.label}")] += 1
            for g, _ in e.boundary:
                counts[("boundary", g.label)] += 1
            order = list(_NER_NAMES)
            best = min(counts, key=lambda k: (-counts[k], order.index(k[0]), k[1]))
            keyed[best].append(t)
    groups = []

    def share(traces: list[Trace]) -> float:
        fp = sum(errors_of[t.id].fp for t in traces)
        fn = sum(errors_of[t.id].fn for t in traces)
        return fp / (fp + fn) if fp + fn else 0.0

    def mode(p: float) -> str:
        return "recall" if p < 0.4 else "precision" if p > 0.6 else "mixed"

    if hallucinated:
        labels = tuple(sorted({s.label for t in hallucinated for s in t.prediction}))
        groups.append(_Group("hallucination", "hallucination", "hallucinated entities on empty ground truth",
                             hallucinated, labels, "precision", 1.0))
    if multi:
        labels = tuple(sorted({lab for t in multi for m in errors_of[t.id].multi_label for lab in m[2]}))
        groups.append(_Group("multi_label_span", "multi_label_span", "one span with several labels", multi,
                             labels, "precision", share(multi)))
    for (kind, what), traces in sorted(keyed.items()):
        labels = tuple(what.split("->")) if kind == "type_confusion" else (what,)
        p = 1.0 if kind == "type_confusion" else share(traces)
        err_mode = "confusion" if kind == "type_confusion" else mode(p)
        groups.append(_Group(f"{kind}:{what}", kind, _NER_NAMES[kind].format(what), traces, labels, err_mode, p,
                             {"fp": sum(errors_of[t.id].fp for t in traces),
                              "fn": sum(errors_of[t.id].fn for t in traces)}))
    stats = {
        "fp": totals["fp"], "fn": totals["fn"],
        "fp_fn_ratio": round(totals["fp"] / totals["fn"], 4) if totals["fn"] else None,
        "hallucinations": len(hallucinated), "multi_label_spans": totals["multi_label_spans"],
        "per_type": {lab: dict(sorted(c.items())) for lab, c in sorted(per_type.items())},
    }
    return groups, stats


# -- generation --------------------------------------------------------------------------------

def _perturbation_key(trace: Trace) -> str | None:
    items = trace.metadata.get("perturbations") or []
    types = sorted({str(p.get("type")) for p in items if isinstance(p, Mapping) and p.get("type")})
    return "+".join(types) or None


# How a generative answer failed, read from the output against the correction (before the inputs are
# clustered): these call for different remedies than a wrong answer (stop rules, answer format, refusals).
OUTPUT_MODES = {"empty_output": "empty answers", "refusal": "refusals",
                "format": "right answer in the wrong form (extra or missing text)",
                "no_final_answer": "no final answer (cut off, or the number missing)"}
_REFUSAL = re.compile(r"\b(i can(?:no|')t|i'm (?:sorry|unable)|i am (?:sorry|unable)|as an ai|i won't)\b", re.I)


def output_mode(prediction: Any, correction: Any) -> str | None:
    """The OUTPUT_MODES kind of a failed generation, or None for a plainly wrong answer."""
    pred = " ".join(str(prediction or "").split())
    gold = " ".join(str(correction or "").split())
    if not pred:
        return "empty_output"
    if _REFUSAL.search(pred):
        return "refusal"
    if gold and re.search(rf"(?<![\w.-]){re.escape(gold)}(?![\w]|\.\d)", pred, re.I):
        return "format"
    if re.search(r"\d", gold) and not re.search(r"\d", pred):
        return "no_final_answer"
    return None


def _generation_groups(fail: list[Trace], config: TaxonomyConfig,
                       embedder: Embedder | None) -> tuple[list[_Group], dict]:
    groups = []
    by_perturbation: dict[str, list[Trace]] = defaultdict(list)
    by_mode: dict[str, list[Trace]] = defaultdict(list)
    plain = []
    for t in fail:
        key = _perturbation_key(t)
        mode = output_mode(t.prediction, t.correction) if t.correction is not None else None
        if key:
            by_perturbation[key].append(t)
        elif mode:
            by_mode[mode].append(t)
        else:
            plain.append(t)
    for mode, traces in sorted(by_mode.items()):
        groups.append(_Group(f"output:{mode}", mode, OUTPUT_MODES[mode], traces, (), "recall", 0.0))
    for key, traces in sorted(by_perturbation.items()):
        classes = Counter(str(p.get("class")) for t in traces for p in t.metadata.get("perturbations", [])
                          if isinstance(p, Mapping) and p.get("class"))
        groups.append(_Group(f"perturbation:{key}", "perturbation", f"perturbed inputs: {key}", traces,
                             (), "recall", 0.0, {"perturbation_classes": dict(classes)}))
    textless = [t for t in plain if not re.search(r"\w", t.input)]
    plain = [t for t in plain if re.search(r"\w", t.input)]
    if textless:
        groups.append(_Group("textless", "text_cluster", "inputs without words", textless, (), "recall", 0.0))
    silhouette, k = None, 1
    if plain:
        labels, silhouette, k = _cluster_texts([t.input for t in plain], config, embedder)
        names = _top_terms([t.input for t in plain], labels)
        for c in sorted(set(labels)):
            members = [t for t, lab in zip(plain, labels, strict=True) if lab == c]
            groups.append(_Group(f"text:{c}", "text_cluster", f"inputs about {names[c]}", members, (), "recall",
                                 0.0, {"top_terms": names[c].split(", ")}))
    stats = {"k": k, "silhouette": None if silhouette is None else round(float(silhouette), 4),
             "method": config.method, "perturbation_groups": {k: len(v) for k, v in sorted(by_perturbation.items())},
             "output_modes": {m: len(v) for m, v in sorted(by_mode.items())}}
    return groups, stats


# Clustering is fitted on at most FIT_SAMPLE inputs (a seeded sample) and every other input joins the
# nearest centroid, so time and memory grow linearly with the failures instead of with their square
# (average-linkage and the silhouette need every pairwise distance: about 80 GB at 100k inputs). Above it,
# TF-IDF keeps the MAX_FEATURES most frequent terms, so the sample's dense copy stays small.
FIT_SAMPLE = 2000
MAX_FEATURES = 4096


def _cluster_texts(texts: list[str], config: TaxonomyConfig, embedder: Embedder | None):
    """Choose k in [2, k_max] by cosine silhouette; one cluster when no k separates the inputs."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    n = len(texts)
    if n < 4:
        return [0] * n, None, 1
    if embedder is not None:
        x = np.asarray(embedder.embed(texts), dtype=np.float64)
    else:
        x = _tfidf_matrix(texts, max_features=MAX_FEATURES if n > FIT_SAMPLE else None)
    fit = np.arange(n) if n <= FIT_SAMPLE else \
        np.sort(np.random.default_rng(config.seed).choice(n, FIT_SAMPLE, replace=False))
    xs = x[fit]
    xs = np.asarray(xs.toarray() if hasattr(xs, "toarray") else xs, dtype=np.float64)
    best = None
    distinct = len(np.unique(np.round(xs, 6), axis=0))
    for k in range(2, min(config.k_max, len(fit) - 1, distinct) + 1):
        if config.method == "kmeans":
            with threadpool_limits(1):  # failing sets are small: thread start-up costs more than it saves
                labels = KMeans(n_clusters=k, random_state=config.seed, n_init=10).fit_predict(xs)
        else:
            labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(xs)
        if len(set(labels)) < 2:
            continue
        score = silhouette_score(xs, labels, metric="cosine")
        if best is None or score > best[0] + 1e-9:
            best = (score, k, labels)
    if best is None or best[0] < config.min_silhouette:
        return [0] * n, None if best is None else best[0], 1
    if n == len(fit):
        return [int(v) for v in best[2]], best[0], best[1]
    return _nearest_centroid(x, xs, np.asarray(best[2])), best[0], best[1]


def _nearest_centroid(x, xs: np.ndarray, fitted: np.ndarray, chunk: int = 65536) -> list[int]:
    """Every input's cluster: the most cosine-similar centroid of the clusters fitted on the sample."""
    clusters = sorted(set(fitted.tolist()))
    centroids = np.stack([xs[fitted == c].mean(axis=0) for c in clusters])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out: list[int] = []
    for start in range(0, x.shape[0], chunk):
        sims = x[start:start + chunk] @ centroids.T
        out += [clusters[i] for i in np.asarray(sims).argmax(axis=1).tolist()]
    return out


def _tfidf_matrix(texts: list[str], max_features: int | None = None):
    """L2-normalised TF-IDF rows, sparse (a row with no term stays zero)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, stop_words="english",
                          max_features=max_features, dtype=np.float32)
    try:
        return vec.fit_transform(texts)
    except ValueError:  # only stop words: fall back to character n-grams
        return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, max_features=max_features,
                               dtype=np.float32).fit_transform(texts)


def _top_terms(texts: list[str], labels: list[int], n: int = 3) -> dict[int, str]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(analyzer="word", stop_words="english", sublinear_tf=True, dtype=np.float32,
                              max_features=MAX_FEATURES if len(texts) > FIT_SAMPLE else None)
        x = vec.fit_transform(texts)
    except ValueError:
        return {c: "misc" for c in set(labels)}
    vocab = vec.get_feature_names_out()
    names = {}
    arr = np.asarray(labels)
    for c in sorted(set(labels)):
        weights = np.asarray(x[arr == c].mean(axis=0)).ravel()
        top = [vocab[i] for i in np.argsort(-weights, kind="stable")[:n] if weights[i] > 0]
        names[c] = ", ".join(top) or "misc"
    return names


# -- characteristics and examples --------------------------------------------------------------

_FEATURES = {
    "question": re.compile(r"\?\s*$|^\s*(what|how|why|when|where|who|which|can|could|is|are|do|does|will|would)\b", re.I),
    "digits": re.compile(r"\d"),
    "url": re.compile(r"https?://|www\.", re.I),
    "mention_or_hashtag": re.compile(r"(^|\s)[@#]\w"),
    "all_caps_word": re.compile(r"\b[A-Z]{2,}\b"),
    "multi_sentence": re.compile(r"[.!?]\s+\S"),
    "non_ascii": re.compile(r"[^\x00-\x7f]"),
}


def _structure(traces: Sequence[Trace]) -> dict[str, float]:
    n = len(traces) or 1
    out = {name: sum(bool(rx.search(t.input)) for t in traces) / n for name, rx in _FEATURES.items()}
    out["all_lowercase"] = sum(t.input == t.input.lower() and any(c.isalpha() for c in t.input) for t in traces) / n
    out["very_short"] = sum(len(t.input.split()) <= 3 for t in traces) / n
    out["long"] = sum(len(t.input.split()) >= 25 for t in traces) / n
    return {k: round(v, 4) for k, v in out.items()}


def _characterize(traces: list[Trace], task: str, baseline: dict[str, float] | None) -> dict:
    lengths = np.array([len(t.input.split()) for t in traces], dtype=float)
    structure = _structure(traces)
    highlights = []
    for feat, frac in structure.items():
        base = baseline.get(feat, 0.0) if baseline else 0.0
        if frac >= 0.5 or (baseline is not None and frac >= 0.3 and frac >= 2 * base):
            note = f" (passing: {base:.0%})" if baseline is not None else ""
            highlights.append(f"{frac:.0%} {feat.replace('_', ' ')}{note}")
    out: dict[str, Any] = {
        "length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                   "mean": round(float(lengths.mean()), 2), "p90": float(np.percentile(lengths, 90)),
                   "max": int(lengths.max())},
        "structure": structure,
        "highlights": highlights,
    }
    if task_type(task).single_label:
        out["gold_labels"] = dict(Counter(str(t.correction) for t in traces if t.correction is not None).most_common(10))
        out["predicted_labels"] = dict(Counter(str(t.prediction) for t in traces if t.prediction is not None).most_common(10))
    elif task_type(task).spans:
        out["gold_entity_types"] = dict(Counter(s.label for t in traces for s in t.correction or ()).most_common())
        out["predicted_entity_types"] = dict(Counter(s.label for t in traces for s in t.prediction or ()).most_common())
    perturbations = Counter(str(p.get("type")) for t in traces for p in t.metadata.get("perturbations") or []
                            if isinstance(p, Mapping) and p.get("type"))
    if perturbations:
        out["perturbations"] = dict(perturbations.most_common())
    return out


def _representatives(traces: list[Trace], task: str, limit: int) -> list[dict]:
    """Up to `limit` distinct inputs closest to the cluster's TF-IDF centroid (the most typical ones)."""
    order = list(range(len(traces)))
    if len(traces) > limit:
        from sklearn.feature_extraction.text import TfidfVectorizer

        try:
            x = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit_transform(
                [t.input for t in traces])
            centroid = np.asarray(x.mean(axis=0)).ravel()
            scores = x @ centroid
            order = sorted(order, key=lambda i: (-scores[i], traces[i].id))
        except ValueError:  # no character features at all (e.g. empty inputs)
            pass
    distinct, repeats, seen = [], [], set()
    for i in order:
        (repeats if traces[i].input in seen else distinct).append(i)
        seen.add(traces[i].input)
    picked = distinct + repeats
    return [{"trace_id": traces[i].id, "input": traces[i].input,
             "prediction": task_type(task).to_json(traces[i].prediction),
             "correction": task_type(task).to_json(traces[i].correction), "reasoning": traces[i].reasoning}
            for i in picked[:limit]]
