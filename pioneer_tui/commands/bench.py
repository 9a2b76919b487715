"""`pioneer-tui bench adaptft --dataset clinc150|sms_spam|wnut17|arithmetic|family_relationships|<path> --seed N [--quick]`.

Runs AdaptFT-Bench in its own workspace folder (`<out>/workspace`, default out
`<workspace>/bench/adaptft-<dataset>-s<seed>[-quick]`), so the bench's deployments never touch the
user's registry, and writes result.json, report.md and chart.html (plotly, self-contained) there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.bench.report import final_gap, markdown, write_report
from engine.bench.stages import StageConfig, build_stages, load_dataset
from engine.errors import ConfigError, DatasetError, UsageError
from pioneer_tui.cli import Context


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark (AdaptFT-Bench)",
                                   description="Benchmarks of the improvement loop.")
    kinds = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    ada = kinds.add_parser(
        "adaptft", help="AdaptFT-Bench: the agent vs naive retraining over increasingly poisoned logs",
        description="C1 from a clean pool, then three stages of perturbed inference logs (poison 15% -> 25% "
        "-> 40%, 70/30 train/test). The agent (production mode, --agent-iterations per stage, with "
        "rollback) is compared with realistic naive retraining and controlled baselines on the union of the "
        "stage test splits.")
    ada.add_argument("--dataset", required=True,
                     help="clinc150, sms_spam, wnut17 (under --data-root), arithmetic or family_relationships "
                     "(generation, from reasoning-gym) or a dataset file / registry source")
    ada.add_argument("--seed", type=int, default=0)
    ada.add_argument("--quick", action="store_true", help="small sizes (clean 300, stages of 150 logs)")
    ada.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                     help="folder holding clinc150/, sms_spam/, wnut17/ (default ../shared/data)")
    ada.add_argument("--clean-size", type=int, help="clean pool size (default 1000, quick 300)")
    ada.add_argument("--stage-size", type=int, help="logs per stage (default 500, quick 150)")
    ada.add_argument("--method", choices=("linear_probe", "lora", "full"),
                     help="training method of C1 and every retrain (default: linear_probe for encoder tasks, "
                     "fast on CPU; full for generation)")
    ada.add_argument("--base-model", help="base model (default: minilm for encoder tasks, smollm2 for generation)")
    ada.add_argument("--agent-iterations", type=int, default=4,
                     help="training iterations budget of each agent stage (default 4)")
    ada.add_argument("--agent-minutes", type=float, default=10.0, help="time budget of each agent stage")
    ada.add_argument("--churn-budget", action="store_true",
                     help="the agent's regression budget rises to the churn of retraining its deployed model "
                     "(improve --churn-budget; one extra training a stage)")
    ada.add_argument("--threads", type=int, default=1,
                     help="torch threads (default 1: on a shared 2-core machine two threads oversubscribe)")
    ada.add_argument("--arms", help="comma-separated baselines to run (default: naive, naive_cumulative, "
                     "naive_random, oracle, clean_only, random_aug)")
    ada.add_argument("--out", type=Path, help="output folder (an earlier bench's there is replaced)")
    ada.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    ada.set_defaults(handler=run)


MARKER = ".adaptft-bench"


def fresh_bench_workspace(out: Path, opened: Path) -> Path:
    """`out/workspace`, empty but for MARKER. Only a folder an earlier bench made (MARKER, or a result.json
    beside it) is replaced, and never one that is or holds the workspace this command opened."""
    folder, root = (out / "workspace").resolve(), opened.resolve()
    if folder == root or folder in root.parents:
        raise UsageError(f"--out {out}: the bench would replace {folder}, which holds the workspace this command "
                         f"opened ({root}); pick another --out")
    if folder.exists():
        if not (folder / MARKER).is_file() and not (out / "result.json").is_file():
            raise UsageError(f"--out {out}: {folder} exists and is not an AdaptFT-Bench workspace (no {MARKER}); "
                             "pick another --out or remove that folder")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by `pioneer-tui bench adaptft`; the next run with this --out replaces it\n",
                                 encoding="utf-8")
    return folder


def run(args: argparse.Namespace, ctx: Context) -> int:
    from engine.bench.adaptft import RunConfig, recipe_for, run_adaptft  # noqa: I001 - torch: loaded when the bench runs
    from engine.tasks import task_type

    chosen = {**({"method": args.method} if args.method else {}),
              **({"base_model": args.base_model} if args.base_model else {})}
    try:  # checked before any work; the recipe's defaults follow the dataset's backend once it is read
        config = RunConfig(seed=args.seed, recipe=recipe_for("encoder", chosen),
                           agent_iterations=args.agent_iterations, agent_minutes=args.agent_minutes,
                           threads=args.threads, churn_budget=args.churn_budget,
                           **({"arms": tuple(a.strip() for a in args.arms.split(",") if a.strip())} if args.arms else {}))
    except ConfigError as exc:
        raise UsageError(f"--arms: {exc}") from None
    base = StageConfig.quick(args.seed) if args.quick else StageConfig(seed=args.seed)
    try:
        stages = StageConfig(seed=args.seed, clean_size=args.clean_size or base.clean_size,
                             stage_size=args.stage_size or base.stage_size)
        task, examples = load_dataset(args.dataset, args.data_root)
        bench = build_stages(examples, task, stages, Path(args.dataset).stem)
    except (ConfigError, DatasetError) as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from None
    backend = task_type(task).backend
    try:
        config = replace(config, backend=backend, recipe=recipe_for(backend, chosen))
    except ConfigError as exc:
        raise UsageError(f"--method: {exc}") from None
    out = args.out or ctx.workspace.root / "bench" / \
        f"adaptft-{Path(args.dataset).stem}-s{args.seed}{'-quick' if args.quick else ''}"
    workspace = fresh_bench_workspace(out, ctx.workspace.root)
    started = time.strftime("%H:%M:%S")
    say = sys.stderr if args.json else sys.stdout
    print(f"[{started}] AdaptFT-Bench {bench.dataset} ({task}): clean {len(bench.clean)}, stages "
          f"{[len(s.rows) for s in bench.stages]}, held-out {len(bench.held_out)}; arms {', '.join(config.arms)}; "
          f"output {out}", flush=True, file=say)
    result = run_adaptft(workspace, bench, config,
                         log=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True, file=say))
    paths = write_report(result, out)
    if args.json:
        ctx.emit_json({**result.to_dict(), "final_gap": final_gap(result), "paths": {k: str(v) for k, v in paths.items()}})
        return 0
    print(markdown(result))
    gap = final_gap(result)
    print(f"final gap {'—' if gap is None else f'{100 * gap:+.1f}'} points; report {paths['report']}, "
          f"chart {paths['chart']}")
    return 0
