"""`pioneer-tui improve --model MODEL`: production mode on a deployed model and its judged traces.

Headless, it prints the failure taxonomy, each iteration's scores and gate verdicts and the final
decision (exit 0 when a model was promoted or the deployed one kept for a stated reason). Without
--headless it opens the TUI on the live run (the human gates are answered there).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from engine.diagnosis.embedders import EMBEDDERS
from engine.escape import terminal
from engine.events import (
    CurationNote,
    CurriculumProposed,
    DecisionRecorded,
    GateChecked,
    NodeAdded,
    NodeEvaluated,
    Promoted,
    Rollback,
    RunFinished,
    TaxonomyBuilt,
    TrainProgress,
    TrainStarted,
    decode,
)
from engine.ingest import ingest_traces
from engine.llm_options import completion_options
from engine.production import ProductionConfig, ProductionSummary, deployed_model, improve
from engine.records import TASKS
from engine.search.gates import DEFAULT_MAX_REGRESSION_RATE, GATE_RULES
from engine.search.reviewer import HeadlessReviewer, Reviewer, StdinReviewer
from pioneer_tui.cli import Context
from store import Event, Store
from widgets.formatting import duration

APPROVALS = ("auto", "ask", "never")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "improve", help="production mode: fix a deployed model's failures, promote only through the gates",
        description="Diagnose the deployed model's judged traces (taxonomy, fixable vs poison, probes), build "
        "targeted curricula, retrain from the base model, and promote a candidate only through the gates: by "
        "default (--gate traffic) it must be significantly better on traffic like the run's, weighed on items it "
        "never trained on, within your regression budget; --gate strict is the paper's rule (a >= tau, "
        "r <= epsilon, also on the previous checkpoint's set).")
    parser.add_argument("--model", required=True, help="registry id or name of the deployed model")
    parser.add_argument("--traces", type=Path, metavar="FILE", help="ingest this trace file first")
    parser.add_argument("--task", choices=TASKS, help="task of the traces (default: the model's)")
    parser.add_argument("--headless", action="store_true", help="run in the terminal instead of the TUI")
    parser.add_argument("--approve", choices=APPROVALS, default="ask",
                        help="headless human gates: auto-approve, ask on stdin (default), or refuse everything")
    parser.add_argument("--max-iterations", type=int, default=6, help="training iterations budget (default 6)")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="wall-clock budget (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gate", choices=GATE_RULES, default="traffic",
                        help="promotion rule: traffic (default: a significant gain within the regression budget) "
                        "or strict (the paper's: a >= tau and at most epsilon regressions)")
    parser.add_argument("--max-regressions", type=int, metavar="N",
                        help="traffic rule: at most N broken regression-set items (default: no count cap)")
    parser.add_argument("--max-regression-rate", type=float, metavar="R", default=DEFAULT_MAX_REGRESSION_RATE,
                        help="traffic rule: at most this share of regression-set items broken "
                        f"(default {DEFAULT_MAX_REGRESSION_RATE})")
    parser.add_argument("--churn-budget", action="store_true",
                        help="traffic rule: first retrain the deployed model's own recipe and data with another seed, "
                        "and allow at least the share of guarded held-out items that retrain breaks (its churn; one extra training)")
    parser.add_argument("--search-on", type=int, default=2, metavar="N",
                        help="after a candidate passes but fixes less than tau of the held-out failures, try up to N "
                        "more candidates for a better one before offering the best (default 2; 0: offer at once)")
    parser.add_argument("--tau", type=float, default=0.96, help="strict rule: failure-set score a candidate must reach")
    parser.add_argument("--epsilon", type=int, default=2, help="strict rule: regressions a candidate may cause")
    parser.add_argument("--embedder", choices=EMBEDDERS, default="auto",
                        help="similarity for triage, probes and hard negatives (minilm: the embedded encoder)")
    parser.add_argument("--since", metavar="TS", help="read only traces at or after this ISO time")
    parser.add_argument("--until", metavar="TS", help="read only traces before this ISO time")
    parser.add_argument("--max-traces", type=int, metavar="N", help="read at most N traces of the window: a seeded "
                        "sample, stratified by verdict (for a model with millions of logged inferences)")
    add_llm_arguments(parser, "the planner: the next move and the fixability of each failure cluster "
                              "(default: the rules)")
    parser.add_argument("--json", action="store_true", help="headless: print the final summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store
    if args.traces is not None:
        print(ingest_traces(store, args.traces).summary(), file=sys.stderr if args.json else sys.stdout)
    config = ProductionConfig(model=args.model, task=args.task, seed=args.seed, tau=args.tau,
                              epsilon=args.epsilon, max_iterations=args.max_iterations,
                              max_minutes=args.max_minutes, embedder=args.embedder, gate=args.gate,
                              max_regressions=args.max_regressions,
                              max_regression_rate=args.max_regression_rate, churn_budget=args.churn_budget,
                              search_on=args.search_on,
                              since=args.since, until=args.until, max_traces=args.max_traces,
                              llm=args.llm, llm_options=completion_options(args.llm_api_base))
    deployed_model(store, args.model)

    def start(reviewer: Reviewer, subscribers: tuple[Callable[[Event], None], ...], run_store: Store,
              should_stop: Callable[[], bool] | None = None) -> ProductionSummary:
        return improve(run_store, config, reviewer=reviewer, subscribers=(*subscribers, *tracking(args)),
                       should_stop=should_stop)

    if not args.headless:
        return open_tui(ctx, start)
    return run_headless(args, ctx, start)


def run_headless(args: argparse.Namespace, ctx: Context, start: Callable[..., ProductionSummary]) -> int:
    """Narrate the run on stdout (stderr with --json, whose summary then goes to stdout)."""
    from pioneer_tui.commands.train import quiet_transformers

    quiet_transformers()
    out = sys.stderr if args.json else sys.stdout
    summary = start(reviewer_for(args.approve, out), (RunPrinter(out),), ctx.store)
    if args.json:
        ctx.emit_json(summary.to_dict())
    return 0 if summary.status == "finished" else 130


def tracking(args: argparse.Namespace) -> tuple[Callable[[Event], None], ...]:
    """The run's extra subscribers: MLflow when --mlflow names a tracking URI."""
    if not args.mlflow:
        return ()
    from engine.mlflow_tracking import MLflowSubscriber

    return (MLflowSubscriber(args.mlflow),)


def add_llm_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--llm and --llm-api-base, and --mlflow: what a run may reach outside the workspace."""
    parser.add_argument("--mlflow", metavar="URI", help="log the run to MLflow: a tracking server "
                        "(http://host:5000) or a local folder (pip install 'pioneer-tui[mlflow]')")
    parser.add_argument("--llm", metavar="MODEL", help=f"a litellm model for {what}")
    parser.add_argument("--llm-api-base", metavar="URL", help="an OpenAI-compatible server for --llm (a local vLLM "
                        "or Ollama: --llm openai/<name> --llm-api-base http://localhost:8000/v1)")


def reviewer_for(approve: str, out: TextIO) -> Reviewer:
    if approve == "ask":
        return StdinReviewer(sys.stdin, out)
    return HeadlessReviewer("auto" if approve == "auto" else "never")


def open_tui(ctx: Context, start: Callable[..., Any]) -> int:
    """Open the TUI on the live run: `start` runs on the app's engine worker with its own Store."""
    from pioneer_tui.app import run_app

    def hook(session: Any) -> None:
        with Store(session.workspace) as store:  # the engine thread's own connection
            start(session.reviewer, (session.on_event,), store, session.should_stop)

    return int(run_app(ctx, run=hook) or 0)


class RunPrinter:
    """An EventBus subscriber that narrates a run in the terminal, from the typed events (engine.events)."""

    PROGRESS_EVERY_S = 10.0  # the engine reports every half second; a terminal log wants a line now and then

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._progress_at = 0.0

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:  # decoded only when narrated, like the TUI's fold
            handler(decode(event))
            self.out.flush()

    def _say(self, text: str) -> None:
        self.out.write(terminal(text) + "\n")  # trace, model and LLM text is data: no escape sequences

    def _on_taxonomy_built(self, e: TaxonomyBuilt) -> None:
        self._say(f"Failure taxonomy: {e.n_fail or 0} failing, {e.n_pass or 0} passing traces, "
                  f"{len(e.clusters)} clusters")
        for c in e.clusters:
            probe = "" if c.confirmation_rate is None else f"  probes fail {c.confirmation_rate:.0%}"
            self._say(f"  {c.id:<4} {c.size:>5}  {c.fixability:<9} {c.name}{probe}")
        if e.triage:
            self._say("  triage: " + ", ".join(f"{k} {v}" for k, v in e.triage.items()))

    def _on_curation_note(self, e: CurationNote) -> None:
        if e.node_id is None and e.section in ("Traces", "Evaluation sets", "Deployment"):
            self._say(f"{e.section}:")
            for line in e.markdown.splitlines():
                self._say(f"  {line}")

    def _on_node_added(self, e: NodeAdded) -> None:
        origin = f"{e.operator} from {_short(e.parent_id)}" if e.parent_id else "root"
        self._say(f"node {_short(e.node_id)} (iteration {e.iteration}, {origin}): {e.rationale or ''}")

    def _on_curriculum_proposed(self, e: CurriculumProposed) -> None:
        comp = ", ".join(f"{k} {v}" for k, v in e.composition.items())
        self._say(f"  curriculum {e.dataset_version_id}: {comp}")

    def _on_decision_recorded(self, e: DecisionRecorded) -> None:
        why = f" — {e.reason}" if e.reason and e.kind == "curriculum" else ""
        self._say(f"  {e.kind} {e.action} by {e.who}{why}")

    def _on_train_started(self, e: TrainStarted) -> None:
        self._say(f"  training {_short(e.node_id)} from the base model: {e.total_steps} steps")

    def _on_train_progress(self, e: TrainProgress) -> None:
        """A progress line every PROGRESS_EVERY_S while a node trains, with the time left."""
        now = time.monotonic()
        if not e.total_steps or e.step >= e.total_steps or now - self._progress_at < self.PROGRESS_EVERY_S:
            return
        self._progress_at = now
        rate = f", {e.examples_per_s:.0f} ex/s" if e.examples_per_s else ""
        eta = f", about {duration(e.eta_s)} left" if e.eta_s is not None else ""
        self._say(f"    step {e.step}/{e.total_steps} ({e.step / e.total_steps:.0%}){rate}{eta}")

    def _on_node_evaluated(self, e: NodeEvaluated) -> None:
        m = e.metrics
        if e.status == "failed":
            self._say(f"  {_short(e.node_id)} failed: {m.get('error')}")
            return
        fixed = f", fixed {m['failure_set.fixed']}/{m['failure_set.fixable']}" if "failure_set.fixed" in m else ""
        held = f" ({m['fix_holdout.fixed']}/{m['fix_holdout.size']} held out)" if "fix_holdout.size" in m else ""
        r = e.regressions
        cross = m.get("cross_checkpoint.regressions")
        self._say(f"  {_short(e.node_id)}: score {e.score:.4f}{fixed}{held}, regressions "
                  f"{'—' if r is None else r}" + ("" if cross is None else f", previous-checkpoint regressions {cross}"))

    def _on_gate_checked(self, e: GateChecked) -> None:
        name, value, limit = e.words
        self._say(f"    {'PASS' if e.passed else 'FAIL'} {name}: {value} ({limit})")

    def _on_rollback(self, e: Rollback) -> None:
        self._say(f"  rollback {_short(e.node_id)}: {e.from_model} -> {e.to_model} ({e.reason})")

    def _on_promoted(self, e: Promoted) -> None:
        anyway = f", anyway: {e.override}" if e.override else ""
        self._say(f"promoted {e.model_id} (node {_short(e.node_id)}, score {e.score:.4f}{anyway})")

    def _on_run_finished(self, e: RunFinished) -> None:
        self._say(f"Final decision: {e.outcome or '—'}")
        self._say(f"Stopped because: {e.reason}")
        if e.promote_command:
            if e.broken:
                self._say(f"Passes it broke ({len(e.broken)} shown):")
                for r in e.broken:
                    self._say(f"  {r.get('id')}: {str(r.get('input'))[:60]!r} expected {r.get('expected')}, "
                              f"now {r.get('prediction')}")
            self._say(f"To promote the close call {e.close_call} with your reason:\n  {e.promote_command}")


def _short(node_id: Any) -> str:
    return str(node_id).rsplit(".", 1)[-1] if node_id else "—"
