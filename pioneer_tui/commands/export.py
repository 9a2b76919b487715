"""`pioneer-tui export MODEL --to DIR [--format hf|peft|gguf] [--gguf-type f16|f32|q8_0]`: a registered model
as a folder that plain transformers / peft (or llama.cpp, for gguf) load (engine.models.export), with a model
card from the registry."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.models.export import FORMATS, export_model
from engine.models.gguf_export import GGUF_TYPES
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export", help="write a registered model as a standard transformers / peft folder, or a GGUF for "
        "llama.cpp, with a model card",
        description="hf (default): standard weights (a LoRA adapter merged into its base; a linear probe as a "
        "token classifier, or a sentence-transformers model for a mean-pooled classifier). peft: the LoRA "
        "adapter as trained, its base named by its Hugging Face id. gguf: a llama-architecture decoder (the "
        "embedded SmolLM2, full or LoRA, merged) as one .gguf file that llama.cpp runs (llama-cli -m FILE). "
        "The card (README.md) holds the metrics, the gates passed, the training data's version and hash, and "
        "the code that loads it.")
    parser.add_argument("model", help="a model id or name (see `pioneer-tui models`)")
    parser.add_argument("--to", required=True, type=Path, metavar="DIR", help="a new or empty folder")
    parser.add_argument("--format", choices=FORMATS, default="hf")
    parser.add_argument("--gguf-type", choices=GGUF_TYPES, default=None,
                        help="the GGUF's weights (with --format gguf; default f16): norms stay f32 as llama.cpp "
                        "writes them")
    parser.add_argument("--json", action="store_true", help="print where it went and how to load it as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.escape import terminal
    from pioneer_tui.commands.train import quiet_transformers

    quiet_transformers()
    exported = export_model(ctx.store, args.model, args.to, args.format, args.gguf_type)
    if args.json:
        ctx.emit_json(exported.to_dict())
        return 0
    if exported.file:
        print(terminal(f"exported {args.model} to {exported.file}; run it with: llama-cli -m {exported.file}"))
        print("or load it with:")
    else:
        print(terminal(f"exported {args.model} to {exported.folder} ({exported.format}); load it with:"))
    print(terminal(exported.loader.replace("FOLDER", repr(str(exported.folder)))))
    return 0
