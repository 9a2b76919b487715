"""`pioneer-tui resume RUN`: continue a run that was interrupted or killed, from its stored events.

Decisions already recorded are reused (never asked again); a node whose training was cut off is
trained again from the base model; the search makes the choices an uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from engine.errors import UsageError
from engine.production import summarize_run
from engine.search.loop import resume_run
from engine.search.reviewer import Reviewer
from pioneer_tui.cli import Context
from pioneer_tui.commands.improve import APPROVALS, RunPrinter, open_tui, reviewer_for
from store import Event, Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("resume", help="continue an interrupted or killed run",
                                   description="Continue a run from its events and stored search graph.")
    parser.add_argument("run", help="run id (see `pioneer-tui runs`)")
    parser.add_argument("--headless", action="store_true", help="run in the terminal instead of the TUI")
    parser.add_argument("--approve", choices=APPROVALS, default="ask",
                        help="headless human gates: auto-approve, ask on stdin (default), or refuse everything")
    parser.add_argument("--json", action="store_true", help="headless: print the final summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store
    found = store.runs.get(args.run)
    if found is None:
        raise UsageError(f"run {args.run} does not exist: see `pioneer-tui runs`")
    if found["status"] == "finished":
        if args.json:
            ctx.emit_json({"run": args.run, "status": "finished", "reason": found["stop_reason"], "resumed": False})
        else:
            print(f"run {args.run} already finished: {found['stop_reason'] or 'no reason recorded'}")
        return 0

    def start(reviewer: Reviewer, subscribers: tuple[Callable[[Event], None], ...], run_store: Store,
              should_stop: Callable[[], bool] | None = None) -> Any:
        return resume_run(run_store, args.run, reviewer=reviewer, subscribers=subscribers, should_stop=should_stop)

    if not args.headless:
        return open_tui(ctx, start)
    from pioneer_tui.commands.train import quiet_transformers

    quiet_transformers()
    out = sys.stderr if args.json else sys.stdout
    result = start(reviewer_for(args.approve, out), (RunPrinter(out),), store)
    summary = summarize_run(store, args.run, result) if found["mode"] == "production" else None
    if args.json:
        ctx.emit_json(summary.to_dict() if summary is not None else
                      {"run": args.run, "status": result.status, "reason": result.reason, "outcome": result.outcome,
                       "promoted_model": result.promoted_model, "resumed": True})
    elif summary is not None:
        print(f"{len(summary.iterations)} nodes; {summary.outcome or result.reason}")
    return 0 if result.status == "finished" else 130
