"""`pioneer-tui train --data FILE --task ...`: train one pipeline from a dataset file, show a
progress bar, print held-out metrics and register the model (with its dataset version)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from engine.data.datasets_io import example_to_row, read_examples
from engine.errors import ConfigError, DatasetError, TrainingError, UsageError
from engine.models.base import METHODS, Progress, TrainConfig
from engine.models.qlora import CPU_OPT_IN_ENV
from engine.records import TASKS, Example
from engine.tasks import task_type
from pioneer_tui.cli import Context
from store.jsoncols import new_id

DEFAULT_BASE = {"encoder": "minilm", "decoder": "smollm2"}  # per backend family (engine.tasks: TaskType.backend)
FULL_FINETUNE_LR = 5e-5


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a JSONL dataset and register it",
        description='Rows are {"input", "output"}: a label (classification), character spans '
        '[{"start", "end", "label"}] or BIO tags (ner), or text (generation; chat "messages" rows too). '
        "A run starts from --base: a base model, or for generation a model trained here (full weights, or "
        "a LoRA adapter that keeps training over its own base); the held-out split is taken before training.")
    parser.add_argument("--data", required=True, metavar="SOURCE", help="a JSONL dataset, or anything cold-start "
                        "reads: CSV/TSV, CoNLL, JSON, hf:owner/name, a packaged source")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--base", help="model: minilm, smollm2, a folder or a Hugging Face id "
                        "(default: minilm for classification/ner, smollm2 for generation)")
    parser.add_argument("--method", choices=METHODS, default="lora",
                        help="lora (default), full, qlora (4-bit; GPU, or CPU with --allow-cpu-qlora), "
                        "linear_probe (frozen encoder + linear head; fast on CPU)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, help=f"learning rate (default 5e-4; {FULL_FINETUNE_LR:g} for full)")
    parser.add_argument("--head-lr", type=float, help="learning rate of the new classifier head (default: --lr)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per input; longer ones are truncated")
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--threshold", type=float, help="decision threshold used for the held-out metrics")
    parser.add_argument("--eval-fraction", type=float, default=0.1,
                        help="held-out share for metrics (0 to skip; stratified by label for classification)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="registry name (default: the model id)")
    parser.add_argument("--parent", help="registry id of the model this one improves on (lineage)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="autocast precision (auto: bf16 where the CPU or GPU computes it natively, else fp32)")
    parser.add_argument("--head-init", choices=("random", "probe"), default="random",
                        help="encoder head: random, or fitted first as a linear probe on frozen features")
    parser.add_argument("--allow-cpu-qlora", action="store_true",
                        help="run --method qlora on CPU (checks the 4-bit path; not faster or smaller there)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> TrainConfig:
    lr = args.lr if args.lr is not None else (FULL_FINETUNE_LR if args.method == "full" else 5e-4)
    return TrainConfig(
        task=args.task, base_model=args.base or DEFAULT_BASE[task_type(args.task).backend], method=args.method,
        lora_rank=args.lora_rank, learning_rate=lr, head_learning_rate=args.head_lr,
        batch_size=args.batch_size, epochs=args.epochs, max_length=args.max_length,
        threshold=args.threshold, seed=args.seed)


class _Bar:
    """A rich progress bar fed by the trainer's Progress callback."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self.rich = RichProgress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), disable=quiet,
                                 transient=False)
        self.task = self.rich.add_task("train", total=None, stats="loading model")

    def __call__(self, p: Progress) -> None:
        loss = f"loss {p.loss:.4f}  " if p.loss == p.loss else ""
        self.rich.update(self.task, completed=p.step, total=p.total_steps,
                         stats=f"{loss}{p.examples_per_s:.0f} ex/s  eta {p.eta_s:.0f}s")


def quiet_transformers() -> None:
    """Keep the terminal for our own output: no load reports or download bars from transformers."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def training_rows(spec: str, task: str) -> list[Example]:
    """A JSONL file read for `task` (its rows' outputs parsed as that task's), or anything cold-start
    loads (CSV/TSV, CoNLL, JSON, hf:owner/name, a packaged source): its train split, checked against `task`."""
    if Path(spec).suffix.lower() == ".jsonl":
        return read_examples(spec, task)
    from engine.coldstart.registry import load_source

    examples = load_source(spec).train
    kind = task_type(task)
    wrong = next((ex for ex in examples if isinstance(ex.output, tuple) != kind.spans
                  or (kind.single_label and not isinstance(ex.output, str))), None)
    if wrong is not None:
        found = "entity spans" if isinstance(wrong.output, tuple) else "a label or text"
        raise DatasetError(f"--data {spec}: row {wrong.id} has {found} as its output, which --task {task} cannot "
                           "train on; pass the --task the data is for")
    return examples


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.models.factory import train_and_register, trainer_for  # torch: only when training

    examples = training_rows(args.data, args.task)
    config = _config(args)
    if not 0.0 <= args.eval_fraction < 1.0:
        raise ConfigError(f"--eval-fraction={args.eval_fraction} is invalid: use a number in [0, 1)")
    if args.allow_cpu_qlora:
        os.environ[CPU_OPT_IN_ENV] = "1"
    # precision is both backends' option; head initialisation the encoder's
    options = {"precision": args.precision, **({"head_init": args.head_init}
                                               if task_type(args.task).backend == "encoder" else {})}
    trainer = trainer_for(args.task, config.base_model, **options)
    store = ctx.store
    if args.parent and store.models.get(args.parent) is None:
        raise UsageError(f"--parent {args.parent}: no such model in the registry (see `pioneer-tui models`)")
    quiet_transformers()
    dataset_id = store.datasets.create([example_to_row(ex) for ex in examples], name=Path(args.data).name,
                                       task=args.task, note=f"from {args.data}")
    bar = _Bar(quiet=args.json)
    model_id = new_id("m")
    try:
        with bar.rich:
            trained = train_and_register(
                store, examples, config, parent_id=args.parent, dataset_version_id=dataset_id, name=args.name,
                progress=bar, eval_fraction=args.eval_fraction, trainer=trainer, model_id=model_id)
    except (TrainingError, ConfigError) as exc:  # the failed model stays registered: say which
        raise type(exc)(f"training failed (registered as {model_id}, status failed): {exc}") from None
    summary = {"model_id": trained.model_id, "artifact": str(trained.artifact_dir), "dataset_version": dataset_id,
               "n_train": trained.result.n_train, "n_eval": trained.n_eval, "n_truncated": trained.result.n_truncated,
               "wall_time_s": round(trained.result.wall_time_s, 2), "metrics": trained.metrics}
    if args.json:
        ctx.emit_json(summary)
        return 0
    print(f"model {trained.model_id} ({config.method} on {config.base_model}) -> {trained.artifact_dir}")
    print(f"trained on {trained.result.n_train} examples in {trained.result.wall_time_s:.1f}s, "
          f"{trained.result.steps} steps; dataset version {dataset_id}")
    if trained.result.n_truncated:
        print(f"note: {trained.result.n_truncated} inputs were longer than {config.max_length} tokens and "
              "were truncated (raise --max-length to keep them whole)")
    counts = ("n_train", "n_eval", "n_truncated", "steps")
    print(f"metrics (held-out: {trained.n_eval} examples; train_*: from training):")
    for key, value in trained.metrics.items():
        if key not in counts:
            print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    return 0
