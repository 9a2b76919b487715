"""Fixable vs poison triage: which failures training should learn from.

Poison is never trained on: empty or gibberish input, prompt-injection / jailbreak attempts,
off-domain input (far from everything the model was trained on or handles well), and likely
upstream label errors (a correction its confident nearest neighbours disagree with). Training on
them teaches the model noise or the attacker's wishes. The LLM planner may add its judgment per
cluster through a hook; the rules decide without it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from engine.diagnosis.embedders import Embedder, fitted_tfidf
from engine.diagnosis.taxonomy import FailureCluster, Taxonomy
from engine.diagnosis.traces import LabelledText, Trace
from engine.tasks import task_type

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "1234567890")
_VOWELS = set("aeiouy")


def empty_reason(text: str) -> str | None:
    """Why an input has nothing to learn from: empty, or fewer than two letters or digits ("?", "k", ":)")."""
    if not text.strip():
        return "the input is empty"
    alnum = sum(c.isalnum() for c in text)
    return f"only {alnum} letter or digit: nothing to answer" if alnum < 2 else None


def gibberish_reason(text: str) -> str | None:
    """Why a non-empty input looks like noise, or None. Dictionary-free, so it works for any
    vocabulary; tuned to leave typo-laden real sentences alone."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return None
    letters = [c for c in chars if c.isalpha()]
    if len(chars) >= 4 and len(letters) / len(chars) < 0.3:
        return f"only {len(letters)}/{len(chars)} characters are letters"
    if len(chars) >= 8:
        counts = Counter(c.lower() for c in chars)
        entropy = abs(sum(n / len(chars) * math.log2(n / len(chars)) for n in counts.values()))
        if entropy < 2.0:
            return f"character entropy {entropy:.2f} bits: repeated characters"
    latin = [c.lower() for c in letters if c.isascii()]
    if len(latin) < 6 or len(latin) < 0.8 * len(letters):
        return None
    vowel_ratio = sum(c in _VOWELS for c in latin) / len(latin)
    if vowel_ratio < 0.12 or vowel_ratio > 0.8:
        return f"vowel ratio {vowel_ratio:.2f} is outside natural text"
    words = [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4]
    if words:
        def odd(word: str) -> bool:
            keyboard = any(word in row or word in row[::-1] for row in _KEYBOARD_ROWS)
            run = max(len(r) for r in re.split(r"[aeiouy]+", word))
            return keyboard or run >= 5 or not any(c in _VOWELS for c in word)
        bad = [w for w in words if odd(w)]
        if len(bad) / len(words) >= 0.5:
            return f"{len(bad)}/{len(words)} words are unpronounceable or keyboard runs ({', '.join(bad[:3])})"
    return None


INJECTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.I | re.M)) for name, rx in (
        ("ignore_instructions", r"\b(ignore|disregard|forget|skip)\b.{0,40}\b(previous|prior|above|earlier|all|any|your|these)\b"
                                r".{0,40}\b(instructions?|prompts?|rules|directions|guidelines|directives)\b"),
        ("role_override", r"\byou are (now|no longer)\b.{0,50}\b(dan|jailbroken|unfiltered|uncensored|unrestricted|"
                          r"evil|free from|bound by)\b"),
        ("unrestricted_persona", r"\b(act|pretend|behave|respond)\b.{0,20}\b(as|like|to be)\b.{0,50}"
                                 r"\b(unfiltered|uncensored|unrestricted|without (any )?(rules|restrictions|filters|limits))"),
        ("dan", r"\bdo anything now\b|\bDAN\b.{0,20}\bmode\b|\bjail ?break"),
        ("prompt_leak", r"\b(reveal|show|print|repeat|output|leak|tell me)\b.{0,40}\b(system prompt|hidden prompt|"
                        r"initial prompt|your (instructions|prompt|rules)|the (instructions|text) above)\b"),
        ("safety_bypass", r"\b(override|bypass|disable|turn off|ignore)\b.{0,30}\b(safety|filters?|guardrails|"
                          r"restrictions|content polic(y|ies)|moderation)\b|\b(safety|filters?|guardrails|content "
                          r"polic(y|ies)|moderation)\b.{0,15}\b(are|is) (now )?(disabled|off|lifted|removed)\b"),
        ("privileged_mode", r"\b(god|sudo|dan|jailbreak) mode\b|\bdeveloper mode\b.{0,40}\b(no|without|ignore|"
                            r"unrestricted|uncensored|unfiltered)\b"),
        ("chat_markup", r"<\|?(im_start|im_end|system|endoftext)\|?>|\[/?INST\]|<</?SYS>>|^\s*#{2,}\s*(system|instructions?)\b"),
        ("new_instructions", r"\b(new|updated|real|actual) (system )?(instructions?|task)\s*:"),
        ("ignore_above", r"\b(ignore|disregard|forget)\b.{0,20}\b(message|question|text|request|input|everything)\b"
                         r".{0,12}\b(above|before this|earlier)\b"),
        ("forced_answer", r"\bthe (correct|right|true|real) (label|answer|category|class|intent) is\b|"
                          r"\b(classify|label|categori[sz]e) (this|it|the (message|text|input))\b.{0,20}\bas\b"),
        ("system_override", r"\b(system|admin|developer) override\b|\[(admin|system|developer)\]|(^|[\s\]])system\s*:"),
        ("no_limits_persona", r"\bfrom now on\b.{0,30}\byou (are|will be)\b|\bnever refuses?\b"),
        ("fiction_frame", r"\b(for|in) (a|my) (novel|story|screenplay|book|script|play)\b.{0,80}\bhow to\b"),
        ("pretend_frame", r"\bpretend (you are|you're|to be)\b.{0,80}\bhow to\b"),
        ("compliance_claim", r"\bred[- ]team(ing)?\b.{0,40}\b(exercise|test)\b|\byou must comply\b"),
    )
)


def injection_reason(text: str) -> str | None:
    for name, rx in INJECTION_PATTERNS:
        if rx.search(text):
            return name
    return None


# --------------------------------------------------------------------------------------------
# Embedding rules
# --------------------------------------------------------------------------------------------

class OffDomainDetector:
    """Off-domain = far from the in-domain data by two measures at once: cosine distance to the nearest
    centroid AND to the nearest single example, each above a percentile of the same distances measured
    within the in-domain data. Failing inputs sit at the edge of the domain by nature; requiring both
    keeps a rare but in-domain phrasing (near one example, far from its label's centroid) trainable.

    With labels there is one centroid per label, and each reference point is measured against its own
    centroid and its nearest neighbour *without itself* (leave-one-out), so the thresholds are not
    flattered by self-similarity."""

    def __init__(self, percentile: float = 99.0, seed: int = 0, sample: int = 4000) -> None:
        if not 50.0 <= percentile <= 100.0:
            raise ValueError(f"off-domain percentile {percentile} must be in [50, 100]")
        self.percentile = percentile
        self.seed = seed
        self.sample = sample
        self.centroids: np.ndarray | None = None
        self.reference: np.ndarray | None = None
        self.threshold: float = math.inf
        self.nn_threshold: float = math.inf
        self._in_domain: tuple[np.ndarray, np.ndarray] | None = None  # in-domain (centroid, nearest) distances

    def fit(self, vectors: np.ndarray, labels: Sequence[str] | None = None) -> OffDomainDetector:
        x = np.asarray(vectors, dtype=np.float32)
        if len(x) < 2:
            raise ValueError("off-domain detection needs at least 2 in-domain reference texts")
        if labels is not None:
            names = sorted(set(labels))
            idx = np.array([names.index(lab) for lab in labels])
            sums = np.zeros((len(names), x.shape[1]))
            np.add.at(sums, idx, x)
            counts = np.bincount(idx, minlength=len(names))
            self.centroids = sums / counts[:, None]
            sims = x @ _unit(self.centroids).T
            own_dot = np.einsum("ij,ij->i", x, sums[idx]) - np.einsum("ij,ij->i", x, x)
            own_norm = np.linalg.norm(sums[idx] - x, axis=1)
            loo = np.where((counts[idx] > 1) & (own_norm > 0), own_dot / np.where(own_norm > 0, own_norm, 1), -np.inf)
            sims[np.arange(len(x)), idx] = loo
            distances = 1.0 - sims.max(axis=1)
        else:
            from sklearn.cluster import KMeans

            k = max(1, min(16, round(math.sqrt(len(x) / 2))))
            with threadpool_limits(1):
                self.centroids = KMeans(n_clusters=k, random_state=self.seed, n_init=10).fit(x).cluster_centers_
            distances = 1.0 - (x @ _unit(self.centroids).T).max(axis=1)
        self.reference = x
        rows = np.random.default_rng(self.seed).permutation(len(x))[:self.sample]
        self._in_domain = (distances, np.concatenate([self._nearest(x[rows[i:i + 512]], exclude=rows[i:i + 512])
                                                      for i in range(0, len(rows), 512)]))
        self.threshold, self.nn_threshold = self.thresholds(self.percentile)
        return self

    def thresholds(self, percentile: float) -> tuple[float, float]:
        """(centroid, nearest-example) distance thresholds at `percentile` of the in-domain distances."""
        if self._in_domain is None:
            raise RuntimeError("OffDomainDetector is not fitted")
        return tuple(float(np.percentile(d, percentile)) for d in self._in_domain)

    def _nearest(self, q: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        sims = q @ self.reference.T
        if exclude is not None:
            sims[np.arange(len(q)), exclude] = -np.inf
        return 1.0 - sims.max(axis=1)

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine distance to the nearest centroid."""
        if self.centroids is None:
            raise RuntimeError("OffDomainDetector is not fitted")
        return 1.0 - (np.asarray(vectors, dtype=np.float64) @ _unit(self.centroids).T).max(axis=1)

    def nn_distance(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine distance to the nearest single reference example."""
        if self.reference is None:
            raise RuntimeError("OffDomainDetector is not fitted")
        q = np.asarray(vectors, dtype=np.float32)
        return np.concatenate([self._nearest(q[i:i + 512]) for i in range(0, len(q), 512)]) if len(q) else np.zeros(0)

    def off_domain(self, vectors: np.ndarray, percentile: float | None = None) -> np.ndarray:
        """Beyond both thresholds, at the detector's percentile or a stricter one."""
        centroid, nearest = (self.threshold, self.nn_threshold) if percentile is None else self.thresholds(percentile)
        return (self.distance(vectors) > centroid) & (self.nn_distance(vectors) > nearest)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def knn_votes(vectors: np.ndarray, labels: Sequence[str], k: int) -> tuple[list[str], np.ndarray]:
    """Leave-one-out, similarity-weighted label votes of every row's k nearest other rows
    (fractions summing to 1)."""
    names = sorted(set(labels))
    index = {name: j for j, name in enumerate(names)}
    lab = np.array([index[x] for x in labels])
    k = min(k, len(vectors) - 1)
    votes = np.zeros((len(vectors), len(names)))
    if k <= 0:
        return names, votes
    for start in range(0, len(vectors), 512):
        sims = vectors[start:start + 512] @ vectors.T
        own = np.arange(sims.shape[0])
        sims[own, own + start] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None)
        rows = np.repeat(np.arange(start, start + len(top)), k)
        np.add.at(votes, (rows, lab[top].ravel()), weights.ravel())
    totals = votes.sum(axis=1, keepdims=True)
    return names, votes / np.where(totals == 0, 1.0, totals)


@dataclass(frozen=True)
class LabelErrorFlag:
    consensus: str
    confidence: float
    own_vote: float


def label_error_flags(vectors: np.ndarray, labels: Sequence[str], candidates: Sequence[int], *, k: int = 10,
                      min_confidence: float = 0.7, max_own_vote: float = 0.1,
                      min_support: int = 3) -> dict[int, LabelErrorFlag]:
    """Confident-learning-style check over one labelled set (reference rows plus the failing traces'
    corrections): flag candidate row i when its k nearest other rows vote for another label L at least
    as confidently as L's own members vote for L (per-class threshold, as in confident learning) and
    give its own label almost nothing.

    The failing corrections vote too, on purpose: passing traces are only the inputs the model already
    gets right, so near a systematic confusion (translate said as change_language) they all carry the
    wrong side's label. A pattern of agreeing corrections is a failure to fix; a label error is a
    correction that disagrees with everything around it. Labels with fewer than `min_support` rows are
    never judged."""
    names, votes = knn_votes(vectors, labels, k)
    index = {name: j for j, name in enumerate(names)}
    lab = np.array([index[x] for x in labels])
    support = np.bincount(lab, minlength=len(names))
    thresholds = np.array([votes[lab == j, j].mean() if support[j] else 1.0 for j in range(len(names))])
    flags = {}
    for i in candidates:
        own_label = lab[i]
        if support[own_label] < min_support:
            continue
        best = int(np.argmax(votes[i]))
        own, conf = float(votes[i, own_label]), float(votes[i, best])
        if best != own_label and conf >= max(thresholds[best], min_confidence) and own <= max_own_vote:
            flags[int(i)] = LabelErrorFlag(names[best], round(conf, 4), round(own, 4))
    return flags


# --------------------------------------------------------------------------------------------
# Triage
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TriageResult:
    trace_id: str
    status: str  # fixable | poison
    reason: str | None  # empty | gibberish | injection | off_domain | label_error
    detail: str

    @property
    def poison(self) -> bool:
        return self.status == "poison"


@dataclass(frozen=True)
class TriageConfig:
    off_domain_percentile: float | None = 99.0  # None: no off-domain rule (e.g. a known-narrow reference)
    # a correction is evidence the input is in the task's space, so overriding it takes stronger evidence
    # (CLINC150 stage logs: p99 flagged 15 of 160 corrected in-domain failures and no corrected poison)
    corrected_off_domain_percentile: float = 99.9
    label_error_k: int = 10
    label_error_min_confidence: float = 0.7
    label_error_max_own_vote: float = 0.1
    label_error_min_support: int = 3
    seed: int = 0


def input_poison(trace_id: str, text: str) -> TriageResult | None:
    """The rules that read the input alone (empty, gibberish, injection), for any trace: a passing
    trace they flag should not be replayed into training either."""
    if (why := empty_reason(text)) is not None:
        return TriageResult(trace_id, "poison", "empty", why)
    if (why := gibberish_reason(text)) is not None:
        return TriageResult(trace_id, "poison", "gibberish", why)
    if (pattern := injection_reason(text)) is not None:
        return TriageResult(trace_id, "poison", "injection", f"matches injection pattern {pattern}")
    return None


def triage(fail: Sequence[Trace], reference: Sequence[LabelledText], *, embedder: Embedder | None = None,
           config: TriageConfig | None = None) -> dict[str, TriageResult]:
    """Per-trace verdict, rules in order: empty, gibberish, injection, off-domain, label error.

    `reference` is the in-domain pool: passing traces and the parent's training rows. Off-domain and
    label-error checks need >= 2 reference rows; label errors are judged for classification only."""
    config = config or TriageConfig()
    results: dict[str, TriageResult] = {}
    for t in fail:
        if (verdict := input_poison(t.id, t.input)) is not None:
            results[t.id] = verdict
    pending = [t for t in fail if t.id not in results]
    if pending and len(reference) >= 2:
        ref_texts = [r.input for r in reference]
        embedder = embedder or fitted_tfidf(ref_texts, [t.input for t in pending], seed=config.seed)
        ref_vecs = embedder.embed(ref_texts)
        query = embedder.embed([t.input for t in pending])
        classification = task_type(pending[0].task).single_label
        labels = [str(r.output) for r in reference] if classification else None
        if config.off_domain_percentile is not None:
            detector = OffDomainDetector(config.off_domain_percentile, config.seed).fit(ref_vecs, labels)
            strict = max(config.off_domain_percentile, config.corrected_off_domain_percentile)
            distances, nearest = detector.distance(query), detector.nn_distance(query)
            flags = detector.off_domain(query), detector.off_domain(query, strict)
            for t, d, nn, off, off_strict in zip(pending, distances, nearest, *flags, strict=True):
                pct = strict if t.correction is not None else config.off_domain_percentile
                if off_strict if t.correction is not None else off:
                    results[t.id] = TriageResult(
                        t.id, "poison", "off_domain",
                        f"cosine distance {d:.3f} to the nearest in-domain centroid and {nn:.3f} to the nearest "
                        f"example, above the in-domain p{pct:g} "
                        f"({', '.join(f'{x:.3f}' for x in detector.thresholds(pct))})")
        judged = [(i, t) for i, t in enumerate(pending) if t.id not in results and t.correction is not None]
        if classification and judged:
            vectors = np.vstack([ref_vecs, query[[i for i, _ in judged]]])
            flags = label_error_flags(
                vectors, labels + [str(t.correction) for _, t in judged],
                range(len(ref_vecs), len(vectors)), k=config.label_error_k,
                min_confidence=config.label_error_min_confidence, max_own_vote=config.label_error_max_own_vote,
                min_support=config.label_error_min_support)
            for j, flag in flags.items():
                t = judged[j - len(ref_vecs)][1]
                results[t.id] = TriageResult(
                    t.id, "poison", "label_error",
                    f"correction {t.correction!r} but its nearest in-domain neighbours say {flag.consensus!r} "
                    f"(vote {flag.confidence:.2f}; {flag.own_vote:.2f} for the correction)")
    return {t.id: results.get(t.id) or TriageResult(t.id, "fixable", None, "no poison rule fired") for t in fail}


def poison_map(results: Mapping[str, TriageResult]) -> dict[str, str]:
    """trace id -> poison reason, the form taxonomy.build_taxonomy takes."""
    return {tid: r.reason for tid, r in results.items() if r.poison and r.reason}


def summarize(results: Mapping[str, TriageResult]) -> dict[str, int]:
    counts = Counter(r.reason or "fixable" for r in results.values())
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------------------------
# Per-cluster fixability with the planner's judgment
# --------------------------------------------------------------------------------------------

# The planner sees a cluster and answers (fixability, reason), or None to keep the rule's verdict.
FixabilityJudge = Callable[[FailureCluster], tuple[str, str] | None]


def apply_judgment(taxonomy: Taxonomy, judge: FixabilityJudge | None = None) -> Taxonomy:
    """Let the planner demote a rule-fixable cluster to external (e.g. it needs knowledge no small
    model has). It cannot make poison trainable; an answer that does not validate is ignored, as the
    design asks of every planner step."""
    if judge is None:
        return taxonomy
    clusters = []
    for c in taxonomy.clusters:
        answer = judge(c) if c.fixability == "fixable" else None
        if (isinstance(answer, tuple) and len(answer) == 2 and answer[0] in ("fixable", "external")
                and isinstance(answer[1], str) and answer[1].strip()):
            c = replace(c, fixability=answer[0], fixability_reason=answer[1].strip(), fixability_source="planner")
        clusters.append(c)
    return replace(taxonomy, clusters=clusters)


def cluster_triage(taxonomy: Taxonomy, results: Mapping[str, TriageResult]) -> dict[str, dict[str, int]]:
    """Per cluster: how many of its traces each rule flagged (fixable counted too)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for c in taxonomy.clusters:
        counts = Counter((results[t].reason or "fixable") if t in results else "untriaged" for t in c.trace_ids)
        out[c.id] = dict(sorted(counts.items()))
    return dict(out)
