"""Production-mode benchmark (issue 5 "Must show", the paper's Table 8): a CLINC150 deployment.

    python scripts/bench_production.py [DATA_DIR] [--quick] [--max-iterations N] [--max-minutes M]

DATA_DIR defaults to ../shared/data relative to the repository root (clinc150/data_full.json).
30 intents that include the paper's confusable ones; the deployed model is the embedded MiniLM
(linear probe, the demo's recipe) trained on a small slice of CLINC150 train. Production traffic is
CLINC150 val+test of those intents, each utterance once as is and once perturbed (typos, casing,
preambles, misspellings, slang) by engine.data.perturb, judged against the gold intent. Then:

- Pioneer: `improve()` headless, auto-approve (triage, taxonomy, probes, D_post, gates);
- naive baseline, measured in the same run: retrain from the base on D_parent + every trace with
  its correction (passes keep their prediction), no triage, no hard negatives, no gate.

Both are scored by the same code on the failure set (all T_fail with a gold intent), the run's
regression set (a stratified sample of T_pass) and all of T_pass. The naive model has seen the
regression inputs in training (that is what "retrain on all traces" means); Pioneer never has.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _deployment import add_run_options, judged_traffic, reported_model, torch_threads  # noqa: E402

from engine.data.perturb import TYPES, perturb_examples  # noqa: E402
from engine.models.base import Example, TrainConfig  # noqa: E402
from engine.models.factory import train_and_register  # noqa: E402
from engine.models.predictor import load_predictor  # noqa: E402
from engine.production import ProductionConfig, improve, load_diagnosis  # noqa: E402
from engine.search.reviewer import HeadlessReviewer  # noqa: E402
from engine.seed import seed_everything  # noqa: E402
from store import Store  # noqa: E402

INTENTS = (  # the paper's confusable intents first, then their neighbours in CLINC150
    "change_language", "translate", "rollover_401k", "transfer", "maybe", "fun_fact", "flight_status",
    "replacement_card_duration", "change_user_name", "what_can_i_ask_you", "pto_request", "definition",
    "yes", "no", "user_name", "pto_request_status", "pto_balance", "pto_used", "new_card", "report_lost_card",
    "book_flight", "meaning_of_life", "tell_joke", "what_is_your_name", "change_accent", "change_speed",
    "interest_rate", "bill_balance", "spelling", "income",
)
# realistic noise only (the poison types are the triage benchmark's business, not this one's)
NOISE = {"typos": 0.5, "casing_errors": 0.35, "preamble_injection": 0.35, "phonetic_misspellings": 0.25,
         "abbreviations_slang": 0.15, "punctuation_abuse": 0.15}
RECIPE = {"task": "classification", "base_model": "minilm", "method": "linear_probe", "epochs": 30.0,
          "learning_rate": 1e-3, "head_learning_rate": 3e-3, "batch_size": 16, "seed": 0}
MODEL_ID = "clinc30-v1"


def load_clinc(data_dir: Path) -> dict[str, list[tuple[str, str]]]:
    path = data_dir / "clinc150" / "data_full.json"
    if not path.is_file():
        sys.exit(f"{path} not found: pass the folder holding clinc150/ (default ../shared/data)")
    raw = json.loads(path.read_text(encoding="utf-8"))
    keep = set(INTENTS)
    return {split: [(t, lab) for t, lab in raw[split] if lab in keep] for split in ("train", "val", "test")}


def production_rows(data: dict[str, list[tuple[str, str]]], per_intent: int, seed: int) -> list[dict[str, Any]]:
    """`per_intent` val+test utterances per intent, each once clean and once perturbed."""
    rng = random.Random(seed)
    by_intent: dict[str, list[str]] = {}
    for text, lab in data["val"] + data["test"]:
        by_intent.setdefault(lab, []).append(text)
    clean = []
    for lab in INTENTS:
        texts = sorted(by_intent[lab])
        rng.shuffle(texts)
        clean += [{"id": f"p-{lab}-{i}", "input": t, "output": lab} for i, t in enumerate(texts[:per_intent])]
    rates = {t.name: 0.0 for t in TYPES} | NOISE
    noisy = perturb_examples([{**r, "id": r["id"] + "-n"} for r in clean], seed=seed, task="classification",
                             rates=rates)
    return [{**r, "metadata": {"perturbations": []}} for r in clean] + [
        r for r in noisy if r["metadata"].get("perturbations")]


def deploy(store: Store, train: list[Example]) -> None:
    rows = [{"id": ex.id, "input": ex.input, "output": ex.output} for ex in train]
    dataset = store.datasets.create(rows, name="CLINC30 D_parent", task="classification",
                                    composition={"gold": len(rows)}, note="small CLINC150 train slice")
    seed_everything(RECIPE["seed"])
    train_and_register(store, train, TrainConfig(**RECIPE), dataset_version_id=dataset, name=MODEL_ID,
                       model_id=MODEL_ID)
    store.models.set_status(MODEL_ID, "deployed")


def score(predict, fail: list[dict], reg: list[dict], passes: list[dict], held_out: list[dict]) -> dict[str, Any]:
    """Failures still wrong, regressions on the regression set and on all of T_pass, and accuracy on
    unseen traffic (generalisation, where training on the traces themselves gives no advantage)."""
    texts = list(dict.fromkeys([r["input"] for r in fail + reg + passes + held_out]))
    out = dict(zip(texts, (p.output for p in predict(texts)), strict=True))
    still = sum(out[r["input"]] != r["gold"] for r in fail)
    return {"fail_after": still, "fixed": len(fail) - still,
            "regressions": sum(out[r["input"]] != r["gold"] for r in reg),
            "regressions_all_pass": sum(out[r["input"]] != r["gold"] for r in passes),
            "held_out": f"{sum(out[r['input']] == r['gold'] for r in held_out) / len(held_out):.1%}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--quick", action="store_true", help="10 utterances per intent (smoke run)")
    parser.add_argument("--train-per-intent", type=int, default=6)
    add_run_options(parser)
    args = parser.parse_args()
    torch_threads(args.threads)
    load0 = os.getloadavg()
    data = load_clinc(args.data_dir)
    rng = random.Random(args.seed)
    by_intent: dict[str, list[str]] = {}
    for text, lab in data["train"]:
        by_intent.setdefault(lab, []).append(text)
    train, unseen = [], []
    for lab in INTENTS:
        texts = sorted(by_intent[lab])
        rng.shuffle(texts)
        train += [Example(t, lab, f"parent-{lab}-{i}") for i, t in enumerate(texts[:args.train_per_intent])]
        unseen += [{"id": f"u-{lab}-{i}", "input": t, "output": lab}
                   for i, t in enumerate(texts[args.train_per_intent:args.train_per_intent + 20])]
    # next week's traffic: CLINC150 train utterances no model has seen, perturbed like production
    held_out = perturb_examples(unseen, seed=args.seed + 1, task="classification",
                                rates={t.name: 0.0 for t in TYPES} | NOISE)
    prod = production_rows(data, 10 if args.quick else 50, args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        ws = args.workspace or Path(tmp) / "ws"
        store = Store(ws)
        t0 = time.perf_counter()
        deploy(store, train)
        deployed = store.models.get(MODEL_ID)
        predictor = load_predictor(deployed["artifact_path"])
        preds = [p.output for p in predictor.predict([r["input"] for r in prod])]
        traces = judged_traffic(store, Path(tmp), prod, preds, model_id=MODEL_ID, task="classification", source="clinc150",
                                seed=args.seed)
        n_fail = sum(t["verdict"] == "fail" for t in traces)
        unseen_rows = [{"input": r["input"], "gold": r["output"]} for r in held_out]
        unseen_before = sum(p.output == r["gold"] for p, r in
                            zip(predictor.predict([r["input"] for r in unseen_rows]), unseen_rows, strict=True))
        setup_s = time.perf_counter() - t0
        print(f"deployment: {len(INTENTS)} intents, D_parent {len(train)} rows, {len(traces)} production "
              f"utterances ({sum(bool(r['metadata']['perturbations']) for r in prod)} perturbed), "
              f"pass rate {1 - n_fail / len(traces):.1%} ({n_fail} failures); setup {setup_s:.0f} s", flush=True)

        t1 = time.perf_counter()
        config = ProductionConfig(model=MODEL_ID, task="classification", seed=args.seed,
                                  max_iterations=args.max_iterations, max_minutes=args.max_minutes,
                                  trainer_threads=args.threads)
        summary = improve(store, config, reviewer=HeadlessReviewer("auto"))
        pioneer_s = time.perf_counter() - t1
        d = load_diagnosis(store, summary.run_id)
        gold = {t["id"]: t["correction"] or t["prediction"] for t in traces}
        text = {t["id"]: t["input"] for t in traces}
        fail = [{"input": text[i], "gold": gold[i]} for i in d.fail_ids if gold.get(i)]
        reg = [{"input": i.input, "gold": i.expected} for i in d.regression.items]
        passes = [{"input": text[i], "gold": gold[i]} for i in d.pass_ids]
        chosen = reported_model(store, summary)
        model = store.models.get(chosen) if chosen else None
        pioneer = score(load_predictor(model["artifact_path"]).predict, fail, reg, passes, unseen_rows) if model else None
        threshold = (model or {}).get("hyperparameters", {}).get("threshold")

        t2 = time.perf_counter()
        naive_rows = [Example(ex.input, ex.output, ex.id) for ex in train] + [
            Example(t["input"], t["correction"] or t["prediction"], t["id"]) for t in traces
            if (t["correction"] or t["prediction"])]
        seed_everything(RECIPE["seed"])
        naive_id = train_and_register(store, naive_rows, TrainConfig(**RECIPE), parent_id=MODEL_ID,
                                      name="naive-retrain", model_id="naive-retrain").model_id
        naive_model = store.models.get(naive_id)
        naive = score(load_predictor(naive_model["artifact_path"]).predict, fail, reg, passes, unseen_rows)
        naive_s = time.perf_counter() - t2

        print("\nTable 8 (CLINC150, 30 intents): failures before/after, regressions, wall time")
        head = f"{'':<34}{'Pioneer':>14}{'naive retrain':>16}"
        print(head + "\n" + "-" * len(head))

        def cell(r: dict | None, key: str) -> str:
            return "—" if r is None else str(r[key])
        pct = [f"{100 * r['fixed'] / len(fail):.1f}%" if r else "—" for r in (pioneer, naive)]
        for name, a, b in [
            ("failures before", len(fail), len(fail)),
            ("failures after", cell(pioneer, "fail_after"), cell(naive, "fail_after")),
            ("fixed", pct[0], pct[1]),
            (f"regressions (regression set, {len(reg)})", cell(pioneer, "regressions"), cell(naive, "regressions")),
            (f"regressions (all T_pass, {len(passes)})", cell(pioneer, "regressions_all_pass"),
             cell(naive, "regressions_all_pass")),
            (f"unseen traffic acc. ({len(unseen_rows)}; was {unseen_before / len(unseen_rows):.1%})",
             cell(pioneer, "held_out"), cell(naive, "held_out")),
            ("promoted through the gates", "yes" if summary.promoted else "no (best candidate shown)", "no gate"),
            ("wall time", f"{pioneer_s / 60:.1f} min", f"{naive_s / 60:.1f} min"),
        ]:
            print(f"{name:<34}{a!s:>14}{b!s:>16}")
        print(f"\nPioneer: {summary.outcome or summary.reason}; threshold {threshold}; "
              f"triage {json.dumps(summary.triage)}")
        print("\niterations:")
        for it in summary.iterations:
            print(f"  {it.node_id:<8} {it.operator:<7} {it.status:<10} a={it.score} r={it.regressions} "
                  f"gates={json.dumps(it.gates)} {it.note[:80]}")
        print("\ntop clusters (taxonomy):")
        for c in sorted(summary.clusters, key=lambda c: -(c.get("size") or 0))[:10]:
            print(f"  {c['id']:<6} {c.get('size'):>4}  {c.get('kind') or '':<18} {c.get('fixability') or '':<9} "
                  f"confirm={c.get('confirmation_rate')}  {c.get('name')}")
        print(f"\nload average: {load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end "
              f"({os.cpu_count()} cores, shared; {args.threads} torch threads)")
        print("WNUT-17 NER deployment: not done in this script.")


if __name__ == "__main__":
    main()
