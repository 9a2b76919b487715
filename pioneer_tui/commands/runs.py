"""`pioneer-tui runs [--json]`: every run with its status, best score and the budget it spent (the same
rows and cells as the workbench's runs list, from pioneer_tui.run_list)."""

from __future__ import annotations

import argparse
from typing import Any

from pioneer_tui.cli import Context
from pioneer_tui.run_list import COLUMNS, run_rows


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="list runs: status, best score, budget spent",
                                   description="Runs in start order. Resume an interrupted one with "
                                   "`pioneer-tui resume RUN`, render one with `pioneer-tui report RUN`.")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    rows = run_rows(ctx.store)
    if args.json:
        ctx.emit_json([r.to_dict() for r in rows])
        return 0
    if not rows:
        print("no runs yet: start one with `pioneer-tui improve --model MODEL`")
        return 0
    table = [COLUMNS, *(r.cells() for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i and rows[i - 1].stop_reason:
            print(" " * (widths[0] + 2) + str(rows[i - 1].stop_reason))
    return 0
