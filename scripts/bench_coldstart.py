"""Cold-start benchmarks: baseline -> best, iterations, wall time, each measured in the same run.

    python scripts/bench_coldstart.py [sms] [clinc] [decoder] [--data-dir ../shared/data] [--out DIR]

- sms: SMS spam (UCI), stratified 80/20, F1 of the spam class on the 20% (target >= 0.97 in
  under 15 minutes on a 2-core machine);
- clinc: CLINC150, the 150 in-scope intents; E is 1,500 items (10 per intent) of the validation split,
  the training pool 7,500 rows (50 per intent, so a fine-tune fits a CPU budget; one epoch); the best
  model is then scored on the official test split (target test accuracy >= 0.90), next to the
  nearest-centroid baseline on the same test split;
- decoder: the embedded SmolLM2-135M-Instruct learning reasoning-gym basic_arithmetic (two-term
  sums and differences of up to two digits) as a bare-number answer: base model (zero-/few-shot)
  exact match -> fine-tuned exact match (format learning).
Each benchmark runs cold-start mode headless (auto-approve) in a fresh workspace under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

# One thread per process: on a shared 2-core machine OpenMP threads of several processes spin against
# each other and training slows down by an order of magnitude (measured: 1.3 vs ~50 examples/s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.coldstart.analysis import TaskAnalysis  # noqa: E402
from engine.coldstart.baselines import nearest_centroid  # noqa: E402
from engine.coldstart.eval_sets import HeldOutItem, HeldOutSet, score_held_out  # noqa: E402
from engine.coldstart.mode import ColdStartSummary, cold_start  # noqa: E402
from engine.coldstart.registry import load_source  # noqa: E402
from engine.coldstart.setup import ColdStartConfig, load_setup, make_embedder  # noqa: E402
from engine.models.predictor import load_predictor  # noqa: E402
from engine.search.reviewer import HeadlessReviewer  # noqa: E402
from store import Store  # noqa: E402

THREADS = int(os.environ["OMP_NUM_THREADS"])

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _progress(name: str, started: float):
    """A subscriber that logs each step with the minutes elapsed (so a long run can be followed)."""
    def log(event) -> None:
        p = event.payload
        text = {"curation_note": lambda: p.get("section") if p.get("node_id") is None else None,
                "train_started": lambda: f"train {p.get('node_id', '').rsplit('.', 1)[-1]} ({p.get('total_steps')} steps)",
                "node_evaluated": lambda: f"{p.get('node_id', '').rsplit('.', 1)[-1]} {p.get('status')} score "
                                          f"{p.get('score')}",
                "curriculum_proposed": lambda: f"curriculum {p.get('composition')}",
                "run_finished": lambda: f"finished: {p.get('reason')}"}.get(event.type, lambda: None)()
        if text:
            print(f"  [{name} {(time.perf_counter() - started) / 60:5.1f} min] {text}", flush=True)
    return log


def _run(name: str, out: Path, config: ColdStartConfig) -> tuple[ColdStartSummary, Store, float]:
    workspace = out / name
    shutil.rmtree(workspace, ignore_errors=True)
    store = Store(workspace)
    torch.set_num_threads(THREADS)
    config = replace(config, trainer_threads=THREADS)
    started = time.perf_counter()
    summary = cold_start(store, config, reviewer=HeadlessReviewer("auto"), subscribers=(_progress(name, started),))
    return summary, store, time.perf_counter() - started


def _line(name: str, summary: ColdStartSummary, wall: float, target: str) -> None:
    metric = summary.analysis["metric"]
    best = summary.best_score if summary.best_score is not None else float("nan")
    ratio = best / summary.baseline_score if summary.baseline_score else float("inf")
    trained = [c for c in summary.configs if c.status in ("evaluated", "failed")]
    print(f"[{name}] {metric}: baseline {summary.baseline} {summary.baseline_score:.4f} -> best {best:.4f} "
          f"({ratio:.2f}x the baseline; {target}) | iterations {summary.iterations}, configurations trained "
          f"{len(trained)} | wall {wall / 60:.1f} min | stop: {summary.reason}", flush=True)
    for c in summary.configs:
        score = "—" if c.score is None else f"{c.score:.4f}"
        print(f"    {c.node_id.rsplit('.', 1)[-1]} it{c.iteration} {c.operator:<6} {c.method:<12} lr {c.learning_rate:<8g}"
              f" {c.supervision:<16} prompt={'yes' if c.system_prompt else 'no ':<3} {c.status:<9} {score}", flush=True)


def bench_sms(data_dir: Path, out: Path, minutes: float = 15.0) -> dict:
    config = ColdStartConfig("detect spam in SMS messages", data=str(data_dir / "sms_spam" / "SMSSpamCollection.tsv"),
                             eval_fraction=0.2, max_iterations=3, max_minutes=minutes, seed=0)
    name = "sms" if minutes == 15.0 else f"sms-{minutes:g}min"
    summary, store, wall = _run(name, out, config)
    store.close()
    _line(name, summary, wall, f"target F1(spam) >= 0.97 in < 15 min; search budget {minutes:g} min")
    return {"summary": summary.to_dict(), "wall_s": wall}


def bench_clinc(data_dir: Path, out: Path) -> dict:
    path = data_dir / "clinc150" / "data_full.json"
    config = ColdStartConfig("identify the intent of a user query", data=str(path), data_options={"oos": False},
                             max_eval=1500, max_train_rows=7500, max_iterations=1, max_minutes=60.0,
                             hyperparams={"epochs": 1.0}, seed=0)
    summary, store, wall = _run("clinc", out, config)
    _line("clinc", summary, wall, "target test accuracy >= 0.90")
    setup = load_setup(store, summary.run_id)
    data = load_source(str(path), oos=False)
    test = data.splits["test"]
    analysis: TaskAnalysis = setup.analysis
    test_set = HeldOutSet("classification", "accuracy", [HeldOutItem(str(ex.id), ex.input, ex.output, "pos", ex.output)
                                                        for ex in test])
    embedder = make_embedder("base", setup.base, setup.family, [], 0)
    started = time.perf_counter()
    centroid = nearest_centroid(data.train, test_set, analysis, embedder)
    result = {"summary": summary.to_dict(), "wall_s": wall, "test_nearest_centroid": centroid.score}
    if summary.best_model:
        model = store.models.get(summary.best_model)
        predictor = load_predictor(model["artifact_path"])
        preds = predictor.predict([ex.input for ex in test])
        scored = score_held_out(test_set, [p.output for p in preds], analysis)
        result["test_accuracy"] = scored.score
        print(f"[clinc] official test split ({len(test)}): nearest-centroid baseline {centroid.score:.4f} -> best model "
              f"{scored.score:.4f} ({scored.score / centroid.score:.2f}x; target >= 0.90; scored in "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
    store.close()
    return result


def bench_decoder(data_dir: Path, out: Path) -> dict:
    config = ColdStartConfig("calculate the result of arithmetic expressions",
                             data="reasoning-gym:basic_arithmetic",
                             data_options={"size": 400, "min_terms": 2, "max_terms": 2, "min_digits": 1,
                                           "max_digits": 2, "operators": ["+", "-"], "allow_parentheses": False,
                                           "allow_negation": False},
                             base="smollm2", max_eval=60, adversarial=20, max_iterations=1, max_minutes=12.0,
                             hyperparams={"epochs": 2.0}, seed=0)
    summary, store, wall = _run("decoder", out, config)
    store.close()
    _line("decoder", summary, wall, "format learning: base model -> fine-tuned")
    return {"summary": summary.to_dict(), "wall_s": wall}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="*", choices=["sms", "clinc", "decoder"], default=[])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None, help="workspaces and results (default: a temp folder)")
    parser.add_argument("--sms-minutes", type=float, default=15.0, help="the SMS search's wall-clock budget")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        print(f"data folder {args.data_dir} is missing: pass --data-dir (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"cold-start benchmarks in {out} (torch threads: {THREADS}, "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)
    for name in args.which or ["sms", "clinc", "decoder"]:
        if name == "sms":
            result = bench_sms(args.data_dir, out, args.sms_minutes)
        else:
            result = {"clinc": bench_clinc, "decoder": bench_decoder}[name](args.data_dir, out)
        (out / f"results-{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
