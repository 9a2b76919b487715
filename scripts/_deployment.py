"""What the production-mode benchmarks share: judging a deployment's traffic into traces, and the
model a run is reported by."""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.data.perturb import TYPES, Judge, LogTiming, exact_match_judge, perturb_examples, to_trace_rows
from engine.ingest import ingest_traces
from engine.production import ProductionSummary
from store import Store
from store.artifacts import atomic_write_jsonl


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options every production benchmark takes: the run's budget, seed, workspace and threads."""
    parser.add_argument("--max-iterations", type=int, default=6)
    parser.add_argument("--max-minutes", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, help="keep the workspace here (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch threads of every training and inference (default: the cores)")


def torch_threads(n: int | None) -> None:
    """Every torch op of the benchmark on `n` threads (two runs can then share the 2-core machine);
    trainers built without a thread count read $OMP_NUM_THREADS (engine.models.runtime.set_threads)."""
    if n:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(n)
        torch.set_num_threads(n)


def judged_traffic(store: Store, folder: Path, rows: list[dict[str, Any]], predictions: list[Any], *,
                   model_id: str, task: str, source: str, seed: int,
                   judge: Judge = exact_match_judge) -> list[dict[str, Any]]:
    """The deployed model's answers to `rows` as traces judged by `judge` (exact match by default),
    ingested into `store`."""
    traces = to_trace_rows(rows, predictions, model_id=model_id, stage="production", seed=seed, task=task,
                           timing=LogTiming(timeout_rate=0.0), source=source, judge=judge)
    path = folder / "traces.jsonl"
    atomic_write_jsonl(path, traces)
    ingest_traces(store, path)
    return traces


def reported_model(store: Store, summary: ProductionSummary) -> str | None:
    """The promoted model; when nothing was promoted, the best candidate (the table marks it so)."""
    if summary.promoted_model:
        return summary.promoted_model
    nodes = [it for it in summary.iterations if it.operator != "root" and it.score is not None]
    if not nodes:
        return None
    best = min(nodes, key=lambda it: (-(it.score or 0), it.regressions or 0))
    return {n["id"]: n["model_id"] for n in store.runs.nodes(summary.run_id)}[best.node_id]


# what reaches a judge besides real requests: junk and attacks, with no right answer in the label space
JUNK = {"gibberish": 0.4, "empty_or_near_empty": 0.1, "prompt_injection": 0.3, "jailbreak_attempts": 0.3}


def junk_traffic(rows: Sequence[dict[str, Any]], share: float, seed: int, task: str) -> list[dict[str, Any]]:
    """Poison copies (gibberish, near-empty, injections, jailbreaks) of a seeded `share` of `rows`; a
    copy whose label survives (an injection appended to a real request) is dropped, so every returned
    row has no valid answer (`output` None) and its label lives only in the hidden metadata."""
    rng = random.Random(f"junk:{seed}")
    picked = [{**r, "id": f"{r['id']}-junk"} for r in rows if rng.random() < share]
    rates = {t.name: 0.0 for t in TYPES} | JUNK
    return [r for r in perturb_examples(picked, seed=seed, task=task, rates=rates) if r["output"] is None]


def imperfect_judge(labels: Sequence[str], wrong_rate: float, seed: int) -> Judge:
    """An LLM judge as one really is (classification): it fails what exact match fails, but a
    `wrong_rate` share of its corrections name a third label, and a request with no valid answer (junk,
    attacks) is failed with a confident label instead of an abstention."""
    rng = random.Random(f"judge:{seed}")

    def judge(expected: Any, prediction: Any) -> tuple[str, Any, str]:
        if expected is None:
            wrong = rng.choice([lab for lab in labels if lab != prediction])
            return "fail", wrong, f"the user wants {wrong}"
        verdict, correction, reasoning = exact_match_judge(expected, prediction)
        if verdict == "fail" and rng.random() < wrong_rate:
            wrong = rng.choice([lab for lab in labels if lab not in (expected, prediction)])
            return "fail", wrong, f"the user wants {wrong}"
        return verdict, correction, reasoning

    return judge
