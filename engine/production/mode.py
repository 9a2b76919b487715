"""Production mode wired to the shared loop: the root pipeline (the deployed model's own recipe), the
loop parts a run (or its resume) is built from, `improve` end to end, and the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from engine.events import CurationNote, EventBus, Subscriber
from engine.models.base import (
    ProgressCallback,
    TrainConfig,
)
from engine.production.config import ProductionConfig
from engine.production.diagnosis import (
    adopt_diagnosis,
    deployed_model,
    diagnose,
    load_diagnosis,
    replay_pool,
)
from engine.production.runner import ProductionRunner
from engine.search.gates import GateConfig
from engine.search.graph import Node
from engine.search.llm_planner import planner_for
from engine.search.loop import (
    LoopConfig,
    LoopParts,
    LoopResult,
    NodeEvaluation,
    NodeFailed,
    open_run,
    result_of,
    run_loop,
)
from engine.search.pipeline import DatasetSpec, Pipeline, Strategy
from engine.search.planner import Planner
from engine.search.reviewer import Reviewer
from engine.seed import seed_everything
from engine.tasks import task_type
from store import Store


def root_pipeline(deployed: dict[str, Any], config: ProductionConfig, task: str,
                  parent_version: str | None, replay_pool: int = 0) -> Pipeline:
    """The deployed model's own recipe (overridden by config.hyperparams), on a production curriculum
    that replays the whole pool when it has at most `full_replay_below` rows."""
    known = {f.name for f in fields(TrainConfig)}
    hyper = {k: v for k, v in (deployed.get("hyperparameters") or {}).items() if k in known}
    hyper.setdefault("base_model", deployed.get("base_model") or "minilm")
    if deployed.get("method"):
        hyper.setdefault("method", deployed["method"])
    hyper.update(config.hyperparams)
    hyper.update(task=task, seed=config.seed)
    gold, hard, replay = config.composition
    scope = "all" if 0 < replay_pool <= config.full_replay_below else "share"
    return Pipeline(DatasetSpec(mode="production", source_versions=(parent_version,) if parent_version else (),
                                gold_fraction=gold, hard_negative_fraction=hard, replay_fraction=replay,
                                replay_scope=scope),
                    TrainConfig(**hyper), Strategy(eval_method=task_type(task).default_metric))


def loop_parts(store: Store, run: dict[str, Any], bus: EventBus, planner: Planner | None = None) -> LoopParts:
    """The production loop for a run, diagnosing it first unless its snapshot exists (resume). A run
    config with `diagnosis_from` adopts that run's diagnosis instead, and one with `root` starts from
    that pipeline instead of the deployed model's recipe (a fork, engine.production.fork)."""
    raw = run["config"] or {}
    config = ProductionConfig.from_dict(raw["production"])
    seed_everything(config.seed)
    planner = planner or planner_for(config.llm, seed=config.seed, store=store, options=config.llm_options)
    diagnosis = load_diagnosis(store, bus.run_id)
    if diagnosis is None and raw.get("diagnosis_from"):
        diagnosis = adopt_diagnosis(store, bus, raw)
    diagnosis = diagnosis or diagnose(store, bus, config, planner)
    deployed = store.models.get(diagnosis.deployed_id) or {}
    root = Pipeline.from_dict(raw["root"]) if raw.get("root") else \
        root_pipeline(deployed, config, diagnosis.task, diagnosis.parent_version, replay_pool(store, diagnosis))
    loop = LoopConfig.from_dict(raw.get("loop") or config.loop_config().to_dict())
    finish = None
    if diagnosis.failure is None:
        finish = f"no failing traces for {diagnosis.deployed_id}: nothing to improve"
    elif diagnosis.n_fixable == 0:
        finish = f"all {len(diagnosis.failure)} failures are external (poison or uncorrected): nothing training can fix"
    runner = ProductionRunner(store, bus.run_id, diagnosis, config) if finish is None else _NoRunner()
    if config.churn_budget and finish is None:
        budget = churn_budget(store, bus, runner, root, loop.gates)
        loop = replace(loop, gates=replace(loop.gates, max_regression_rate=budget))
    rationale = f"the deployed model {diagnosis.deployed_id}, scored on the failure set from its traces"
    if raw.get("forked_from"):
        rationale += f"; its pipeline is node {raw['forked_from']}'s, where this fork's search grows from"
    return LoopParts(root, planner, runner, loop, rationale, finish)


CHURN_SECTION = "Regression budget"


def churn_budget(store: Store, bus: EventBus, runner: ProductionRunner, root: Pipeline, gates: GateConfig) -> float:
    """The regression budget raised to the deployed model's retraining churn, measured once per run (a
    resumed run reads it from its curation note). Every candidate is retrained from the base, and two
    retrains of one recipe on one dataset disagree item by item: on AdaptFT arithmetic (SmolLM2-135M
    at 43% exact match), each clean-only retrain broke 15-37% of its predecessor's held-out passes while
    its accuracy rose from 43% to 54%. A 5% budget then refuses every retrain; this one refuses only
    candidates that break more than retraining alone does. The gain gate still demands a significant
    gain on traffic."""
    configured = float(gates.max_regression_rate or 0.0)
    for event in store.runs.events(bus.run_id):
        if event.type == CurationNote.TYPE and event.payload.get("section") == CHURN_SECTION:
            if (measured := (event.payload.get("data") or {}).get("budget")) is not None:
                return float(measured)
    bus.emit(CurationNote(section=CHURN_SECTION, markdown="- measuring the deployed model's retraining churn: its "
                          "recipe retrains on its own training data with the next seed before the search starts"))
    churn = runner.retraining_churn(root)
    if churn is None:
        budget, markdown = configured, (f"- the deployed model has no recorded training data to retrain, so its "
                                        f"churn is unknown: the budget stays {configured:.1%}")
        data: dict[str, Any] = {"budget": budget}
    else:
        budget = max(configured, churn.rate)
        markdown = (f"- retraining the deployed model's recipe on its own {churn.rows:,} training rows with seed "
                    f"{churn.seed} (model {churn.model_id}) broke {churn.broken} of the {churn.guarded} held-out items "
                    f"the budget guards (the regression set and the previous checkpoint's; {churn.rate:.1%}): the "
                    f"regression budget is {budget:.1%} (configured {configured:.1%}); "
                    "a candidate that breaks no more than a retrain of the same recipe is within retraining noise")
        data = {"budget": budget, **asdict(churn), "rate": churn.rate, "configured": configured}
    bus.emit(CurationNote(section=CHURN_SECTION, markdown=markdown, data=data))
    return budget


class _NoRunner:
    """Stands in when diagnosis found nothing to search (the loop finishes before using it)."""

    def baseline(self) -> str | None:
        return None

    def labels(self) -> tuple[str, ...]:
        return ()

    def build_curriculum(self, node: Node) -> str:
        raise NodeFailed("nothing to search")

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        raise NodeFailed("nothing to search")

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation:
        raise NodeFailed("nothing to search")


@dataclass(frozen=True)
class Iteration:
    node_id: str
    iteration: int
    operator: str
    status: str
    score: float | None
    regressions: int | None
    cross_regressions: int | None
    gates: dict[str, bool]
    note: str = ""


@dataclass(frozen=True)
class ProductionSummary:
    run_id: str
    status: str
    reason: str
    outcome: str
    promoted_model: str | None
    clusters: list[dict[str, Any]]
    triage: dict[str, int]
    iterations: list[Iteration]
    promote_command: str | None = None  # how to promote the run's close call later, when it ended on one

    @property
    def promoted(self) -> bool:
        return self.promoted_model is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_run(store: Store, run_id: str, result: LoopResult | None = None) -> ProductionSummary:
    """Taxonomy, per-iteration scores and gate verdicts, and the final decision, from the stored run."""
    result = result or result_of(store, run_id)
    events = store.runs.events(run_id)
    taxonomy = next((e.payload for e in events if e.type == "taxonomy_built"), {})
    clusters = [{k: c.get(k) for k in ("id", "name", "kind", "size", "fixability", "confirmation_rate")}
                for c in taxonomy.get("clusters") or []]
    edges = {e["dst"]: e["operator"] for e in store.runs.edges(run_id)}
    iterations = []
    for n in store.runs.nodes(run_id):
        m = n["metrics"] or {}
        gates = {r["gate"]: bool(r["passed"]) for r in (m.get("gates") or {}).get("results") or []}
        note = m.get("veto_reason") or m.get("error") or m.get("exhausted_reason") or ""
        iterations.append(Iteration(n["id"], n["iteration"], edges.get(n["id"], "root"), n["status"], n["score"],
                                    n["regressions"], m.get("cross_checkpoint.regressions"), gates, str(note)))
    finished = next((e.payload for e in reversed(events) if e.type == "run_finished"), {})
    return ProductionSummary(run_id, result.status, result.reason, result.outcome, result.promoted_model, clusters,
                             dict(taxonomy.get("triage") or {}), iterations, finished.get("promote_command"))


def improve(store: Store, config: ProductionConfig, *, reviewer: Reviewer, planner: Planner | None = None,
            subscribers: tuple[Subscriber, ...] = (), should_stop: Callable[[], bool] | None = None,
            run_id: str | None = None, loop: LoopConfig | None = None, root: Pipeline | None = None,
            diagnosis_from: str | None = None, forked_from: str | None = None) -> ProductionSummary:
    """Run production mode end to end: diagnose, search under the gates, promote through the Reviewer.
    `loop` replaces the search settings derived from `config`; `root` the root pipeline derived from the
    deployed model; `diagnosis_from` (a run id) adopts that run's diagnosis; `forked_from` names the node a
    fork starts from (see engine.production.fork). All are stored with the run, so a resume uses them."""
    deployed_model(store, config.model)  # fail before a run exists
    limits = config.limits()
    loop = loop or config.loop_config()
    run_config: dict[str, Any] = {"production": config.to_dict(), "loop": loop.to_dict(), "budget": asdict(limits)}
    if root is not None:
        run_config["root"] = root.to_dict()
    if diagnosis_from is not None:
        run_config["diagnosis_from"] = diagnosis_from
    if forked_from is not None:
        run_config["forked_from"] = forked_from
    bus = open_run(store, "production", run_config, run_id=run_id, subscribers=subscribers)
    try:
        parts = loop_parts(store, store.runs.get(bus.run_id), bus, planner)
    except BaseException as exc:
        store.runs.update(bus.run_id, status="failed", stop_reason=f"diagnosis failed: {type(exc).__name__}: {exc}")
        raise
    result = run_loop(bus, parts, reviewer, limits, should_stop)
    return summarize_run(store, bus.run_id, result)
