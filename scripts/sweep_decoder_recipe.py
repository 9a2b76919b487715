"""Which decoder recipe does AdaptFT-Bench's C1 need? Held-out exact match of C1 trained from the base.

Trains the bench's C1 (the clean pool, from the base model) once per recipe and scores it on the bench's
held-out union, so the recipe every arm retrains with is chosen on a measured curve, not guessed.
The data and held-out set are exactly the bench's (engine.bench.stages, same seed and sizes).

    flock /work/bench_out/bench.lock .venv/bin/python scripts/sweep_decoder_recipe.py --dataset arithmetic \
        --quick --threads 2 --recipe lr=5e-5,batch=32,epochs=2 --recipe lr=1e-4,batch=8,epochs=2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEYS = {"lr": ("learning_rate", float), "batch": ("batch_size", int), "epochs": ("epochs", float),
        "method": ("method", str), "rank": ("lora_rank", int), "alpha": ("lora_alpha", int),
        "system": ("system_prompt", str)}


def parse_recipe(text: str) -> dict:
    recipe = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in KEYS:
            raise SystemExit(f"error: --recipe {text!r}: unknown key {key!r}; use {', '.join(KEYS)}")
        name, cast = KEYS[key]
        try:
            recipe[name] = cast(value)
        except ValueError:
            raise SystemExit(f"error: --recipe {text!r}: {key}={value!r} is not a {cast.__name__}") from None
    return recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="arithmetic")
    ap.add_argument("--data-root", default=str(ROOT / ".." / "shared" / "data"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", action="append", required=True,
                    help="e.g. lr=1e-4,batch=8,epochs=2[,method=lora][,system=Answer concisely.]")
    args = ap.parse_args()

    from engine.bench.stages import StageConfig, build_stages, load_dataset, to_example
    from engine.models.base import TrainConfig
    from engine.models.factory import evaluate, trainer_for
    from engine.models.predictor import load_predictor

    task, examples = load_dataset(args.dataset, args.data_root)
    stages = StageConfig.quick(args.seed) if args.quick else StageConfig(seed=args.seed)
    bench = build_stages(examples, task, stages, args.dataset)
    clean = [to_example(r) for r in bench.clean]
    held_out = [to_example(r) for r in bench.held_out if r["output"] is not None]
    print(f"{args.dataset} ({task}): C1 on {len(clean)} clean rows, held-out {len(held_out)}", flush=True)
    print("| recipe | steps | training | train s | train ex/s | eval s | exact match |\n|---|---|---|---|---|---|---|", flush=True)
    for text in args.recipe:
        recipe = {"base_model": "smollm2", "method": "full", **parse_recipe(text)}
        config = TrainConfig(task=task, seed=args.seed, **recipe)  # the trainer seeds itself (engine.seed)
        with tempfile.TemporaryDirectory() as out:
            result = trainer_for(task, recipe["base_model"], num_threads=args.threads).train(clean, config, Path(out))
            started = time.perf_counter()
            score = evaluate(load_predictor(Path(out)), held_out, task)["exact_match"]
            scored = time.perf_counter() - started
        m = result.metrics
        print(f"| {text} | {result.steps} | {m['train_tokens_per_s']:.0f} tok/s | {result.wall_time_s:.0f} | "
              f"{m['train_examples_per_s']:.1f} | {scored:.0f} | {100 * score:.1f} |", flush=True)


if __name__ == "__main__":
    main()
