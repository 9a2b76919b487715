"""Benchmark: the project's encoder backend vs a configured `transformers.Trainer`, same run, same data.

Both fine-tune the embedded MiniLM (engine.models.resolve 'minilm') in full, each as it ships (ours
freezes the word-embedding table, engine.models.encoder.freeze_large_embedding_table; the Trainer
trains every weight, as a user's would), on the same CLINC150 rows
(a seeded stratified sample of the in-scope train split, ~1,280 rows by default) for the same epochs,
batch size, learning rate, linear warmup/decay, gradient clipping, seed, precision and torch threads
(the Trainer seeded with `transformers.set_seed`, not in our deterministic mode, as a user's is).
The Trainer is set up as strongly as it honestly goes on this CPU: dynamic padding
(DataCollatorWithPadding), `group_by_length` batches, fused AdamW (`adamw_torch_fused`), bf16 only when
ours trains in bf16, no dataloader workers and no pinned memory (workers would take a core from the
model on a 2-core machine; pinning is for GPUs). Each side runs `--repeats` times, alternating, and
its best examples/s counts; accuracy is on held-out test rows of the same intents.

    flock /work/bench_out/bench.lock .venv/bin/python scripts/bench_encoder.py --threads 1
    ... [--rows 1280] [--epochs 1] [--precision auto|fp32|bf16] [--repeats 2] [--data PATH/data_full.json]

Target (issue 15): ours >= 1.5x the configured Trainer's examples/s at equal accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "clinc150" / "data_full.json"

from engine.models.runtime import usable_cores  # noqa: E402 - after the path is set; imports no torch


def load_clinc(path: Path, rows: int, seed: int):
    """`rows` train rows, stratified over every in-scope intent, and all test rows of those intents."""
    from engine.records import Example

    if not path.is_file():
        sys.exit(f"error: {path} not found: pass --data PATH/TO/clinc150/data_full.json")
    data = json.loads(path.read_text())
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in data["train"]:
        by_intent[intent].append(text)
    rng = random.Random(seed)
    intents = sorted(by_intent)
    per_intent = max(1, rows // len(intents))
    picked = {(text, intent) for intent in intents for text in rng.sample(by_intent[intent], per_intent)}
    rest = [(text, intent) for intent in intents for text in by_intent[intent] if (text, intent) not in picked]
    train = [Example(text, intent) for text, intent in sorted(picked) + rng.sample(rest, max(0, rows - len(picked)))]
    rng.shuffle(train)
    test = [Example(text, intent) for text, intent in data["test"] if intent in by_intent]
    return train, test


def accuracy(expected, predicted) -> float:
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected)


def run_ours(train, test, args, out: Path) -> dict:
    from engine.models.base import TrainConfig
    from engine.models.encoder import EncoderTrainer
    from engine.models.predictor import load_predictor

    config = TrainConfig(task="classification", base_model="minilm", method="full", learning_rate=args.lr,
                         batch_size=args.batch_size, epochs=args.epochs, warmup_ratio=args.warmup_ratio,
                         max_length=128, seed=args.seed)
    started = time.perf_counter()
    result = EncoderTrainer(precision=args.precision, num_threads=args.threads).train(train, config, out)
    wall = time.perf_counter() - started
    predictor = load_predictor(out)
    preds = predictor.predict([ex.input for ex in test])
    return {"ex_s": result.metrics["train_examples_per_s"], "wall_s": wall, "precision": predictor.precision,
            "acc": accuracy([ex.output for ex in test], [p.output for p in preds])}


def run_trainer(train, test, args, out: Path, bf16: bool) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from engine.models.resolve import resolve_model

    # seeded as a user's Trainer is (transformers.set_seed), not in our deterministic mode (ours, run before
    # it in this process, turned that on)
    torch.use_deterministic_algorithms(False)
    set_seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    base = resolve_model("minilm")
    labels = sorted({ex.output for ex in train})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(base)

    def rows(examples):
        enc = tokenizer([ex.input for ex in examples], truncation=True, max_length=128)
        return [{"input_ids": ids, "attention_mask": mask, "labels": label2id[ex.output]}
                for ids, mask, ex in zip(enc["input_ids"], enc["attention_mask"], examples, strict=True)]

    train_rows, test_rows = rows(train), rows(test)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    steps = math.ceil(len(train) / args.batch_size) * args.epochs
    targs = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
        num_train_epochs=args.epochs, learning_rate=args.lr, warmup_steps=math.ceil(args.warmup_ratio * steps),
        weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="linear", optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length", bf16=bf16, dataloader_num_workers=0,
        dataloader_pin_memory=False, logging_steps=10_000, save_strategy="no", report_to="none", seed=args.seed,
        data_seed=args.seed, use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train_rows,
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.remove_callback(PrinterCallback)  # it prints the metrics dict; we print our own table
    metrics = trainer.train().metrics
    wall = time.perf_counter() - started
    fused = all(group.get("fused") for group in trainer.optimizer.param_groups)
    out_ = trainer.predict(test_rows)  # label_ids come back in prediction order
    acc = float(np.mean(np.argmax(out_.predictions, -1) == out_.label_ids))
    return {"ex_s": metrics["train_samples_per_second"], "wall_s": wall, "acc": acc, "fused": fused,
            "precision": "bf16" if bf16 else "fp32"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rows", type=int, default=1280, help="train rows (stratified over the 150 intents)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="ours (auto: bf16 where the CPU/GPU has it natively); the Trainer follows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating; the best counts")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from transformers.utils import logging

    from engine.models.runtime import pick_device, resolve_precision

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    bf16 = resolve_precision(args.precision, pick_device()) == "bf16"
    train, test = load_clinc(args.data, args.rows, args.seed)
    print(f"CLINC150: {len(train)} train rows over {len({e.output for e in train})} intents, {len(test)} held-out "
          f"test rows; MiniLM full fine-tune, {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr:g}, "
          f"warmup {args.warmup_ratio}, {'bf16' if bf16 else 'fp32'}, {args.threads} thread(s), "
          f"best of {args.repeats}", flush=True)

    runs: dict[str, list[dict]] = {"ours": [], "Trainer": []}
    with tempfile.TemporaryDirectory(prefix="bench_encoder_") as tmp:
        for i in range(args.repeats):
            for name in (("ours", "Trainer") if i % 2 == 0 else ("Trainer", "ours")):
                out = Path(tmp) / f"{name}{i}"
                r = run_ours(train, test, args, out) if name == "ours" else run_trainer(train, test, args, out, bf16)
                runs[name].append(r)
                print(f"  {name:<8} run {i + 1}: {r['ex_s']:6.1f} ex/s, accuracy {r['acc']:.4f}, "
                      f"{r['wall_s']:.0f} s end to end", flush=True)

    ours, theirs = (max(runs[k], key=lambda r: r["ex_s"]) for k in ("ours", "Trainer"))
    print(f"\n{'setup':<58}{'ex/s':>8}{'accuracy':>10}{'precision':>11}")
    print(f"{'ours (engine.models.encoder + training_loop)':<58}{ours['ex_s']:>8.1f}{ours['acc']:>10.4f}"
          f"{ours['precision']:>11}")
    label = f"Trainer (group_by_length, {'fused' if theirs['fused'] else 'foreach'} AdamW, dynamic padding)"
    print(f"{label:<58}{theirs['ex_s']:>8.1f}{theirs['acc']:>10.4f}{theirs['precision']:>11}")
    ratio = ours["ex_s"] / theirs["ex_s"]
    print(f"\nspeed ratio ours / Trainer: {ratio:.2f}x (target >= 1.5x); accuracy "
          f"{100 * (ours['acc'] - theirs['acc']):+.2f} pp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
