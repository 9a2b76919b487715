"""`pioneer-tui query "SQL"`: read-only SQL over the traces view; the full result goes to a file."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from engine.query import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S, QueryError, QueryResult, Rows, query_traces
from pioneer_tui.cli import Context, UserError

TABLE_ROWS = 20  # rows shown in the terminal table; the file holds them all


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "query", help="run a read-only SQL query over the traces view",
        description="One read-only SELECT over the `traces` view (verdict = the human verdict when there is "
        "one, else the judge's) and the other workspace tables. The full result is saved under "
        "artifacts/queries/; the terminal shows a summary. Example: "
        "pioneer-tui query \"SELECT id, input, prediction, correction FROM traces WHERE verdict = 'fail'\"")
    parser.add_argument("sql", help="one SELECT statement")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the summary (count, columns, first rows, path) as JSON")
    output.add_argument("--csv", action="store_true", help="print the full result as CSV")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"row limit (default {DEFAULT_LIMIT:,})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"time limit in seconds for the query and for --post (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--post", metavar="PIPELINE",
                        help="shell pipeline that gets the full result as CSV on stdin; its output is printed "
                        "(e.g. --post \"cut -d, -f3 | sort | uniq -c\")")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.csv and args.post:
        raise UserError("--csv prints the full result and --post pipes it; pick one")
    db = ctx.workspace.db_path
    try:
        result = query_traces(
            ctx.store if db.exists() else db, args.sql, limit=args.limit, timeout_s=args.timeout,
            out_dir=ctx.workspace.artifacts / "queries", preview_rows=TABLE_ROWS,
            postprocess=(lambda rows: pipe(args.post, rows, args.timeout)) if args.post else None)
    except QueryError as exc:
        raise UserError(str(exc)) from exc
    if args.json:
        ctx.emit_json(result.to_dict())
    elif args.csv:
        sys.stdout.write(Path(result.path).read_text(encoding="utf-8"))
        print(footer(result), file=sys.stderr)
    elif args.post:
        sys.stdout.write(result.post)
        print(footer(result), file=sys.stderr)
    else:
        show_table(result)
    return 0


def pipe(pipeline: str, rows: Rows, timeout_s: float) -> str:
    """Run the user's shell pipeline with the full CSV result on stdin; its stdout is the answer."""
    try:
        done = subprocess.run(pipeline, shell=True, input=rows.to_csv(), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"--post pipeline ran past {timeout_s:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise RuntimeError(f"--post pipeline exited with {done.returncode}: {last}")
    return done.stdout


def footer(result: QueryResult) -> str:
    cut = "; row limit reached, result cut off (raise --limit or aggregate)" if result.truncated else ""
    return f"{result.row_count:,} rows in {result.elapsed_ms:.0f} ms{cut}; full result: {result.path}"


def show_table(result: QueryResult) -> None:
    table = Table(*result.columns, show_lines=False)
    for row in result.preview:
        table.add_row(*(("NULL" if v is None else str(v)) for v in row.values()))
    console = Console()
    console.print(table)
    shown = f" (first {len(result.preview)} shown)" if len(result.preview) < result.row_count else ""
    console.print(footer(result) + shown, highlight=False, markup=False, soft_wrap=True)
