"""Benchmark: our encoder trainer and predictor vs transformers' Trainer and pipeline() on CLINC150.

Same model (the embedded MiniLM), data (CLINC150's 150 in-scope intents), batch size, epochs,
learning rate, warmup and gradient clipping on both sides; the baseline is set up as the
transformers docs recommend (tokenise, DataCollatorWithPadding for dynamic padding). Everything
is measured in this one run and printed as ratios against the baseline.

Targets (issue 3): training >= 1.3x the Trainer's examples/s at equal test accuracy (+-0.5 pp);
inference >= 1.5x pipeline("text-classification") on the same inputs.

    python scripts/bench_encoder.py            # full: 15,000 train / 4,500 test, ~15-25 min on 2 cores
    python scripts/bench_encoder.py --quick    # 3,000 / 1,000 subset
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "clinc150" / "data_full.json"


def load_clinc(path: Path, quick: bool, seed: int):
    from engine.records import Example

    if not path.is_file():
        sys.exit(f"error: {path} not found: pass --data PATH/TO/clinc150/data_full.json")
    data = json.loads(path.read_text())
    train = [Example(text, intent) for text, intent in data["train"]]
    test = [Example(text, intent) for text, intent in data["test"]]
    if quick:
        rng = random.Random(seed)
        rng.shuffle(train)
        rng.shuffle(test)
        train, test = train[:3000], test[:1000]
    return train, test


def accuracy(expected, predicted) -> float:
    return sum(e == p for e, p in zip(expected, predicted, strict=True)) / len(expected)


def run_ours(train, test, args, precision: str, out: Path, method: str = "full") -> dict:
    from engine.models.base import TrainConfig
    from engine.models.encoder import EncoderTrainer
    from engine.models.predictor import load_predictor

    config = TrainConfig(task="classification", base_model="minilm", method=method, learning_rate=args.lr,
                         batch_size=args.batch_size, epochs=args.epochs, warmup_ratio=args.warmup_ratio,
                         max_length=128, seed=args.seed)
    started, cpu = time.perf_counter(), time.process_time()
    result = EncoderTrainer(precision=precision, num_threads=args.threads).train(train, config, out)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    predictor = load_predictor(out)
    texts = [ex.input for ex in test]
    preds = predictor.predict(texts)
    return {"train_ex_s": result.metrics["train_examples_per_s"], "wall_s": wall, "cpu_s": cpu,
            "acc": accuracy([ex.output for ex in test], [p.output for p in preds]),
            "padding": result.metrics.get("padding_fraction"), "artifact": out}


def run_hf_trainer(train, test, args, out: Path, group_by_length: bool = False) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from engine.models.resolve import resolve_model
    from engine.seed import seed_everything

    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    started, cpu = time.perf_counter(), time.process_time()
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
        weight_decay=0.0, max_grad_norm=1.0, lr_scheduler_type="linear", logging_steps=100,
        save_strategy="no", report_to="none", seed=args.seed, use_cpu=True, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if group_by_length else "random")
    trainer = Trainer(model=model, args=targs, train_dataset=train_rows,
                      data_collator=DataCollatorWithPadding(tokenizer))
    metrics = trainer.train().metrics
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    out = trainer.predict(test_rows)  # label_ids come back in prediction order (grouping reorders)
    acc = float(np.mean(np.argmax(out.predictions, -1) == out.label_ids))
    return {"train_ex_s": metrics["train_samples_per_second"], "wall_s": wall, "cpu_s": cpu, "acc": acc}


def time_inference(fn, texts, repeats: int) -> tuple[float, float, list]:
    """Examples/s by wall clock and by process CPU time (best of repeats)."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        out = fn(texts)
        best_wall = min(best_wall, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return len(texts) / best_wall, len(texts) / best_cpu, out


def bench_inference(artifact: Path, test, args) -> list[tuple[str, float, float, float]]:
    import torch
    from transformers import pipeline

    from engine.models.predictor import load_predictor

    torch.set_num_threads(args.threads)
    texts = [ex.input for ex in test]
    gold = [ex.output for ex in test]
    rows = []
    for bs in (1, 64):
        pipe = pipeline("text-classification", model=str(artifact), device=-1, batch_size=bs)
        wall, cpu, out = time_inference(lambda t, p=pipe: p(t), texts, args.repeats)
        rows.append((f"pipeline(batch_size={bs})", wall, cpu, accuracy(gold, [o["label"] for o in out])))
    for precision in ("fp32", "bf16"):
        predictor = load_predictor(artifact, precision=precision, batch_size=64)
        wall, cpu, out = time_inference(predictor.predict, texts, args.repeats)
        rows.append((f"ours {precision}", wall, cpu, accuracy(gold, [p.output for p in out])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="3,000 train / 1,000 test subset")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.06)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeats", type=int, default=2, help="inference timing repeats (best is kept)")
    parser.add_argument("--skip", default="", help="comma list of: bf16, grouped, probe")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    train, test = load_clinc(args.data, args.quick, args.seed)
    print(f"CLINC150 in-scope: {len(train)} train / {len(test)} test, {len({e.output for e in train})} labels; "
          f"MiniLM full fine-tune, {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr:g}, "
          f"warmup {args.warmup_ratio}, {args.threads} threads", flush=True)

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_encoder_") as tmp:
        tmp = Path(tmp)
        plan = [("Trainer + DataCollatorWithPadding", lambda: run_hf_trainer(train, test, args, tmp / "hf")),
                ("ours fp32", lambda: run_ours(train, test, args, "fp32", tmp / "ours_fp32"))]
        if "bf16" not in skip:
            plan.append(("ours bf16 autocast", lambda: run_ours(train, test, args, "bf16", tmp / "ours_bf16")))
        if "grouped" not in skip:
            plan.append(("Trainer + group_by_length (extra)",
                         lambda: run_hf_trainer(train, test, args, tmp / "hf_grouped", group_by_length=True)))
        if "probe" not in skip:
            plan.append(("ours linear_probe (frozen)",
                         lambda: run_ours(train, test, args, "fp32", tmp / "ours_probe", method="linear_probe")))
        for name, fn in plan:
            print(f"... {name}", flush=True)
            results[name] = fn()
            print(f"    {results[name]['train_ex_s']:.1f} ex/s, acc {results[name]['acc']:.4f}, "
                  f"{results[name]['wall_s']:.0f}s", flush=True)
        print("... inference", flush=True)
        inference = bench_inference(results["ours fp32"]["artifact"], test, args)

    base = results["Trainer + DataCollatorWithPadding"]
    n = len(train) * args.epochs
    print("\nTraining: loop ex/s (wall clock, training loop only); end-to-end ex/s from examples to a trained")
    print("model (load, tokenise, train; wall clock and process CPU time, which shared cores disturb less)")
    print(f"{'setup':<36}{'loop ex/s':>10}{'ratio':>7}{'e2e':>8}{'ratio':>7}{'e2e cpu':>9}{'ratio':>7}"
          f"{'test acc':>10}{'d pp':>7}{'pad':>7}")
    for name, r in results.items():
        pad = f"{r['padding']:.1%}" if r.get("padding") is not None else ""
        print(f"{name:<36}{r['train_ex_s']:>10.1f}{r['train_ex_s'] / base['train_ex_s']:>6.2f}x"
              f"{n / r['wall_s']:>8.1f}{base['wall_s'] / r['wall_s']:>6.2f}x"
              f"{n / r['cpu_s']:>9.1f}{base['cpu_s'] / r['cpu_s']:>6.2f}x"
              f"{r['acc']:>10.4f}{100 * (r['acc'] - base['acc']):>+7.2f}{pad:>7}")
    pipe_wall = max(wall for name, wall, _, _ in inference if name.startswith("pipeline"))
    pipe_cpu = max(cpu for name, _, cpu, _ in inference if name.startswith("pipeline"))
    print("\nInference on our fine-tuned model, test inputs (best of repeats; ratios vs the best pipeline)")
    print(f"{'setup':<36}{'ex/s':>10}{'ratio':>7}{'cpu ex/s':>10}{'ratio':>7}{'test acc':>10}")
    for name, wall, cpu, acc in inference:
        print(f"{name:<36}{wall:>10.1f}{wall / pipe_wall:>6.2f}x{cpu:>10.1f}{cpu / pipe_cpu:>6.2f}x{acc:>10.4f}")
    ours = results["ours fp32"]
    print(f"\ntraining target >= 1.3x at +-0.5 pp: ours fp32 loop {ours['train_ex_s'] / base['train_ex_s']:.2f}x, "
          f"{100 * (ours['acc'] - base['acc']):+.2f} pp")
    best_ours = max(wall for name, wall, _, _ in inference if name.startswith("ours"))
    print(f"inference target >= 1.5x the best pipeline: {best_ours / pipe_wall:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
