"""`pioneer-tui report RUN`: a self-contained HTML report (plotly inline, opens offline)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.report import write_report
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("report", help="write a run's HTML report",
                                   description="Score per node over time, regressions, cluster sizes before/after "
                                   "and curriculum composition per iteration, in one offline HTML file.")
    parser.add_argument("run", help="run id (see `pioneer-tui runs`)")
    parser.add_argument("--out", type=Path, help="output file (default: artifacts/runs/RUN/report.html)")
    parser.add_argument("--json", action="store_true", help="print the report's path as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if ctx.store.runs.get(args.run) is None:
        raise UsageError(f"run {args.run} does not exist: see `pioneer-tui runs`")
    path = write_report(ctx.store, args.run, args.out)
    if args.json:
        ctx.emit_json({"run": args.run, "report": str(path)})
        return 0
    print(path)
    return 0
