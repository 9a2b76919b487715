"""AdaptFT-Bench perturbation pipeline (paper Table 12) and realistic inference-log timing.

`perturb_examples` applies the 33 types of engine/data/perturb_types.py to a list of examples
(classification, NER or generation), seeded per sample, and records every applied type in the
row's `metadata.perturbations` as {"type": name, "class": "fixable" | "poisonous"}.

Rolling. Each type is rolled once per sample from a per-sample `random.Random`, so several types
co-occur. Three rules keep the result meaningful while every type's marginal rate stays equal to
its configured rate:
- the seven input-replacing types (off-domain, gibberish, ...) are one categorical draw, since a
  replaced input leaves nothing for a second replacement (their rates must sum to <= 1);
- gibberish and empty inputs get no further text perturbation, and the two donor-based "content"
  types (label flipping, decision-boundary probes) apply only to samples whose input was not
  replaced; each such type is rolled with probability rate / P(eligible) (capped at 1: a rate
  above the eligible share means "every eligible sample");
- extra-row types (exact / near duplicates, retry storms) roll independently on every sample and
  copy the finished row.
A type that rolls but cannot act (no word to misspell) is not applied and not recorded.

Order (fixed): the replacement, then the types in perturb_types.TYPES order: structure (truncation,
duplication), semantics (label flip, boundary, premise), additions (attachment reference, filler,
format instruction, injection, jailbreak, preamble, metadata tags), word noise (slang,
code-switching, phonetic, grammar, syntax), character noise (typos, OCR, casing, punctuation),
encoding (HTML, UTF-8), then the extra rows. Each row follows its source in the output.

The answer rule: `output` is always the expected answer for the row's (perturbed) input, and
`metadata.label_valid` says whether it is still the original one. When it is not,
`metadata.original_output` holds the example's output as given (NER offsets refer to the original
input); `output` is the new answer when the perturbation
determines one (label flipping) and null when no answer in the task's space is right (off-domain,
gibberish, empty, jailbreak, ...: the right behaviour is to abstain or refuse). For NER, kept spans
are shifted so text[start:end] is still the entity; spans that cannot be kept are dropped and
counted in `metadata.spans_dropped`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.data.perturb_types import BY_NAME, TYPES, PerturbationType, Pool, Sample
from engine.errors import ConfigError
from engine.records import TASKS

DEFAULT_RATES: dict[str, float] = {t.name: t.rate for t in TYPES}
WIPES = ("gibberish", "empty_or_near_empty")
REPLACEMENTS = tuple(t.name for t in TYPES if t.kind == "replace")


# ----------------------------------------------------------------------------- rates


def validate_rates(overrides: Mapping[str, Any] | None = None, source: str = "rates") -> dict[str, float]:
    """Defaults updated by `overrides`; ConfigError names `source` and the offending key."""
    rates = dict(DEFAULT_RATES)
    for key, value in (overrides or {}).items():
        if key not in BY_NAME:
            close = difflib.get_close_matches(str(key), list(BY_NAME), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known types: {', '.join(BY_NAME)}"
            raise ConfigError(f"{source}: key {key!r} is not a perturbation type; {hint}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ConfigError(f"{source}: key {key!r} has rate {value!r}; use a number in [0, 1]")
        rates[key] = float(value)
    total = sum(rates[name] for name in REPLACEMENTS)
    if total > 1.0 + 1e-9:
        raise ConfigError(f"{source}: the input-replacing types ({', '.join(REPLACEMENTS)}) sum to {total:.3f}; "
                          "they are exclusive per sample, so keep their sum <= 1")
    return rates


def load_rates(path: str | Path) -> dict[str, float]:
    """A JSON object mapping type name -> rate; unspecified types keep the paper's defaults."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: rates file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON object of type -> rate ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object mapping type name -> rate, got {type(data).__name__}")
    return validate_rates(data, source=str(path))


def _excluded_by(t: PerturbationType) -> tuple[str, ...]:
    if t.kind == "content":
        return REPLACEMENTS
    if t.kind == "text":
        return WIPES
    return ()


def _eligible_share(t: PerturbationType, rates: Mapping[str, float]) -> float:
    return 1.0 - sum(rates[name] for name in _excluded_by(t))


# ----------------------------------------------------------------------------- pipeline


def infer_task(outputs: Sequence[Any]) -> str:
    """ner for span / tag lists; generation for multi-line or long answers, or when most answers are
    distinct over >= 20 rows; classification otherwise."""
    if outputs and all(isinstance(o, list) for o in outputs):
        return "ner"
    texts = [str(o) for o in outputs]
    if any("\n" in t or len(t) > 64 for t in texts):
        return "generation"
    if len(texts) >= 20 and len(set(texts)) > len(texts) / 2:
        return "generation"
    return "classification"


def _rng(seed: int, index: int, purpose: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{index}:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _entry(t: PerturbationType) -> dict[str, str]:
    return {"type": t.name, "class": t.cls}


def perturb_examples(
    examples: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    task: str,
    rates: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Perturbed rows {"id", "input", "output", "metadata", ...} for `examples` ({"input", "output",
    optional "id" and "metadata"}); NER outputs are lists of {"start", "end", "label"} dicts.

    A sample's perturbations depend only on (seed, its index, the batch's donor pool).
    """
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not one of {', '.join(TASKS)}")
    rates = validate_rates(rates)
    samples = [Sample(ex["input"], ex["output"], task) for ex in examples]
    pool = Pool.build(samples)
    replace_types = [t for t in TYPES if t.kind == "replace"]
    edit_types = [t for t in TYPES if t.kind in ("text", "content")]
    row_types = [t for t in TYPES if t.kind == "rows"]
    conditional = {t.name: _conditional(t, rates) for t in edit_types}
    rows: list[dict[str, Any]] = []
    for index, (example, sample) in enumerate(zip(examples, samples, strict=True)):
        roll, ops = _rng(seed, index, "roll"), _rng(seed, index, "ops")
        draw, cumulative, chosen = roll.random(), 0.0, []
        for t in replace_types:
            cumulative += rates[t.name]
            if draw < cumulative:
                chosen.append(t)
                break
        replaced = chosen[0].name if chosen else None
        for t in edit_types:
            draw = roll.random()
            if replaced not in _excluded_by(t) and draw < conditional[t.name]:
                chosen.append(t)
        extras = [t for t in row_types if roll.random() < rates[t.name]]
        applied = []
        for t in chosen:
            new = t.fn(sample, ops, pool)
            if new is not None and (new.text != sample.text or new.output != sample.output):
                sample = new
                applied.append(_entry(t))
        base = _row(example, index, sample, applied)
        rows.append(base)
        for t in extras:
            copies = t.fn(sample, ops, pool)
            for k, copy in enumerate(copies, start=1):
                suffix = {"exact_duplicates": "dup", "near_duplicates": "near"}.get(t.name, f"retry{k}")
                extra = _row(example, index, copy, [*applied, _entry(t)], row_id=f"{base['id']}-{suffix}")
                key = "retry_of" if t.name == "retry_storms" else "duplicate_of"
                extra["metadata"][key] = base["id"]
                rows.append(extra)
    return rows


def _conditional(t: PerturbationType, rates: Mapping[str, float]) -> float:
    eligible = _eligible_share(t, rates)
    return min(1.0, rates[t.name] / eligible) if eligible > 0 else 0.0


def _row(example: Mapping[str, Any], index: int, sample: Sample, applied: list[dict[str, str]],
         row_id: str | None = None) -> dict[str, Any]:
    meta = dict(example.get("metadata") or {})
    meta["perturbations"] = [*meta.get("perturbations", []), *applied]
    info = dict(sample.info)
    meta["label_valid"] = bool(meta.get("label_valid", True)) and info.pop("label_valid", True)
    if not meta["label_valid"]:
        meta.setdefault("original_output", example["output"])
    if "spans_dropped" in info:
        meta["spans_dropped"] = meta.get("spans_dropped", 0) + info.pop("spans_dropped")
    meta.update(info)
    row = {k: v for k, v in example.items() if k not in ("input", "output", "metadata", "id")}
    default_id = str(example["id"]) if example.get("id") is not None else f"ex{index:06d}"
    row.update(id=row_id or default_id, input=sample.text, output=sample.output, metadata=meta)
    return row


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts for a perturbed file: rows, source examples, extra rows, per-type counts."""
    counts: Counter[str] = Counter()
    copied: dict[str, set[str]] = {}
    for row in rows:
        meta = row["metadata"]
        parent = meta.get("duplicate_of") or meta.get("retry_of")
        if parent:  # an extra row counts once per source example, under its own type
            copied.setdefault(meta["perturbations"][-1]["type"], set()).add(parent)
        else:
            counts.update({p["type"] for p in meta["perturbations"]})
    counts.update({name: len(parents) for name, parents in copied.items()})
    sources = [r for r in rows if "duplicate_of" not in r["metadata"] and "retry_of" not in r["metadata"]]
    return {
        "rows": len(rows),
        "examples": len(sources),
        "extra_rows": len(rows) - len(sources),
        "perturbed": sum(1 for r in sources if r["metadata"]["perturbations"]),
        "label_invalid": sum(1 for r in sources if not r["metadata"]["label_valid"]),
        "poisonous": sum(1 for r in sources if any(p["class"] == "poisonous" for p in r["metadata"]["perturbations"])),
        "types": {t.name: counts[t.name] for t in TYPES if counts[t.name]},
    }


# ----------------------------------------------------------------------------- inference-log timing


@dataclass(frozen=True)
class LogTiming:
    """How requests arrive and how long they take. Latency is log-normal around a length-dependent
    median; arrivals come in bursts (batch effects) during which latency grows with the queue."""

    base_latency_ms: float = 45.0
    per_char_ms: float = 0.35
    latency_sigma: float = 0.35
    burst_start_prob: float = 0.06
    burst_min: int = 5
    burst_max: int = 30
    burst_gap_s: float = 0.12
    idle_gap_s: float = 9.0
    burst_load: float = 0.08
    timeout_rate: float = 0.015
    timeout_ms: float = 30000.0
    retry_backoff_s: tuple[float, float] = (0.5, 4.0)

    def __post_init__(self) -> None:
        checks = [
            (self.base_latency_ms > 0 and self.per_char_ms >= 0, "base_latency_ms/per_char_ms", "> 0 / >= 0"),
            (self.latency_sigma >= 0, "latency_sigma", ">= 0"),
            (0 <= self.burst_start_prob <= 1, "burst_start_prob", "in [0, 1]"),
            (1 <= self.burst_min <= self.burst_max, "burst_min/burst_max", "1 <= burst_min <= burst_max"),
            (self.burst_gap_s > 0 and self.idle_gap_s > 0, "burst_gap_s/idle_gap_s", "> 0"),
            (0 <= self.timeout_rate <= 1, "timeout_rate", "in [0, 1]"),
            (0 <= self.retry_backoff_s[0] <= self.retry_backoff_s[1], "retry_backoff_s", "(low, high), 0 <= low <= high"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"LogTiming.{name} is invalid: use {expected}")

    def latency(self, text: str, load: float, rng: random.Random) -> float:
        median = self.base_latency_ms + self.per_char_ms * len(text)
        return round(median * load * rng.lognormvariate(0.0, self.latency_sigma), 1)


LOG_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # fixed, so a seeded log is reproducible

Judge = Callable[[Any, Any], tuple[str, Any, str]]


def exact_match_judge(expected: Any, prediction: Any) -> tuple[str, Any, str]:
    """(verdict, correction, reasoning). With no valid answer (expected None) only abstaining passes;
    NER compares span sets."""
    if expected is None:
        if prediction in (None, ""):
            return "pass", None, "no answer in the task's space fits this input; the model abstained"
        return "fail", None, "no answer in the task's space fits this input; the model should abstain"
    if isinstance(expected, list):
        same = _span_set(expected) == _span_set(prediction or [])
    else:
        same = str(prediction).strip() == str(expected).strip()
    if same:
        return "pass", None, "prediction matches the reference exactly"
    return "fail", expected, "prediction differs from the reference"


def _span_set(spans: Sequence[Mapping[str, Any]]) -> set[tuple[int, int, str]]:
    return {(s["start"], s["end"], s["label"]) for s in spans}


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def to_trace_rows(
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any],
    *,
    model_id: str,
    stage: str,
    seed: int,
    task: str | None = None,
    start: datetime = LOG_START,
    timing: LogTiming | None = None,
    judge: Judge = exact_match_judge,
    source: str = "adaptft",
) -> list[dict[str, Any]]:
    """Timestamped inference-log rows in the trace format (see engine/ingest.py), sorted by `ts`.

    `predictions[i]` is the deployed model's answer to `rows[i]`; `judge` sets verdict, correction and
    reasoning. Arrival order is a seeded shuffle; retry-storm copies follow their request within
    seconds; `timing.timeout_rate` of the requests first log a timed-out attempt (empty prediction,
    verdict fail, latency = the timeout) and are answered after a backoff.
    """
    if len(predictions) != len(rows):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows: give one per row")
    timing = timing or LogTiming()
    rng = random.Random(seed)
    followers: dict[str, list[int]] = {}
    primary = []
    ids = {row["id"] for row in rows}
    for i, row in enumerate(rows):
        parent = row["metadata"].get("retry_of")
        if parent not in ids:
            primary.append(i)
        else:
            followers.setdefault(parent, []).append(i)
    rng.shuffle(primary)
    out: list[dict[str, Any]] = []

    def emit(i: int, at: float, latency: float, **meta: Any) -> None:
        row = rows[i]
        verdict, correction, reasoning = judge(row["output"], predictions[i])
        out.append({
            "id": row["id"], "ts": _ts(start, at), "model_id": model_id, "task": task,
            "input": row["input"], "prediction": _as_text(predictions[i]) or "", "verdict": verdict,
            "correction": _as_text(correction), "reasoning": reasoning,
            "metadata": {**row["metadata"], **meta}, "human_verdict": None, "human_output": None,
            "latency_ms": latency, "stage": stage, "source": source,
        })

    clock, burst_left, position = 0.0, 0, 0
    for i in primary:
        if burst_left == 0 and rng.random() < timing.burst_start_prob:
            burst_left, position = rng.randint(timing.burst_min, timing.burst_max), 0
        if burst_left:
            clock += rng.expovariate(1.0 / timing.burst_gap_s)
            load = 1.0 + timing.burst_load * position
            position, burst_left = position + 1, burst_left - 1
        else:
            clock += rng.expovariate(1.0 / timing.idle_gap_s)
            load = 1.0
        row_id = rows[i]["id"]
        answered, meta = clock, {}
        if rng.random() < timing.timeout_rate:
            timeout_id = f"{row_id}-timeout"
            out.append({
                "id": timeout_id, "ts": _ts(start, clock), "model_id": model_id, "task": task,
                "input": rows[i]["input"], "prediction": "", "verdict": "fail", "correction": None,
                "reasoning": f"no response: the request timed out after {timing.timeout_ms:.0f} ms and was retried",
                "metadata": {"timeout": True, "retried_as": row_id}, "human_verdict": None, "human_output": None,
                "latency_ms": timing.timeout_ms, "stage": stage, "source": source,
            })
            answered = clock + timing.timeout_ms / 1000 + rng.uniform(*timing.retry_backoff_s)
            meta = {"retry_after_timeout": timeout_id}
        emit(i, answered, timing.latency(rows[i]["input"], load, rng), **meta)
        at = answered
        for k, j in enumerate(followers.get(row_id, []), start=1):
            at += rng.uniform(0.2, 2.5)
            emit(j, at, timing.latency(rows[j]["input"], 1.0 + timing.burst_load * k, rng))
    out.sort(key=lambda r: (r["ts"], r["id"]))
    return out


def _ts(start: datetime, seconds: float) -> str:
    return (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
