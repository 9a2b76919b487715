"""Fork from a node (issue 8): a new production run that starts from a historical node with the state
it had then.

The fork's root pipeline is exactly the node's pipeline (D, H, S: focus pairs, targeted examples and
strategy included), and it works on the source run's diagnosis (the same failure, regression and
previous-checkpoint sets, triage, taxonomy and probes) instead of diagnosing again: traces ingested
since, or a taxonomy rebuilt from them, would be a different state. Its root is still the deployed
model scored on that failure set (as in every production run); the search grows from the node's
pipeline. The run config records `root`, `diagnosis_from` and `forked_from`, so `resume` rebuilds the
same loop (engine.production.mode.loop_parts); the adopted diagnosis (engine.production.diagnosis.
adopt_diagnosis) is snapshotted under the fork's own
run with a copy of the source's taxonomy_built event and a "Fork" curation note, in one transaction.

When the model the source run diagnosed is no longer deployed (its run, or a later one, promoted a
successor), the old diagnosis cannot gate a candidate against the model now serving traffic. The fork
then carries the node's recipe over: it diagnoses the deployed model's own traces afresh and its root
pipeline is the node's, without the targeted examples (they name clusters of the old taxonomy).

Refused, each with a one-line reason: cold-start runs (their search restarts from a portfolio of
configurations and a plateau rule set up from the task description, so one node's pipeline is not
the state the run had; start a new cold-start run instead), runs never diagnosed, and a carried-over
recipe whose deployed model has no traces yet to diagnose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from engine.errors import ConfigError
from engine.events import Subscriber
from engine.production.config import ProductionConfig
from engine.production.diagnosis import model_traces, parent_data, source_diagnosis
from engine.production.mode import ProductionSummary, improve
from engine.search.loop import LoopConfig
from engine.search.pipeline import Pipeline
from engine.search.planner import Planner
from engine.search.reviewer import Reviewer
from store import Store


@dataclass(frozen=True)
class ForkPlan:
    """A checked fork: the source run and node, the node's pipeline, and the source's settings.
    `diagnosis_from` is the source run when its diagnosis is adopted, None when the deployed model's
    traces are diagnosed afresh (the diagnosed model was replaced since)."""

    source_run: str
    node_id: str
    root: Pipeline
    config: ProductionConfig
    loop: LoopConfig
    diagnosis_from: str | None = None


def plan_fork(store: Store, run_id: str, node_id: str) -> ForkPlan:
    """Check that `node_id` of `run_id` can be forked now; every refusal is one line saying why."""
    run = store.runs.get(run_id)
    if run is None:
        raise ConfigError(f"Fork: run {run_id} does not exist (see `pioneer-tui runs`)")
    if run["mode"] != "production":
        raise ConfigError(f"Fork: run {run_id} is a {run['mode']} run; only production runs can be forked "
                          "(a cold-start search restarts from its task description: start a new run with `n`)")
    node = next((n for n in store.runs.nodes(run_id) if n["id"] == node_id), None)
    if node is None or not node.get("pipeline"):
        raise ConfigError(f"Fork: run {run_id} has no node {node_id} with a stored pipeline")
    raw = run["config"] or {}
    if "production" not in raw:
        raise ConfigError(f"Fork: run {run_id} has no stored production configuration to reuse")
    config = ProductionConfig.from_dict(raw["production"])
    diagnosis = source_diagnosis(store, run_id)
    model = store.models.get(diagnosis.deployed_id)
    if model is None:
        raise ConfigError(f"Fork: model {diagnosis.deployed_id}, which run {run_id} diagnosed, is no longer "
                          "in the registry")
    root = Pipeline.from_dict(node["pipeline"])
    loop = LoopConfig.from_dict(raw.get("loop") or config.loop_config().to_dict())
    current = store.models.deployed()
    if current is None or current["id"] == diagnosis.deployed_id:
        return ForkPlan(run_id, node_id, root, config, loop, diagnosis_from=run_id)
    if not model_traces(store, current, config.task):
        raise ConfigError(f"Fork: run {run_id} diagnosed {diagnosis.deployed_id}, since replaced by {current['id']}, "
                          f"which has no traces yet: ingest its traces first (`pioneer-tui ingest FILE`), then fork")
    parent_version, _ = parent_data(store, current["id"])
    carried = replace(root, data=replace(root.data, targeted=(),
                                         source_versions=(parent_version,) if parent_version else ()))
    return ForkPlan(run_id, node_id, carried, replace(config, model=current["id"]), loop)


def fork_run(store: Store, plan: ForkPlan, *, reviewer: Reviewer, planner: Planner | None = None,
             subscribers: tuple[Subscriber, ...] = (), should_stop: Callable[[], bool] | None = None,
             run_id: str | None = None) -> ProductionSummary:
    """Run the fork end to end: production mode from the node's pipeline, on the source's diagnosis or, when
    its model was replaced since, on a fresh diagnosis of the deployed model's traces."""
    return improve(store, plan.config, reviewer=reviewer, planner=planner, subscribers=subscribers,
                   should_stop=should_stop, run_id=run_id, loop=plan.loop, root=plan.root,
                   diagnosis_from=plan.diagnosis_from, forked_from=plan.node_id)


__all__ = ["ForkPlan", "fork_run", "plan_fork"]
