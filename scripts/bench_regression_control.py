"""Regression-control ablation: negative flips with and without each move, at equal fixes.

    python scripts/bench_regression_control.py [DATA_DIR] [--scenario weak|mature] [--judge exact|imperfect]
                                               [--seeds 0 1] [--threads N]

One CLINC150 deployment of scripts/bench_production.py, diagnosed once by production mode (triage,
taxonomy, probes, fix holdout, regression set). Then the root pipeline is trained from the base in four
variants, each with every seed, by the production runner itself (the same curriculum, training and
evaluation code a run uses):

- paper: replay the 10-20% band of the replay pool, no distillation (the baseline);
- + replay all: every verified pass outside the protected sets and all of D_parent;
- + focal distillation: the deployed model's probabilities on the rows it got right;
- + both;
- + replay all with half the learning rate (a fine-tune), or fine-tuning the encoder with LoRA from
  the probe's head (a linear probe);
- + the trained candidate averaged in weight space with the deployed model, half and half or 70% the
  deployed model's (strategy.merge_deployed, WiSE-FT).

Printed per variant (mean over seeds): fixes on the held-out fixable failures, negative flips on the
regression set (passes the candidate never trained on, now wrong; the negative flip rate is their
share) and accuracy on unseen traffic against the true intent. A move cuts regressions "at equal
fixes" when its flips fall while its held-out fixes stay within a seed's spread.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench_production as bp  # noqa: E402
from _deployment import imperfect_judge, judged_traffic, junk_traffic, torch_threads  # noqa: E402

from engine.data.perturb import TYPES, exact_match_judge, perturb_examples  # noqa: E402
from engine.models.base import Example  # noqa: E402
from engine.models.predictor import load_predictor  # noqa: E402
from engine.production import ProductionConfig, loop_parts  # noqa: E402
from engine.search.graph import Node  # noqa: E402
from engine.search.loop import open_run  # noqa: E402
from engine.search.planner import RulePlanner  # noqa: E402
from store import Store  # noqa: E402

VARIANTS = {
    "paper (replay band)": {"data.replay_scope": "share"},
    "+ replay all": {"data.replay_scope": "all"},
    "+ focal distillation": {"data.replay_scope": "share", "strategy.distillation": "focal"},
    "+ both": {"data.replay_scope": "all", "strategy.distillation": "focal"},
    "+ replay all, lower learning rate": {"data.replay_scope": "all", "hyperparams.learning_rate": "half"},
    "+ replay all, LoRA from the probe's head": {"data.replay_scope": "all", "hyperparams.method": "lora",
                                                 "hyperparams.learning_rate": 5e-4, "hyperparams.epochs": 3.0,
                                                 "hyperparams.batch_size": 32, "hyperparams.head_learning_rate": None},
    "+ average with the deployed (50%)": {"strategy.merge_deployed": 0.5},
    "+ average with the deployed (70%)": {"strategy.merge_deployed": 0.7},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--scenario", choices=sorted(bp.SCENARIOS), default="weak")
    parser.add_argument("--judge", choices=("exact", "imperfect"), default="imperfect")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which variants to train (default: all)")
    args = parser.parse_args()
    scenario = bp.SCENARIOS[args.scenario]
    torch_threads(args.threads)
    load0 = os.getloadavg()
    data = bp.load_clinc(args.data_dir, scenario.intents)
    by_intent: dict[str, list[str]] = {}
    for text, lab in data["train"]:
        by_intent.setdefault(lab, []).append(text)
    rng = random.Random(0)
    train, unseen = [], []
    for lab in scenario.intents:
        texts = sorted(by_intent[lab])
        rng.shuffle(texts)
        n = scenario.train_per_intent
        train += [Example(t, lab, f"parent-{lab}-{i}") for i, t in enumerate(texts[:n])]
        unseen += [{"id": f"u-{lab}-{i}", "input": t, "output": lab} for i, t in enumerate(texts[n:n + 40])]
    held_out = perturb_examples(unseen, seed=1, task="classification", rates={t.name: 0.0 for t in TYPES} | bp.NOISE)
    prod = bp.production_rows(data, scenario.intents, scenario.traffic_per_intent, 0)
    judge = exact_match_judge
    if args.judge == "imperfect":
        prod += junk_traffic(prod, 0.05, 0, "classification")
        judge = imperfect_judge(scenario.intents, 0.15, 0)

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "ws") as store:
        bp.deploy(store, train, scenario, args.threads)
        deployed = store.models.get(scenario.model_id)
        preds = [p.output for p in load_predictor(deployed["artifact_path"]).predict([r["input"] for r in prod])]
        judged_traffic(store, Path(tmp), prod, preds, model_id=scenario.model_id, task="classification",
                       source="clinc150", seed=0, judge=judge)
        config = ProductionConfig(model=scenario.model_id, task="classification", trainer_threads=args.threads)
        bus = open_run(store, "production", {"production": config.to_dict()})
        parts = loop_parts(store, store.runs.get(bus.run_id), bus, RulePlanner())
        runner = parts.runner
        d = runner.d
        unseen_rows = [(r["input"], r["output"]) for r in held_out]
        print(f"{args.scenario} deployment, {args.judge} judge: {len(d.fail_ids)} failures, {d.n_fixable} fixable "
              f"with a correction ({len(d.holdout_ids)} held out), {len(d.pass_ids)} passes "
              f"({len(d.regression)} in the regression set); root recipe {parts.root.hyperparams.method}", flush=True)

        results: dict[str, list[dict[str, Any]]] = {}
        for k, (name, change) in enumerate((n, VARIANTS[n]) for n in args.variants):
            for seed in args.seeds:
                lr = parts.root.hyperparams.learning_rate
                change = {k: lr / 2 if v == "half" else v for k, v in change.items()}
                pipeline = parts.root.modify({**change, "hyperparams.seed": seed})
                node = Node(f"{bus.run_id}.v{k}s{seed}", pipeline, None, "expand", 1)
                t0 = time.perf_counter()
                version = runner.build_curriculum(node)
                node = replace(node, dataset_version_id=version)
                model_id = f"{node.id}.m"
                runner.train(node, version, model_id, lambda p: None, lambda: False)
                ev = runner.evaluate(node, model_id)
                predict = load_predictor(store.models.get(model_id)["artifact_path"]).predict
                outs = [p.output for p in predict([x for x, _ in unseen_rows])]
                e = ev.evidence
                composition = (store.datasets.get(version) or {}).get("composition") or {}
                results.setdefault(name, []).append({
                    "fixed": e.holdout_fixed, "holdout": e.holdout, "flips": e.broken, "regression": e.regression,
                    "failure_set": ev.metrics.get("failure_set.fixed"), "replay": composition.get("replay"),
                    "unseen": sum(o == y for o, (_, y) in zip(outs, unseen_rows, strict=True)) / len(unseen_rows),
                    "seconds": time.perf_counter() - t0})
                r = results[name][-1]
                print(f"  {name:<34} seed {seed}: held-out fixes {r['fixed']}/{r['holdout']}, flips "
                      f"{r['flips']}/{r['regression']}, unseen {r['unseen']:.1%}, replay rows {r['replay']}, "
                      f"{r['seconds']:.0f} s", flush=True)

        print(f"\nRegression control ({args.scenario}, {args.judge} judge), mean over seeds {args.seeds}:")
        head = f"{'variant':<36}{'held-out fixes':>16}{'negative flips':>16}{'flip rate':>11}{'unseen acc.':>13}"
        print(head + "\n" + "-" * len(head))
        for name, rows in results.items():
            fixes = statistics.mean(r["fixed"] for r in rows)
            flips = statistics.mean(r["flips"] for r in rows)
            spread = f"±{statistics.pstdev([r['flips'] for r in rows]):.1f}" if len(rows) > 1 else ""
            print(f"{name:<36}{fixes:>12.1f}/{rows[0]['holdout']:<3}{flips:>10.1f}{spread:>6}"
                  f"{flips / rows[0]['regression']:>11.1%}{statistics.mean(r['unseen'] for r in rows):>13.1%}")
        print(f"\nload average: {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end ({args.threads} torch threads)")


if __name__ == "__main__":
    main()
