"""What the production-mode benchmarks share: judging a deployment's traffic into traces, and the
model a run is reported by."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from engine.data.perturb import LogTiming, to_trace_rows
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
    trainers built without a thread count read $OMP_NUM_THREADS (engine.models.encoder.set_threads)."""
    if n:
        import torch

        os.environ["OMP_NUM_THREADS"] = str(n)
        torch.set_num_threads(n)


def judged_traffic(store: Store, folder: Path, rows: list[dict[str, Any]], predictions: list[Any], *,
                   model_id: str, task: str, source: str, seed: int) -> list[dict[str, Any]]:
    """The deployed model's answers to `rows` as traces judged by exact match, ingested into `store`."""
    traces = to_trace_rows(rows, predictions, model_id=model_id, stage="production", seed=seed, task=task,
                           timing=LogTiming(timeout_rate=0.0), source=source)
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
