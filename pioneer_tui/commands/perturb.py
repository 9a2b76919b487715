"""`pioneer-tui perturb IN OUT --seed N [--rates FILE] [--task ...]`: a noisy copy of a JSONL dataset.

Applies the AdaptFT-Bench perturbations (engine/data/perturb.py) and records in each row's
`metadata.perturbations` which types were applied and whether each is fixable or poisonous.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.data.datasets_io import jsonl_rows, parse_row
from engine.data.perturb import infer_task, load_rates, perturb_examples, summarize
from engine.data.perturb_types import BY_NAME
from engine.errors import DatasetError, UsageError
from engine.records import TASKS
from engine.tasks import task_type
from pioneer_tui.cli import Context
from store.artifacts import atomic_write_jsonl


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "perturb",
        help="write a perturbed (noisy) copy of a JSONL dataset, AdaptFT-Bench style",
        description="Apply the 33 AdaptFT-Bench perturbation types (typos, OCR artifacts, preambles, "
        "off-domain queries, prompt injection, duplicates, ...) at the paper's rates to a JSONL file of "
        '{"input", "output", optional "id" and "metadata"} rows. Each output row records '
        'metadata.perturbations = [{"type", "class": "fixable"|"poisonous"}], metadata.label_valid and, '
        "when a perturbation changed the answer, metadata.original_output (output then holds the new "
        "expected answer, or null when no answer fits). Duplicates and retry storms add rows.",
    )
    parser.add_argument("input", metavar="IN", type=Path, help="JSONL examples to perturb")
    parser.add_argument("output", metavar="OUT", type=Path, help="JSONL file to write (atomically)")
    parser.add_argument("--seed", type=int, required=True, help="random seed; the same seed gives the same file")
    parser.add_argument("--rates", type=Path, metavar="FILE",
                        help="JSON object mapping type name -> rate in [0, 1]; unlisted types keep the "
                        "paper's defaults")
    parser.add_argument("--task", choices=TASKS,
                        help="default: ner for span/BIO lists, generation for long, multi-line or mostly "
                        "distinct answers, classification otherwise")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    rates = load_rates(args.rates) if args.rates else None
    examples, task = read_examples(args.input, args.task)
    rows = perturb_examples(examples, seed=args.seed, task=task, rates=rates)
    atomic_write_jsonl(args.output, rows)
    summary = {"output": str(args.output), "task": task, "seed": args.seed, **summarize(rows)}
    if args.json:
        ctx.emit_json(summary)
        return 0
    print(f"wrote {summary['rows']} rows to {args.output} (task {task}, seed {args.seed}): "
          f"{summary['examples']} examples, {summary['perturbed']} perturbed, {summary['poisonous']} with a "
          f"poisonous type, {summary['label_invalid']} with a changed answer; {summary['extra_rows']} extra rows "
          "(duplicates, retries)")
    for name, count in summary["types"].items():
        print(f"  {name:<32} {count:>7}  {BY_NAME[name].cls}")
    return 0


def read_examples(path: Path, task: str | None) -> tuple[list[dict[str, Any]], str]:
    """Rows of a JSONL file validated for `task` (inferred when None); UsageError names file/line/field."""
    raw: list[tuple[str, dict[str, Any]]] = []
    for number, row in jsonl_rows(path):
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        raw.append((f"{path}:{number}", row))
    if not raw:
        raise UsageError(f"{path}: no examples (empty file or only blank lines)")
    if task is None:
        chat = any("messages" in row for _, row in raw)
        task = "generation" if chat else infer_task([row.get("output") for _, row in raw])
    examples, seen = [], {}
    for where, row in raw:
        try:
            example = parse_row(row, task, where)
        except DatasetError as exc:
            raise UsageError(f"{exc}; fix the row or pass --task") from None
        metadata = row.get("metadata", {})
        if not isinstance(metadata, dict):
            raise UsageError(f"{where}: field 'metadata': expected a JSON object, got {type(metadata).__name__}")
        if example.id is not None:
            if example.id in seen:
                raise UsageError(f"{where}: field 'id': {example.id!r} already used on {seen[example.id]}; "
                                "ids must be unique")
            seen[example.id] = where
        if task_type(task).spans:
            given = row.get("output")
            output = given if given and isinstance(given[0], dict) else [
                {"start": s.start, "end": s.end, "label": s.label} for s in example.output]
        else:
            output = example.output
        extra = {k: v for k, v in row.items() if k not in ("input", "output", "metadata", "id", "messages", "tokens")}
        examples.append({**extra, "id": example.id, "input": example.input, "output": output, "metadata": metadata})
    return examples, task
