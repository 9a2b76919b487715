"""Cold-start mode (issue 6): from a task description to a trained model, on the shared agent loop.

tau = (description, model family, constraints). Setup (engine.coldstart.setup) runs once per run and
is snapshotted to artifacts/runs/<run>/coldstart.json (a resumed run reuses it exactly):
    task analysis (rules or the LLM planner; decision and reason recorded)
    -> data from the registry (or teacher-synthesised seeds)
    -> the held-out set E, built before any training (E_pos / E_neg / E_boundary, content hash)
    -> baselines on E (majority class and nearest centroid for a new encoder head, the training
       lexicon for NER, zero- and few-shot prompting for a decoder).
Then `engine.search.loop.AgentLoop` searches: the root node is the best baseline (evaluated, not
trained); its first expansion is a portfolio of at least two configurations (a linear probe vs full
fine-tuning for an encoder; LoRA with and without the task's system prompt, and
chain-of-thought supervision when rationales exist, for a decoder), trained one after another; later
expansions come from the search engine's planner and policy, each asked for at least as many
candidates. Every node's curriculum is D_cold (gold + hard negatives ~65:35, quality controls),
reviewed before it trains, checked against E by hash, trained from the base model and scored on E.
The run stops at f >= tau, on a recorded plateau (no new best in `patience` trained configurations),
or when a budget is spent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from engine.catalog import Catalog
from engine.coldstart.analysis import system_prompt_for
from engine.coldstart.data_search import catalog_for, find_data, record_choice
from engine.coldstart.planner import ColdStartPlanner, portfolio, root_pipeline
from engine.coldstart.runner import ColdStartRunner
from engine.coldstart.setup import (
    MODE,
    ColdStartConfig,
    ColdStartSetup,
    load_setup,
    prepare,
    snapshot_path,
)
from engine.errors import ConfigError
from engine.events import EventBus, Subscriber
from engine.search.budget import Budget
from engine.search.gates import GateConfig
from engine.search.llm_planner import planner_for
from engine.search.loop import LoopConfig, LoopParts, LoopResult, open_run, result_of, resume_run, run_loop
from engine.search.mcgs import MCGSConfig
from engine.search.planner import Planner
from engine.search.reviewer import Reviewer
from engine.seed import seed_everything
from store import Store


def loop_parts(store: Store, run: dict[str, Any], bus: EventBus, planner: Planner | None = None) -> LoopParts:
    """The cold-start loop for a run (the MODE_FACTORIES signature), preparing it unless resumed."""
    config = ColdStartConfig.from_dict((run["config"] or {})["cold_start"])
    seed_everything(config.seed)
    setup, embedder = load_setup(store, bus.run_id), None
    if setup is None:
        setup, embedder = prepare(store, bus, config)
    if planner is None:
        planner = planner_for(config.llm, seed=config.seed, store=store, options=config.llm_options)
    root = root_pipeline(setup, config)
    prompts = {"direct": setup.system_prompt,
               "chain_of_thought": system_prompt_for(setup.analysis, "chain_of_thought")} \
        if setup.family == "decoder" else {}
    wrapped = ColdStartPlanner(planner, portfolio(setup, root), config.configs_per_iteration, prompts)
    horizon = (config.max_iterations or 10) * config.configs_per_iteration
    loop = LoopConfig(mcgs=MCGSConfig(horizon=horizon, seed=config.seed,
                                      candidates_per_expansion=config.configs_per_iteration),
                      gates=GateConfig(config.tau), reasoning=setup.analysis.reasoning, teacher=setup.teacher)
    runner = ColdStartRunner(store, bus.run_id, setup, config, embedder)
    best = setup.baselines.best
    return LoopParts(root, wrapped, runner, loop, f"baseline {best.name} on E before any training "
                                                  f"({best.score:.4f}); its pipeline is the recipe the first "
                                                  "configurations derive from",
                     stop_check=lambda: plateau_reason(store, bus.run_id, config.patience, config.min_improvement))


def plateau_reason(store: Store, run_id: str, patience: int, min_improvement: float) -> str | None:
    """'plateau: ...' when the last `patience` trained configurations found no new best score."""
    trained = [n for n in store.runs.nodes(run_id) if n["status"] in ("evaluated", "failed")
               and not (n["metrics"] or {}).get("baseline")]
    best: float | None = None
    stale = 0
    for n in trained:
        if n["score"] is not None and (best is None or n["score"] > best + min_improvement):
            best, stale = n["score"], 0
        else:
            stale += 1
    if best is None or stale < patience:
        return None
    return (f"plateau: the best score {best:.4f} did not improve by {min_improvement:g} in the last {stale} "
            "trained configurations")


@dataclass(frozen=True)
class ConfigResult:
    node_id: str
    iteration: int
    operator: str
    method: str
    learning_rate: float
    supervision: str
    system_prompt: bool
    status: str
    score: float | None
    model_id: str | None
    note: str = ""


@dataclass(frozen=True)
class ColdStartSummary:
    run_id: str
    status: str
    reason: str
    outcome: str
    analysis: dict[str, Any]
    eval_report: dict[str, Any]
    baselines: dict[str, float]
    baseline: str
    baseline_score: float | None
    best_node: str | None
    best_model: str | None
    best_score: float | None
    promoted_model: str | None
    configs: list[ConfigResult]
    iterations: int
    wall_time_s: float  # first to last event of the run (setup included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_run(store: Store, run_id: str, result: LoopResult | None = None) -> ColdStartSummary:
    result = result or result_of(store, run_id)
    setup = ColdStartSetup.from_dict(json.loads(snapshot_path(store, run_id).read_text(encoding="utf-8")))
    edges = {e["dst"]: e["operator"] for e in store.runs.edges(run_id)}
    configs, best = [], None
    for n in store.runs.nodes(run_id):
        m, h = n["metrics"] or {}, n["pipeline"]["hyperparams"]
        if m.get("baseline"):
            continue
        row = ConfigResult(n["id"], n["iteration"], edges.get(n["id"], "root"), h["method"], h["learning_rate"],
                           n["pipeline"]["strategy"]["supervision"], h.get("system_prompt") is not None, n["status"],
                           n["score"], n["model_id"], str(m.get("veto_reason") or m.get("error") or ""))
        configs.append(row)
        if row.score is not None and (best is None or row.score > best.score):
            best = row
    events = store.runs.events(run_id)
    wall = (datetime.fromisoformat(events[-1].ts) - datetime.fromisoformat(events[0].ts)).total_seconds() \
        if events else 0.0
    baseline = setup.baselines.best
    return ColdStartSummary(run_id, result.status, result.reason, result.outcome, setup.analysis.to_dict(),
                            setup.eval_set.report, {r.name: r.score for r in setup.baselines.results}, baseline.name,
                            baseline.score, best.node_id if best else None, best.model_id if best else None,
                            best.score if best else None, result.promoted_model, configs,
                            len({c.iteration for c in configs if c.status in ("evaluated", "failed")}),
                            round(wall, 3))


def cold_start(store: Store, config: ColdStartConfig, *, reviewer: Reviewer, planner: Planner | None = None,
               subscribers: tuple[Subscriber, ...] = (), should_stop: Callable[[], bool] | None = None,
               run_id: str | None = None, catalog: Catalog | None = None) -> ColdStartSummary:
    """Run cold-start mode end to end; the setup's LLM usage is charged to the run's budget. Without
    data, the catalog search and the reviewer's choice come first: a refusal opens no run."""
    config, choice = find_data(config, reviewer, catalog or catalog_for(config, store.workspace.datasets))
    limits = config.limits()
    run_config = {"cold_start": config.to_dict(), "budget": asdict(limits)}
    bus = open_run(store, MODE, run_config, run_id=run_id, subscribers=subscribers)
    if choice is not None:
        record_choice(bus, choice)
    try:  # the live config, not the stored one: the store redacts API keys
        parts = loop_parts(store, {**store.runs.get(bus.run_id), "config": run_config}, bus, planner)
    except BaseException as exc:
        store.runs.update(bus.run_id, status="failed", stop_reason=f"setup failed: {type(exc).__name__}: {exc}")
        raise
    usage = parts.runner.setup.llm_usage if isinstance(parts.runner, ColdStartRunner) else {}
    if usage.get("tokens") or usage.get("dollars"):
        budget = Budget(limits)
        budget.charge_llm(int(usage.get("tokens") or 0), float(usage.get("dollars") or 0.0))
        store.runs.update(bus.run_id, spent=budget.to_dict())  # the loop's budget continues from it
    result = run_loop(bus, parts, reviewer, limits, should_stop)
    return summarize_run(store, bus.run_id, result)


def resume_cold_start(store: Store, run_id: str, *, reviewer: Reviewer,
                      subscribers: tuple[Subscriber, ...] = (), should_stop: Callable[[], bool] | None = None
                      ) -> ColdStartSummary:
    """Continue an interrupted or killed cold-start run (the shared resume, with the cold-start summary)."""
    run = store.runs.get(run_id)
    if run is None or run["mode"] != MODE:
        raise ConfigError(f"run {run_id} is not a cold-start run (see `pioneer-tui runs`)")
    result = resume_run(store, run_id, reviewer=reviewer, subscribers=subscribers, should_stop=should_stop)
    return summarize_run(store, run_id, result)


__all__ = [
    "ColdStartSummary", "ConfigResult", "cold_start", "loop_parts", "plateau_reason",
    "resume_cold_start", "summarize_run",
]
