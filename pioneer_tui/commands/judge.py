"""`pioneer-tui judge FILE --judge MODEL (--criteria TEXT | --rubric FILE)`: judge unjudged inference logs
with an LLM (engine.eval.trace_judging), write them as judged traces and, with --ingest, load them.
Exit 1 when the judge failed on some rows (they are written apart, unjudged), 0 otherwise."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "judge", help="judge unjudged inference logs with an LLM and write (or ingest) them as judged traces",
        description="Rows are JSONL objects with input and prediction (or output), optionally reference and any "
        "trace field. Claude models (claude-*, anthropic/*) run through the anthropic SDK (rubric prompt-cached, "
        "verdict as a tool call); any other litellm model name works too, and --api-base points it at an "
        "OpenAI-compatible server (e.g. openai/<name> on a local vLLM or Ollama).")
    parser.add_argument("file", type=Path, help="JSONL of unjudged traces")
    parser.add_argument("--judge", required=True, metavar="MODEL", help="the judge model, e.g. claude-sonnet-4-5")
    rubric = parser.add_mutually_exclusive_group(required=True)
    rubric.add_argument("--criteria", help="what a right output does, in a sentence or two")
    rubric.add_argument("--rubric", type=Path, metavar="FILE", help="a text or Markdown file with the criteria")
    parser.add_argument("--api-base", metavar="URL", help="an OpenAI-compatible endpoint (or an Anthropic proxy)")
    parser.add_argument("--pass-mark", type=float, default=0.5,
                        help="share of the judge's scale a pass needs (default 0.5: 3 on 1..5)")
    parser.add_argument("--max-cost", type=float, metavar="USD", help="stop judging once this much is spent")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="stop judging once this many tokens are spent")
    parser.add_argument("--out", type=Path, metavar="FILE", help="judged traces (default: FILE.judged.jsonl)")
    parser.add_argument("--ingest", action="store_true", help="ingest the judged traces into the workspace")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.escape import one_line
    from engine.eval.judge import make_judge, missing_key
    from engine.eval.trace_judging import judge_rows, read_rows
    from engine.search.budget import BudgetLimits
    from store import atomic_write_text

    criteria = args.criteria if args.criteria else _read_rubric(args.rubric)
    missing = missing_key(args.judge, args.api_base)
    if missing:
        raise ConfigError(f"--judge {args.judge} needs {missing} in the environment (export {missing.split(',')[0]}"
                          "=...), or --api-base URL for a local OpenAI-compatible server")
    limits = BudgetLimits(tokens=args.max_tokens, dollars=args.max_cost)
    rows = read_rows(args.file)
    if args.ingest:  # checked before any money is spent
        for number, row in enumerate(rows, 1):
            lacking = [k for k in ("ts", "model_id") if not row.get(k)]
            if lacking:
                raise ConfigError(f"{args.file} row {number}: field {lacking[0]}: missing; --ingest needs ts and "
                                  "model_id on every row (or judge without it, then `ingest --map`)")
    judge = make_judge(args.judge, criteria, api_base=args.api_base)

    def progress(done: int, total: int) -> None:
        if not args.json and (done % 25 == 0 or done == total):
            print(f"  judged {done}/{total}", file=sys.stderr)

    judged, report = judge_rows(rows, judge, model=args.judge, criteria=criteria, pass_mark=args.pass_mark,
                                limits=limits, progress=progress)
    out = args.out or args.file.with_name(args.file.stem + ".judged.jsonl")
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged))
    rest = out.with_name(out.stem + ".unjudged.jsonl")
    if report.unjudged:
        atomic_write_text(rest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.unjudged))
    ingested = None
    if args.ingest and judged:
        from engine.ingest import ingest_traces

        ingested = ingest_traces(ctx.store, out).to_dict()
    code = 1 if report.errors else 0  # a judge that failed on some rows is not a clean pass for a script
    if args.json:
        ctx.emit_json({**report.to_dict(), "out": str(out), "unjudged_out": str(rest) if report.unjudged else None,
                       "ingest": ingested})
        return code
    cost = "cost unknown" if report.cost_usd is None else f"${report.cost_usd:.4f}"
    print(one_line(f"judged {report.judged}: {report.passed} pass, {report.failed} fail ({report.corrected} with a "
                   f"correction); {report.prompt_tokens + report.completion_tokens:,} tokens, {cost} -> {out}"))
    if report.unjudged:
        why = "; ".join(x for x in (report.stopped, report.first_error) if x)
        print(one_line(f"{len(report.unjudged)} left unjudged ({report.errors} judge errors, {report.not_reached} "
                       f"not reached: {why}) -> {rest}"))
    if ingested is not None:
        print(f"ingested {ingested['inserted']} traces ({ingested['duplicates']} duplicates, "
              f"{ingested['rejected']} rejected)")
    return code


def _read_rubric(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--rubric {path}: cannot read it ({exc})") from None
    if not text:
        raise ConfigError(f"--rubric {path}: the file is empty; write the criteria a right output meets")
    return text
