"""`pioneer-tui query "SQL"`: read-only SQL over the traces view; the full result goes to a file."""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.errors import UsageError
from engine.escape import terminal
from engine.query import DEFAULT_LIMIT, DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, QueryResult, query_traces
from pioneer_tui.cli import Context

TABLE_ROWS = 20  # rows shown in the terminal table; the file holds them all
POST_MAX_OUTPUT = 64 * 1024 * 1024  # bytes a --post pipeline may print; a bigger output is an error
# What a query reads, word for word as in the README's reliability section (a test holds them together).
READS = "the `traces` view and, read-only too, every other workspace table (runs, events, models, ...)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "query", help="run a read-only SQL query over the traces view",
        description=f"One read-only SELECT over {READS}; in `traces`, verdict is the human verdict when there is "
        "one, else the judge's. The full result is saved under artifacts/queries/; the terminal shows a summary. "
        "Example: pioneer-tui query \"SELECT id, input, prediction, correction FROM traces WHERE verdict = 'fail'\"")
    parser.add_argument("sql", help="one SELECT statement")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the summary (count, columns, first rows, path) as JSON")
    output.add_argument("--csv", action="store_true", help="print the full result as CSV")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"row limit (default {DEFAULT_LIMIT:,})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"stop fetching after this many bytes of text and BLOBs (default {DEFAULT_MAX_BYTES:,})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"time limit in seconds for the query and for --post (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--post", metavar="PIPELINE",
                        help="shell pipeline that gets the full result as CSV on stdin; its output is printed "
                        "(e.g. --post \"cut -d, -f3 | sort | uniq -c\"); it is stopped, with everything it started, "
                        "at --timeout and when it ends")
    parser.add_argument("--spreadsheet-safe", action="store_true",
                        help="in the CSV, prefix text cells starting with = + - @ with an apostrophe, so a "
                        "spreadsheet shows them instead of running them as formulas")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.csv and args.post:
        raise UsageError("--csv prints the full result and --post pipes it; pick one")
    db = ctx.workspace.db_path
    result = query_traces(
        ctx.store if db.exists() else db, args.sql, limit=args.limit, timeout_s=args.timeout,
        out_dir=ctx.workspace.artifacts / "queries", preview_rows=TABLE_ROWS, max_bytes=args.max_bytes,
        spreadsheet_safe=args.spreadsheet_safe)
    if args.json:
        ctx.emit_json(result.to_dict())
    elif args.csv:
        _write_data(Path(result.path).read_text(encoding="utf-8"))
        print(footer(result), file=sys.stderr)
    elif args.post:
        _write_data(pipe(args.post, Path(result.path), args.timeout))
        print(footer(result), file=sys.stderr)
    else:
        show_table(result)
    return 0


def _write_data(text: str) -> None:
    """Data goes to a pipe byte for byte; a terminal gets its control characters escaped."""
    sys.stdout.write(terminal(text) if sys.stdout.isatty() else text)


def pipe(pipeline: str, csv_path: Path, timeout_s: float) -> str:
    """Run the user's shell pipeline on the saved CSV; its stdout is the answer. It runs in its own
    session, killed as a whole at the time limit and once the shell exits (a background `yes &` goes
    too); its output is a file capped at POST_MAX_OUTPUT bytes, so a runaway writer cannot fill memory."""
    def cap_output() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (POST_MAX_OUTPUT + 1, POST_MAX_OUTPUT + 1))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    with open(csv_path, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(pipeline, shell=True, stdin=stdin, stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=cap_output)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise UsageError(f"--post pipeline ran past {timeout_s:g} s and was stopped; the full result is saved "
                            f"at {csv_path}") from None
        finally:
            _kill_session(proc)
        size = out.seek(0, os.SEEK_END)
        if size > POST_MAX_OUTPUT:
            raise UsageError(f"--post pipeline printed more than {POST_MAX_OUTPUT:,} bytes and was stopped; narrow "
                            f"it, or read the full result at {csv_path}")
        if proc.returncode != 0:
            err.seek(0)
            last = (err.read().decode(errors="replace").strip().splitlines() or ["no error output"])[-1]
            raise UsageError(f"--post pipeline exited with {proc.returncode}: {last}")
        out.seek(0)
        return out.read().decode(errors="replace")


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def footer(result: QueryResult) -> str:
    cut = {"rows": "; row limit reached, result cut off (raise --limit or aggregate)",
           "bytes": "; byte limit reached, result cut off (raise --max-bytes or select less)"}.get(
        result.truncated_by or "", "")
    return f"{result.row_count:,} rows in {result.elapsed_ms:.0f} ms{cut}; full result: {result.path}"


def show_table(result: QueryResult) -> None:
    """Cells are Text, never markup, and their control characters are escaped: a trace is data."""
    table = Table(show_lines=False)
    for column in result.columns:
        table.add_column(Text(terminal(column)))
    for row in result.preview:
        table.add_row(*(Text("NULL" if v is None else terminal(v)) for v in row.values()))
    console = Console()
    console.print(table)
    shown = f" (first {len(result.preview)} shown)" if len(result.preview) < result.row_count else ""
    console.print(footer(result) + shown, highlight=False, markup=False, soft_wrap=True)
