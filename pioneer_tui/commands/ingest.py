"""`pioneer-tui ingest FILE`: load judged traces into the workspace, from flat files or the sources
people already have (OpenAI chat JSONL, Parquet, a Hugging Face dataset folder, OpenTelemetry GenAI
spans, a Langfuse export)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.errors import UsageError
from engine.ingest import DEFAULT_MAX_ROWS, DEFAULT_TIMEOUT_S, FORMATS, FieldMap, ingest_traces
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest", help="ingest judged traces (JSONL, CSV, SQLite, Parquet, HF datasets, OpenAI chat, OTel, Langfuse)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Validate every trace and write them in one transaction. By default one invalid record "
        "stops the ingest with nothing written; re-ingesting a file never duplicates a trace.",
        epilog="formats (default: from the extension; a .jsonl/.json file from its first record):\n"
        "  jsonl csv sqlite parquet  flat traces, one field per key or column\n"
        "  hf        a folder written by datasets' save_to_disk (--table SPLIT for a DatasetDict)\n"
        "  openai    chat JSONL {\"messages\": [...]}: input = the conversation up to the last user turn,\n"
        "            prediction = the assistant's answer, other top-level keys into metadata\n"
        "  otel      OpenTelemetry GenAI spans (OTLP/JSON): gen_ai.input/output.messages or gen_ai.prompt/completion\n"
        "  langfuse  a Langfuse export of traces / GENERATION observations; pass/fail scores are the verdict\n"
        "--map examples:\n"
        "  --map label=verdict                         rename a field (or column)\n"
        "  --map judge=metadata.judge --map notes=     move one into metadata; drop one\n"
        "  --map input=request.messages.-1.content     take a field from a dotted path (-1: last item)\n"
        "  --map model_id=const:my-model               set a field to a constant")
    parser.add_argument("file", help="a trace file (.jsonl .json .csv .parquet, a SQLite database) or a dataset folder")
    parser.add_argument("--format", choices=FORMATS, help="source format (default: detected)")
    parser.add_argument("--table", help="table (or view) of a SQLite source; split of a Hugging Face DatasetDict")
    parser.add_argument("--map", action="append", default=[], metavar="SPEC",
                        help="SRC=FIELD, SRC=metadata.KEY or SRC= (rename, move into metadata, drop); "
                        "FIELD=PATH or FIELD=const:TEXT (from a dotted path, or a constant); repeatable")
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
