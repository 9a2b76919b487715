"""`pioneer-tui promote NODE --reason TEXT`: deploy a candidate a run did not promote.

For the close calls a run hands to a person (the best candidate failed only the regression budget)
and for candidates a person refused and later wants: recorded as a human decision in the node's run
(engine.promotion), with the same lineage checks as a promotion inside a run.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.promotion import promote_node
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "promote", help="deploy a candidate a run kept back (a close call), with your reason",
        description="Deploy the model of a search node that passed its gates, or failed only the regression "
        "budget (a close call), recording your reason as a human decision in its run.")
    parser.add_argument("node", help="the node id the run printed, e.g. run-1a2b3c.n0003")
    parser.add_argument("--reason", required=True, help="why it should be deployed (recorded with your decision)")
    parser.add_argument("--json", action="store_true", help="print the record as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    record = promote_node(ctx.store, args.node, args.reason)
    if args.json:
        ctx.emit_json(record.__dict__)
        return 0
    how = "anyway (over the regression budget)" if record.override else "(it had passed its gates)"
    replaced = f", replacing {record.replaced}" if record.replaced else ""
    print(f"promoted {record.model_id} from {record.node_id} {how}{replaced}; decision {record.decision_id} "
          f"recorded in run {record.run_id}")
    return 0
