"""Baselines on the held-out set E, measured before any training, so every trained model is judged
against what needed no training at all.

- encoder with a new head (classification): majority class, and nearest centroid on the base
  encoder's mean-pooled embeddings (cosine to each label's mean training embedding);
- encoder, NER: no entities (the majority output), and a training lexicon (every surface form seen
  in training tagged wherever it appears);
- decoder: the base model answering through its prompt, zero-shot (the task instruction) and
  few-shot (the instruction plus a few training examples as earlier chat turns).
Each result says which baseline it is and how it works.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.coldstart.analysis import TaskAnalysis
from engine.coldstart.eval_sets import HeldOutSet, score_held_out
from engine.diagnosis.embedders import Embedder
from engine.records import Example, Prediction, Span
from engine.tasks import task_type

CENTROID_SAMPLE = 200  # training embeddings per label: a centroid is stable long before this


@dataclass(frozen=True)
class BaselineResult:
    name: str
    description: str
    score: float
    metrics: dict[str, Any]
    outputs: list[Any]
    confidences: list[float]
    correct: list[bool]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BaselineReport:
    results: list[BaselineResult] = field(default_factory=list)

    @property
    def best(self) -> BaselineResult:
        return max(self.results, key=lambda r: r.score)  # first of equals = listed first

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BaselineReport:
        return cls([BaselineResult(**r) for r in raw.get("results") or []])

    def markdown(self) -> str:
        lines = [f"- **{r.name}** ({r.description}): {_metric_name(r)} {r.score:.4f} in {r.seconds:.1f} s"
                 for r in self.results]
        return "\n".join(lines + [f"- the search starts from **{self.best.name}** ({self.best.score:.4f})"])


def _metric_name(result: BaselineResult) -> str:
    return next(iter(result.metrics), "score")


def _result(name: str, description: str, eval_set: HeldOutSet, analysis: TaskAnalysis, outputs: list[Any],
            confidences: list[float], started: float) -> BaselineResult:
    scored = score_held_out(eval_set, outputs, analysis)
    return BaselineResult(name, description, scored.score, scored.metrics,
                          [task_type(analysis.task).to_json(o) for o in scored.outputs],
                          [float(c) for c in confidences], scored.correct, round(time.perf_counter() - started, 3))


# ---------------------------------------------------------------------------------------------
# Encoder baselines
# ---------------------------------------------------------------------------------------------

def majority_class(train: Sequence[Example], eval_set: HeldOutSet, analysis: TaskAnalysis) -> BaselineResult:
    started = time.perf_counter()
    if task_type(analysis.task).spans:
        outputs: list[Any] = [() for _ in eval_set.items]
        return _result("majority_class", "always predicts no entities (the most common output)", eval_set, analysis,
                       outputs, [1.0] * len(outputs), started)
    counts = Counter(str(ex.output) for ex in train)
    label, n = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return _result("majority_class", f"always predicts '{label}' ({n / len(train):.0%} of training)", eval_set,
                   analysis, [label] * len(eval_set.items), [n / len(train)] * len(eval_set.items), started)


def nearest_centroid(train: Sequence[Example], eval_set: HeldOutSet, analysis: TaskAnalysis, embedder: Embedder,
                     *, seed: int = 0, per_label: int = CENTROID_SAMPLE) -> BaselineResult:
    """Cosine to each label's mean (L2-normalised) training embedding; the confidence is the softmax
    of those cosines."""
    started = time.perf_counter()
    by_label: dict[str, list[str]] = defaultdict(list)
    for ex in train:
        by_label[str(ex.output)].append(ex.input)
    rng = random.Random(seed)
    labels = sorted(by_label)
    sample = {lab: rng.sample(by_label[lab], min(per_label, len(by_label[lab]))) for lab in labels}
    texts = [t for lab in labels for t in sample[lab]]
    vectors = embedder.embed(texts)
    centroids, start = [], 0
    for lab in labels:
        block = vectors[start:start + len(sample[lab])]
        start += len(sample[lab])
        c = block.mean(axis=0)
        centroids.append(c / max(float(np.linalg.norm(c)), 1e-12))
    sims = embedder.embed(eval_set.inputs()) @ np.stack(centroids).T
    best = sims.argmax(axis=1)
    exp = np.exp((sims - sims.max(axis=1, keepdims=True)) * 20.0)
    conf = exp.max(axis=1) / exp.sum(axis=1)
    return _result("nearest_centroid", f"cosine to each label's mean base-encoder embedding (up to {per_label} "
                   "training examples per label)", eval_set, analysis, [labels[i] for i in best], conf.tolist(),
                   started)


def training_lexicon(train: Sequence[Example], eval_set: HeldOutSet, analysis: TaskAnalysis) -> BaselineResult:
    """Every entity surface form seen in training, tagged (with its most frequent type) wherever it
    appears as whole words, longest first."""
    started = time.perf_counter()
    types: dict[str, Counter] = defaultdict(Counter)
    for ex in train:
        for s in ex.output:
            types[ex.input[s.start:s.end]][s.label] += 1
    forms = sorted(types, key=lambda f: (-len(f), f))
    outputs = []
    for item in eval_set.items:
        taken: list[tuple[int, int]] = []
        spans = []
        for form in forms:
            for match in re.finditer(r"(?<!\w)" + re.escape(form) + r"(?!\w)", item.input):
                a, b = match.span()
                if any(a < e and b > s for s, e in taken):
                    continue
                taken.append((a, b))
                label = min(types[form].items(), key=lambda kv: (-kv[1], kv[0]))[0]
                spans.append(Span(a, b, label))
        outputs.append(tuple(sorted(spans, key=lambda s: (s.start, s.end))))
    return _result("training_lexicon", f"tags the {len(forms)} entity surface forms seen in training", eval_set,
                   analysis, outputs, [1.0] * len(outputs), started)


def encoder_baselines(train: Sequence[Example], eval_set: HeldOutSet, analysis: TaskAnalysis,
                      embedder: Embedder | None, *, seed: int = 0) -> BaselineReport:
    report = BaselineReport([majority_class(train, eval_set, analysis)])
    if task_type(analysis.task).spans:
        report.results.append(training_lexicon(train, eval_set, analysis))
    elif embedder is not None:
        report.results.append(nearest_centroid(train, eval_set, analysis, embedder, seed=seed))
    return report


# ---------------------------------------------------------------------------------------------
# Decoder baselines
# ---------------------------------------------------------------------------------------------

def pick_shots(train: Sequence[Example], analysis: TaskAnalysis, k: int, seed: int) -> list[Example]:
    """k training examples; for classification one per label first (rarest labels last), so the
    prompt shows the label set."""
    rng = random.Random(seed)
    pool = [ex for ex in train if isinstance(ex.output, str) and len(ex.output) < 400]
    rng.shuffle(pool)
    if not task_type(analysis.task).single_label:
        return pool[:k]
    seen, shots = set(), []
    for ex in pool:
        if ex.output not in seen and len(shots) < k:
            seen.add(ex.output)
            shots.append(ex)
    return shots


class _FewShot:
    """A ChatFormat's prompt with earlier chat turns (the shots) between the system prompt and the
    question, rendered by the same chat template."""

    def __init__(self, fmt: Any, shots: Sequence[Example]) -> None:
        self.tokenizer = fmt.tokenizer
        self.stop_ids = fmt.stop_ids
        self.system_prompt = fmt.system_prompt
        self.turns = [m for ex in shots for m in ({"role": "user", "content": ex.input},
                                                    {"role": "assistant", "content": str(ex.output)})]

    def encode_prompt(self, text: str) -> list[int]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        rendered = self.tokenizer.apply_chat_template([*system, *self.turns, {"role": "user", "content": text}],
                                                      tokenize=False, add_generation_prompt=True)
        return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]


PredictFn = Callable[[list[str]], list[Prediction]]


def load_base_decoder(base: str, system_prompt: str | None, max_new_tokens: int, batch_size: int = 16
                      ) -> tuple[Any, Callable[[Sequence[Example]], Any]]:
    """The untrained base decoder as a DecoderPredictor, and a factory for its few-shot variant."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.models.decoder import ChatFormat, DecoderPredictor, load_tokenizer, stop_token_ids
    from engine.models.qlora import default_device
    from engine.models.resolve import resolve_model

    path = str(resolve_model(base))
    device = default_device()
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.config.use_cache = True
    fmt = ChatFormat(tokenizer, system_prompt, stop_token_ids(tokenizer, model.generation_config))
    zero = DecoderPredictor(model, tokenizer, fmt, device=device, max_new_tokens=max_new_tokens,
                            batch_size=batch_size)

    def few(shots: Sequence[Example]) -> Any:
        return DecoderPredictor(model, tokenizer, _FewShot(fmt, shots), device=device,
                                max_new_tokens=max_new_tokens, batch_size=batch_size)
    return zero, few


def decoder_baselines(train: Sequence[Example], eval_set: HeldOutSet, analysis: TaskAnalysis, base: str, *,
                      system_prompt: str, max_new_tokens: int, shots: int = 3, seed: int = 0) -> BaselineReport:
    zero, few = load_base_decoder(base, system_prompt, max_new_tokens)
    report = BaselineReport()
    started = time.perf_counter()
    preds = zero.predict(eval_set.inputs())
    report.results.append(_result("zero_shot", f"base {base} answering through its prompt: the task instruction "
                                  "as system prompt", eval_set, analysis, [p.output for p in preds],
                                  [p.confidence for p in preds], started))
    examples = pick_shots(train, analysis, shots, seed)
    if examples:
        started = time.perf_counter()
        preds = few(examples).predict(eval_set.inputs())
        report.results.append(_result("few_shot", f"base {base} with the instruction and {len(examples)} training "
                                      "examples as earlier chat turns", eval_set, analysis, [p.output for p in preds],
                                      [p.confidence for p in preds], started))
    return report
