"""`pioneer-tui models [--json]`: the model registry with lineage (parent chain, dataset version);
`pioneer-tui models add PATH --task T [--data D_PARENT]`: register a model trained elsewhere as deployed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.records import TASKS
from pioneer_tui.cli import Context
from store.registry import MODEL_STATUSES

HEADLINE = ("accuracy", "entity_f1", "exact_match", "rougeL")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="list trained models with lineage and metrics")
    parser.add_argument("--status", choices=MODEL_STATUSES, help="only models with this status")
    parser.add_argument("--json", action="store_true", help="print the rows (with lineage) as JSON")
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="models_action", metavar="add")
    add = actions.add_parser(
        "add", help="register a model trained elsewhere as the deployed model",
        description="Copy a transformers model folder or a PEFT LoRA adapter (or a cached Hugging Face id) into "
        "the workspace, check that it loads and runs as a model for --task (labels from its config's id2label), "
        "and register it as deployed; --data (what it was trained on) becomes D_parent for production mode.")
    add.add_argument("source", metavar="PATH_OR_HUB_ID")
    add.add_argument("--task", required=True, choices=TASKS)
    add.add_argument("--data", metavar="SOURCE", help="its training data (JSONL, CSV/TSV, CoNLL, JSON, hf:owner/name)")
    add.add_argument("--name", help="a name to use in --model (default: the new id)")
    add.add_argument("--labels", help="an adapter's class names in the head's order, comma-separated, when its "
                     "folder has no config with id2label")
    add.add_argument("--json", action="store_true", help="print the registered model as JSON")
    add.set_defaults(handler=run_add)


def headline(metrics: dict[str, Any]) -> str:
    if "error" in metrics:
        return str(metrics["error"])[:60]
    for key in HEADLINE:
        if isinstance(metrics.get(key), int | float):
            return f"{key} {metrics[key]:.3f}"
    return ""


def run(args: argparse.Namespace, ctx: Context) -> int:
    models = ctx.store.models
    rows = models.list(args.status)
    for row in rows:
        row["lineage"] = [a["id"] for a in models.ancestors(row["id"])][1:]
    if args.json:
        ctx.emit_json(rows)
        return 0
    if not rows:
        print("no models yet: train one with `pioneer-tui train --data FILE --task ...`")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from engine.escape import terminal

    table = Table(title=f"{len(rows)} model(s)")
    table.add_column("id / name", no_wrap=True)
    for column in ("status", "task", "base", "lineage (parents, data)", "metric", "time"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = f"\n{row['name']}" if row["name"] != row["id"] else ""
        wall = f"{row['wall_time_s']:.0f}s" if row.get("wall_time_s") is not None else ""
        lineage = " <- ".join(row["lineage"])
        if row["dataset_version_id"]:
            lineage += f"{chr(10) if lineage else ''}data {row['dataset_version_id']}"
        cells = (row["id"] + name, row["status"], f"{row['task'] or ''} {row['method'] or ''}",
                 Path(row["base_model"]).name, lineage, headline(row["metrics"]), wall)
        table.add_row(*(Text(terminal(cell)) for cell in cells))  # names are data: never markup
    Console().print(table)
    return 0


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    from engine.coldstart.registry import load_source
    from engine.escape import one_line
    from engine.models.importing import add_model
    from pioneer_tui.commands.train import quiet_transformers

    quiet_transformers()
    data = load_source(args.data) if args.data else None
    labels = tuple(x.strip() for x in (args.labels or "").split(",") if x.strip())
    model_id, metrics = add_model(ctx.store, args.source, args.task, name=args.name, labels=labels,
                                  data=data.train if data else (), data_note=f"{data.origin}: D_parent" if data else "")
    row = ctx.store.models.get(model_id) or {}
    if args.json:
        ctx.emit_json(row)
        return 0
    scored = f"; on its training data: {headline(metrics)}" if metrics else ""
    print(one_line(f"registered {row.get('name')} ({model_id}) as the deployed {args.task} model, "
                   f"{row.get('method')} from {args.source}{scored}"))
    print(one_line(f"next: pioneer-tui improve --model {row.get('name')} --traces TRACES.jsonl"))
    return 0
