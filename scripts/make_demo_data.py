"""Build demo_data/: the deployed intent classifier's training set, its training config, its judged
production traces (real predictions of that model on noisy traffic, judged against the intended
intent), and next week's traffic (unjudged, with its labels: the promoted model answers it).

    python scripts/make_demo_data.py [--seed 7] [--out demo_data] [--prod-per-intent 60]
                                     [--next-week-per-intent 20]

The deployed model is retrained from demo_data/deployed.json when the demo starts, so the traces
describe the model the workbench then improves.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_utterances import NEXT_WEEK_POISON, POISON, TEMPLATES, utterances  # noqa: E402

from engine.data.perturb import perturb_examples, to_trace_rows  # noqa: E402
from engine.models.base import TrainConfig  # noqa: E402
from engine.models.encoder import EncoderTrainer  # noqa: E402
from engine.models.predictor import load_predictor  # noqa: E402
from engine.records import Example
from engine.seed import seed_everything  # noqa: E402
from store.artifacts import atomic_write_jsonl, atomic_write_text  # noqa: E402

DEPLOYED = {
    "model_id": "demo-intent-v1",
    "task": "classification",
    "train_file": "train.jsonl",
    "config": {"task": "classification", "base_model": "minilm", "method": "linear_probe", "epochs": 30.0,
               "learning_rate": 1e-3, "head_learning_rate": 3e-3, "batch_size": 16, "seed": 0},
}


def build(seed: int, out: Path, train_per_intent: int, prod_per_intent: int, next_per_intent: int) -> dict:
    rng = random.Random(seed)
    train, production, week2 = [], [], []
    for intent in TEMPLATES:
        pool = utterances(intent, train_per_intent + prod_per_intent + next_per_intent, rng)
        rng.shuffle(pool)
        train += [{"id": f"train-{intent}-{i}", "input": text, "output": intent}
                  for i, text in enumerate(pool[:train_per_intent])]
        production += [{"id": f"prod-{intent}-{i}", "input": text, "output": intent}
                       for i, text in enumerate(pool[train_per_intent:train_per_intent + prod_per_intent])]
        week2 += [{"id": f"week2-{intent}-{i}", "input": text, "output": intent}
                  for i, text in enumerate(pool[train_per_intent + prod_per_intent:])]
    production += [{"id": f"prod-{kind}-{i}", "input": text, "output": None, "metadata": {"poison": kind}}
                   for kind, texts in POISON.items() for i, text in enumerate(texts)]
    rng.shuffle(production)
    noisy = perturb_examples([r for r in production if r["output"] is not None], seed=seed,
                             task="classification")
    noisy += [{**r, "metadata": {**r["metadata"], "label_valid": False,
                                 "perturbations": [{"type": r["metadata"]["poison"], "class": "poisonous"}]}}
              for r in production if r["output"] is None]

    seed_everything(DEPLOYED["config"]["seed"])
    config = TrainConfig(**DEPLOYED["config"])
    with tempfile.TemporaryDirectory() as tmp:
        EncoderTrainer().train([Example(r["input"], r["output"], r["id"]) for r in train], config, Path(tmp))
        predictions = load_predictor(tmp).predict([r["input"] for r in noisy])
    traces = to_trace_rows(noisy, [p.output for p in predictions], model_id=DEPLOYED["model_id"],
                           stage="production", seed=seed, task="classification", source="demo")
    for row, pred in zip(noisy, predictions, strict=True):
        row["confidence"] = pred.confidence
    next_week = perturb_examples(week2, seed=seed + 2020, task="classification")
    next_week += [{"id": f"week2-{kind}-{i}", "input": text, "output": None,
                   "metadata": {"label_valid": False, "poison": kind,
                                "perturbations": [{"type": kind, "class": "poisonous"}]}}
                  for kind, texts in NEXT_WEEK_POISON.items() for i, text in enumerate(texts)]
    atomic_write_jsonl(out / "train.jsonl", train)
    atomic_write_jsonl(out / "traces.jsonl", traces)
    atomic_write_jsonl(out / "next_week.jsonl", sorted(next_week, key=lambda r: r["id"]))
    atomic_write_text(out / "deployed.json", json.dumps(DEPLOYED, indent=2) + "\n")
    fails = sum(t["verdict"] == "fail" for t in traces)
    return {"train": len(train), "traces": len(traces), "fail": fails, "pass_rate": 1 - fails / len(traces),
            "next_week": len(next_week)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "demo_data")
    parser.add_argument("--train-per-intent", type=int, default=5)
    parser.add_argument("--prod-per-intent", type=int, default=60)
    parser.add_argument("--next-week-per-intent", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(build(args.seed, args.out, args.train_per_intent, args.prod_per_intent,
                           args.next_week_per_intent)))


if __name__ == "__main__":
    main()
