"""`pioneer-tui runs [--json]`: every run with its status, best score and the budget it spent."""

from __future__ import annotations

import argparse
from typing import Any

from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="list runs: status, best score, budget spent",
                                   description="Runs in start order. Resume an interrupted one with "
                                   "`pioneer-tui resume RUN`, render one with `pioneer-tui report RUN`.")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.set_defaults(handler=run)


def run_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for r in ctx.store.runs.list():
        budget = r.get("spent") or {}
        rows.append({"id": r["id"], "mode": r["mode"], "status": r["status"], "best_score": r["best_score"],
                     "spent": budget.get("spent") or {}, "limits": budget.get("limits") or {},
                     "stop_reason": r["stop_reason"], "started_at": r["started_at"], "finished_at": r["finished_at"]})
    return rows


def run(args: argparse.Namespace, ctx: Context) -> int:
    rows = run_rows(ctx)
    if args.json:
        ctx.emit_json(rows)
        return 0
    if not rows:
        print("no runs yet: start one with `pioneer-tui improve --model MODEL`")
        return 0
    header = f"{'run':<18} {'mode':<11} {'status':<12} {'best':>7} {'iters':>7} {'minutes':>8} {'tokens':>7} {'$':>7}  started"
    print(header)
    for r in rows:
        spent, limits = r["spent"], r["limits"]
        iters = f"{spent.get('iterations', 0)}" + (f"/{limits['iterations']}" if limits.get("iterations") else "")
        best = "—" if r["best_score"] is None else f"{r['best_score']:.4f}"
        print(f"{r['id']:<18} {r['mode']:<11} {r['status']:<12} {best:>7} {iters:>7} "
              f"{spent.get('seconds', 0.0) / 60:>8.1f} {spent.get('tokens', 0):>7} {spent.get('dollars', 0.0):>7.3f}  "
              f"{r['started_at']}")
        if r["stop_reason"]:
            print(f"{'':<18} {r['stop_reason']}")
    return 0
