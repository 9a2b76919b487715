"""`pioneer-tui models [--json]`: the model registry with lineage (parent chain, dataset version)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pioneer_tui.cli import Context
from store.registry import MODEL_STATUSES

HEADLINE = ("accuracy", "entity_f1", "exact_match", "rougeL")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("models", help="list trained models with lineage and metrics")
    parser.add_argument("--status", choices=MODEL_STATUSES, help="only models with this status")
    parser.add_argument("--json", action="store_true", help="print the rows (with lineage) as JSON")
    parser.set_defaults(handler=run)


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
