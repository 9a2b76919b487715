"""`pioneer-tui` command line: one parser, each subcommand in pioneer_tui/commands/<name>.py.

A command module exposes `register(subparsers) -> None`, which adds its parser and sets
`handler=<fn(args, ctx) -> int>`. Errors of the product's family (engine.errors) surface here, once,
as one line on stderr and their exit code (2 bad input, 1 a step failed, 75 the workspace was busy:
retry later); anything else is a bug, named with its type. Tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from engine.errors import PioneerError
from engine.escape import one_line
from store import Store, Workspace

# Order is the order in --help.
COMMAND_MODULES = [
    "ingest", "query", "models", "train", "predict", "improve", "promote", "cold_start", "runs", "resume", "report",
    "perturb", "bench", "export", "judge",
]


@dataclass
class Context:
    workspace: Workspace
    debug: bool = False
    _store: Store | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.workspace)
        return self._store

    def emit_json(self, value: Any) -> None:
        json.dump(value, sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pioneer-tui",
        description="Continual improvement of small language models from judged production traces. "
        "With no command, opens the workbench on the workspace.",
    )
    parser.add_argument("--workspace", help="workspace folder (default: $PIONEER_WORKSPACE or ./.pioneer)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"pioneer_tui.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pioneer_tui.commands.{name}":
                continue  # not built yet
            raise
        module.register(subparsers)
    return parser


def _offline_defaults() -> None:
    """Work offline unless the user says otherwise: no hub downloads, litellm's bundled price list."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                       ("LITELLM_LOCAL_MODEL_COST_MAP", "True"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    _offline_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(Workspace.resolve(args.workspace), debug=args.debug)
    handler = getattr(args, "handler", None)
    try:
        if handler is None:
            from pioneer_tui.app import run_app

            return run_app(ctx)
        return int(handler(args, ctx) or 0)
    except PioneerError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if args.debug:
            raise
        print(f"error: {type(exc).__name__}: {one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if ctx._store is not None:
            ctx._store.close()


if __name__ == "__main__":
    sys.exit(main())
