"""`pioneer-tui ingest FILE`: load judged traces (JSONL, CSV or a SQLite table) into the workspace."""

from __future__ import annotations

import argparse
from typing import Any

from engine.errors import UsageError
from engine.ingest import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, FORMATS, FieldMap, ingest_traces
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest", help="ingest judged traces from JSONL, CSV or a SQLite table",
        description="Validate every trace and write them in one transaction. By default one invalid row "
        "stops the ingest with nothing written; re-ingesting a file never duplicates a trace.")
    parser.add_argument("file", help="a .jsonl / .csv file or a SQLite database")
    parser.add_argument("--format", choices=FORMATS, help="source format (default: from the extension)")
    parser.add_argument("--table", help="table (or view) to read from a SQLite source")
    parser.add_argument("--map", action="append", default=[], metavar="SRC=DST",
                        help="rename a foreign field: SRC=FIELD, SRC=metadata.KEY, or SRC= to drop it (repeatable)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="write the valid rows and put each invalid one, with its reason, in a rejects file")
    parser.add_argument("--rejects", metavar="FILE",
                        help="rejects file for --skip-invalid (default: artifacts/ingest/<name>.<hash>.rejects.jsonl); "
                        "never the input, a workspace file, or a file holding anything but earlier rejects")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of a JSONL/CSV file (default: utf-8)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"time limit in seconds for the whole ingest (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                        help=f"refuse a source with more records than this (default {DEFAULT_MAX_ROWS:,})")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    if args.rejects and not args.skip_invalid:
        raise UsageError("--rejects only applies with --skip-invalid")
    result = ingest_traces(ctx.store, args.file, format=args.format, table=args.table,
                           mapping=FieldMap.parse(args.map), skip_invalid=args.skip_invalid,
                           rejects_path=args.rejects, encoding=args.encoding, timeout_s=args.timeout,
                           max_rows=args.max_rows)
    if args.json:
        ctx.emit_json(result.to_dict())
    else:
        print(result.summary())
    return 0
