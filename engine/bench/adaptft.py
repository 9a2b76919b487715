"""Runs AdaptFT-Bench: checkpoints C1..C4 for the agent (production mode) and the baselines.

C1 is trained on the clean pool and deployed. At each stage the deployed agent model answers the
stage's training logs; those become judged traces (engine.data.perturb.to_trace_rows with the exact
match judge), are ingested, and production mode runs on them (`improve`, HeadlessReviewer('auto'),
at most two train -> evaluate iterations, rollback = keeping the deployed model when nothing passes
the gates). The agent never sees `perturbations`, `label_valid` or `original_output`: triage is
scored against them, so they go to a side table for the report. Its acceptance evidence is made as
strong as the design allows: the regression set at the top of its band (100% of |T_fail|) and the
cross-checkpoint set of every earlier evaluation (engine.production.previous_checkpoint_set). The
baselines (engine/bench/baselines.py): realistic naive training continues its own checkpoint on each
stage's labelled logs; the other arms retrain from the base on the clean pool plus their labelled
logs so far. Every checkpoint is scored on the same held-out set: the union of the stage test
splits, restricted to rows that have an answer in the task's space (a classifier cannot abstain on
off-domain input).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.bench import baselines as bl
from engine.bench.stages import Bench, is_poisoned, to_example
from engine.data.perturb import to_trace_rows
from engine.errors import ConfigError
from engine.ingest import ingest_traces
from engine.models.base import TrainConfig
from engine.models.factory import evaluate, train_and_register, trainer_for
from engine.models.predictor import CachedPredictor
from engine.production import ProductionConfig, improve, load_diagnosis
from engine.search.reviewer import HeadlessReviewer
from engine.seed import seed_everything
from engine.tasks import task_type
from store import Store
from store.artifacts import atomic_write_jsonl

HIDDEN = ("perturbations", "label_valid", "original_output")
METRIC = {"classification": "accuracy", "ner": "entity_f1", "generation": "exact_match"}
# C1's and every retrain's recipe by backend: a probe is fast on CPU for encoders; the decoder's numbers come
# from C1's held-out curve (scripts/sweep_decoder_recipe.py, arithmetic --quick, 100 held-out rows). Full
# fine-tuning: lr 5e-5 x 32 x 2 epochs (20 steps) 18% exact match, 1e-4 x 8 x 2 28%, 2e-4 x 8 x 2 6%,
# 1e-4 x 8 x 4 46%, in 151-192 s. LoRA (rank 16 on the attention projections, batch 8, 4 epochs): lr 5e-4
# 36%, 1e-3 47%, 2e-3 43%, in 140 s. Full fine-tuning is the default: over the bench's stages the LoRA
# candidates' gains on traffic were not significant (see README). A short system prompt in place of
# SmolLM2's default one makes a row 30 tokens, not 43.
RECIPES = {"encoder": {"base_model": "minilm", "method": "linear_probe"},
           "decoder": {"base_model": "smollm2", "method": "full", "learning_rate": 1e-4, "batch_size": 8,
                       "epochs": 4.0, "system_prompt": "Answer concisely."}}
# another method's own point on that curve
METHOD_RECIPES = {("decoder", "lora"): {"learning_rate": 1e-3, "lora_rank": 16, "lora_alpha": 32}}


def recipe_for(backend: str, chosen: dict[str, Any]) -> dict[str, Any]:
    """The bench's recipe for `backend`, with the flags a person chose (`method`, `base_model`) on top."""
    return {**RECIPES[backend], **METHOD_RECIPES.get((backend, chosen.get("method")), {}), **chosen}


# methods whose checkpoint the naive arm can keep training, by backend (a decoder continues its adapter)
CONTINUABLE = {"encoder": ("linear_probe", "full"), "decoder": ("full", "lora", "qlora")}


@dataclass(frozen=True)
class RunConfig:
    """`recipe`: TrainConfig fields of C1 and of every baseline retrain (the agent starts from it).
    `regression_fraction`: the agent's regression set as a fraction of |T_fail| (the band's top).
    `threads`: torch threads of every training, prediction and embedding. One by default: on the
    shared 2-core machine (load ~5) the probe's L-BFGS steps over 150 classes took 270 ms with two
    threads against 12 ms with one, while MiniLM embedding ran 22-69 ex/s with two and 32 with one."""

    seed: int = 0
    recipe: dict[str, Any] = field(default_factory=lambda: dict(RECIPES["encoder"]))
    agent_iterations: int = 4
    agent_minutes: float = 10.0
    arms: tuple[str, ...] = bl.ARMS
    threads: int | None = 1
    regression_fraction: float = 1.0
    churn_budget: bool = False
    backend: str | None = None  # the dataset's ("encoder" / "decoder"); the method is checked once it is known

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in bl.ARMS]
        if unknown:
            raise ConfigError(f"RunConfig.arms has unknown arm(s) {', '.join(unknown)}: use {', '.join(bl.ARMS)}")
        if self.backend is None or "naive" not in self.arms:
            return
        method, known = self.recipe.get("method", "lora"), CONTINUABLE.get(self.backend, ())
        if method not in known:
            raise ConfigError(f"the naive arm continues training its checkpoint, which the bench supports for "
                              f"{' and '.join(known)} on the {self.backend}, not {method}: pick one of those or "
                              "drop the naive arm")


@dataclass
class Checkpoint:
    name: str
    poison_rate: float | None
    scores: dict[str, float]
    agent_model: str
    agent_promoted: bool | None = None
    agent_run: str | None = None
    agent_reason: str = ""
    # every model the agent's run trained and evaluated, scored afterwards on the held-out union it never
    # saw (node -> {"model", "score"}): whether the gates refused a model better than the one they kept
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class BenchResult:
    dataset: str
    task: str
    seed: int
    metric: str
    n_held_out: int
    n_held_out_scored: int
    checkpoints: list[Checkpoint]
    logs: list[dict[str, Any]]  # the side table: one row per agent trace with its hidden truth and fate
    naive_labels: dict[str, int]
    seconds: float
    config: dict[str, Any]
    # where the wall time went: seconds by phase, and the training rates over every model trained
    seconds_by_phase: dict[str, float] = field(default_factory=dict)
    training_rates: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchResult:
        return cls(**{**raw, "checkpoints": [Checkpoint(**c) for c in raw["checkpoints"]]})


@contextmanager
def _timed(spent: Counter, phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        spent[phase] += time.perf_counter() - started


def run_adaptft(workspace: Path, bench: Bench, config: RunConfig,
                log: Callable[[str], None] = lambda _: None) -> BenchResult:
    started = time.perf_counter()
    spent: Counter = Counter()
    seed_everything(config.seed)
    task = bench.task
    config = replace(config, backend=task_type(task).backend)  # checks the method against the dataset's backend
    # one label set for every model, so a checkpoint trained on a stage that lacks a label still has it
    trainer = trainer_for(task, config.recipe.get("base_model", "minilm"),
                          **({"num_threads": config.threads} if config.threads else {}),
                          **({"labels": tuple(bench.labels)} if bench.labels else {}))
    scored = [r for r in bench.held_out if r["output"] is not None]
    held_out = [to_example(r) for r in scored]
    with Store(workspace) as store:
        def train(name: str, pairs: list[tuple[dict[str, Any], Any]], dataset_version: str | None = None,
                  start: str | None = None) -> str:
            """Train from the base, or from checkpoint `start` (its weights or adapter; a probe head is refit)."""
            examples = [to_example(r, out) for r, out in pairs if out is not None]
            recipe = dict(config.recipe)
            if start is not None and recipe.get("method") != "linear_probe":  # full weights or an adapter
                recipe["base_model"] = store.models.get(start)["artifact_path"]
            cfg = TrainConfig(task=task, seed=config.seed, **recipe)
            t0 = time.perf_counter()
            model = train_and_register(store, examples, cfg, name=name, trainer=trainer,
                                       dataset_version_id=dataset_version)
            took = time.perf_counter() - t0
            spent["training: " + name.removeprefix("adaptft-").rsplit("-", 1)[0]] += took
            log(f"  trained {name} on {len(examples)} examples in {took:.0f}s")
            return model.model_id

        def predictor(model_id: str) -> tuple[CachedPredictor, float | None]:
            row = store.models.get(model_id)
            return CachedPredictor.for_artifact(row["artifact_path"], store.cache), \
                (row.get("hyperparameters") or {}).get("threshold")

        def score(model_id: str) -> float:
            p, threshold = predictor(model_id)
            with _timed(spent, "held-out scoring"):
                return round(float(evaluate(p, held_out, task, threshold)[METRIC[task]]), 4)

        def predict(model_id: str, rows: list[dict[str, Any]]) -> list[Any]:
            p, threshold = predictor(model_id)
            with _timed(spent, "answering stage logs"):
                return [bl.plain(x.output) for x in p.predict([r["input"] for r in rows], threshold)]

        clean_pairs = [(r, r["output"]) for r in bench.clean]
        version = store.datasets.create([{"id": r["id"], "input": r["input"], "output": r["output"]}
                                         for r in bench.clean], name="adaptft-clean", task=task,
                                        note="AdaptFT-Bench clean training pool (C1)")
        log(f"C1: clean pool of {len(bench.clean)}")
        c1 = train("adaptft-C1", clean_pairs, version)
        store.models.set_status(c1, "deployed")
        c1_score = score(c1)
        checkpoints = [Checkpoint("C1", None, {arm: c1_score for arm in ("agent", *config.arms)}, c1)]
        models = {arm: c1 for arm in config.arms}
        pools = {arm: list(clean_pairs) for arm in config.arms if arm in bl.CUMULATIVE}
        agent, side, naive_kinds = c1, [], Counter()
        for k, stage in enumerate(bench.stages, start=1):
            name = f"C{k + 1}"
            log(f"{name}: {stage.name}, {len(stage.train)} training logs, poison {stage.measured_poison_rate:.0%}")
            # the agent: production mode on the deployed model's judged traces
            traces = to_trace_rows(stage.train, predict(agent, stage.train), model_id=agent, stage=stage.name,
                                   seed=config.seed + k, task=task)
            truth = {t["id"]: {h: t["metadata"].get(h) for h in HIDDEN} for t in traces}
            for t in traces:
                t["metadata"] = {k2: v for k2, v in t["metadata"].items() if k2 not in HIDDEN}
            path = store.artifacts / "bench" / f"{stage.name}-traces.jsonl"
            atomic_write_jsonl(path, traces)
            ingest_traces(store, path)
            with _timed(spent, "agent: production mode"):
                summary = improve(store, ProductionConfig(model=agent, task=task, seed=config.seed,
                                                          max_iterations=config.agent_iterations,
                                                          max_minutes=config.agent_minutes,
                                                          regression_fraction=config.regression_fraction,
                                                          churn_budget=config.churn_budget,
                                                          trainer_threads=config.threads),
                                  reviewer=HeadlessReviewer("auto"))
            diagnosis = load_diagnosis(store, summary.run_id)
            side += _fates(traces, truth, diagnosis, stage.name)
            promoted = summary.promoted_model
            agent = promoted or agent
            log(f"  agent: {summary.outcome} ({summary.reason}); deployed {agent}")
            scores = {"agent": score(agent)}
            candidates = {n["id"].rsplit(".", 1)[-1]: {"model": n["model_id"], "score": score(n["model_id"])}
                          for n in store.runs.nodes(summary.run_id)
                          if n["parent_id"] and n["model_id"] and n["status"] == "evaluated"}
            # the baselines: naive keeps training its checkpoint on this stage's labelled logs; the
            # cumulative arms retrain from the base on the clean pool plus everything labelled so far
            for arm in config.arms:
                if arm.startswith("naive"):
                    labelled = bl.naive_labels(stage.train, predict(models[arm], stage.train), bench.labels,
                                               seed=config.seed * 1000 + k,
                                               wrong="random" if arm == "naive_random" else "pushed")
                    if arm == "naive":
                        naive_kinds.update(kind for _, kind in labelled)
                    new = [(r, out) for r, (out, _) in zip(stage.train, labelled, strict=True)]
                elif arm == "oracle":
                    new = bl.oracle_rows(stage.train)
                elif arm == "clean_only":
                    new = bl.clean_rows(stage.train)
                else:
                    new = bl.random_augmentation(bench.clean, len(stage.train), task, config.seed * 1000 + k)
                if arm in bl.CUMULATIVE:
                    pools[arm] += new
                    models[arm] = train(f"adaptft-{arm}-{name}", pools[arm])
                else:
                    models[arm] = train(f"adaptft-{arm}-{name}", new, start=models[arm])
                scores[arm] = score(models[arm])
            log(f"  scores: {json.dumps(scores)}")
            checkpoints.append(Checkpoint(name, stage.poison_rate, scores, agent, promoted is not None,
                                          summary.run_id, summary.reason, candidates))
        rates = _training_rates(store)
    return BenchResult(bench.dataset, task, config.seed, METRIC[task], len(bench.held_out), len(scored),
                       checkpoints, side, dict(naive_kinds), round(time.perf_counter() - started, 1), asdict(config),
                       {k: round(v, 1) for k, v in spent.most_common()}, rates)


def _training_rates(store: Store) -> dict[str, float]:
    """Training examples/s and tokens/s over every model the bench trained (agent candidates included;
    an averaged candidate trains nothing): the backends' own counts, weighted by each run's wall time."""
    rows = [m for m in store.models.list() if (m.get("metrics") or {}).get("train_examples_per_s")
            and m.get("wall_time_s")]
    out = {"models trained": float(len(rows))}
    for key, label in (("train_examples_per_s", "training examples/s"), ("train_tokens_per_s", "training tokens/s")):
        rates = [(m["metrics"][key], m["wall_time_s"]) for m in rows if m["metrics"].get(key)]
        if rates:
            out[label] = round(sum(r * w for r, w in rates) / sum(w for _, w in rates), 1)
    return out


def _fates(traces: list[dict[str, Any]], truth: dict[str, dict[str, Any]], diagnosis: Any,
           stage: str) -> list[dict[str, Any]]:
    """What the agent did with each log: passed, triaged fixable or poison; `corrected`: whether the
    judge gave it a correction (a fixable failure without one has nothing to train on)."""
    triage = diagnosis.triage if diagnosis is not None else {}
    passed = set(diagnosis.pass_ids) if diagnosis is not None else set()
    out = []
    for t in traces:
        hidden = truth[t["id"]]
        perturbations = hidden["perturbations"] or []
        verdict = triage.get(t["id"])
        if verdict is not None:
            action = "fixable" if verdict.status == "fixable" else f"poison:{verdict.reason}"
        else:
            action = "passed" if t["id"] in passed else "failed, not triaged"
        out.append({"id": t["id"], "stage": stage, "types": [p["type"] for p in perturbations],
                    "poisoned": is_poisoned({"metadata": {"perturbations": perturbations}}),
                    "label_valid": hidden["label_valid"], "verdict": t["verdict"], "action": action,
                    "corrected": t["correction"] is not None})
    return out
