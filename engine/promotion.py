"""Promoting a candidate after its run ended: what `pioneer-tui promote NODE --reason TEXT` does.

A run that ends with a close call (the best candidate failed only the regression budget) or with a
candidate a person refused keeps the deployed model and says how to promote it later. Doing so is a
human decision like any other: it is recorded in the node's run (who, when, why; `override` when the
gates had refused it), the `promoted` event is appended to the run's stream, its data-curation.md is
rewritten, and the registry moves through the same `Deployment` transition with its lineage checks.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from engine.curation_log import write_curation_log
from engine.errors import ConfigError, GateError
from engine.events import DecisionRecorded, EventBus
from engine.search.gates import Candidate, Deployment, GateReport
from store import Store


@dataclass(frozen=True)
class PromotionRecord:
    node_id: str
    run_id: str
    model_id: str
    replaced: str | None
    override: bool
    decision_id: int


def promote_node(store: Store, node_id: str, reason: str, who: str | None = None) -> PromotionRecord:
    """Deploy the model of node `node_id` (a `<run>.n<index>` id) with a person's reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ConfigError("promoting a candidate after its run needs --reason: say why it should be deployed")
    run_id = node_id.rsplit(".", 1)[0] if "." in node_id else ""
    node = next((n for n in store.runs.nodes(run_id) if n["id"] == node_id), None) if store.runs.get(run_id) else None
    if node is None:
        raise ConfigError(f"no search node {node_id}: node ids look like run-1a2b3c.n0003 (see `pioneer-tui runs`)")
    metrics = node["metrics"] or {}
    if not metrics.get("candidate") or not metrics.get("gates"):
        raise ConfigError(f"node {node_id} has no evaluated candidate model to promote")
    report = GateReport.from_dict(metrics["gates"])
    if not report.passed and not report.close_call:
        raise ConfigError(f"node {node_id} failed {', '.join(report.failed)}: only a candidate that passed its gates "
                          "or failed nothing but the regression budget can be promoted")
    candidate = Candidate.from_dict(metrics["candidate"])
    override = not report.passed
    bus = EventBus(store, run_id)
    current = store.models.deployed()
    who = who or f"cli:{getpass.getuser()}"
    with store.transaction():
        decision = store.runs.record_decision(run_id, "promotion", "approve", who, node_id=node_id, reason=reason,
                                              diff={"override": override, "after_run": True})
        bus.emit(DecisionRecorded(decision_id=decision, kind="promotion", action="approve", who=who, reason=reason,
                                  node_id=node_id, dataset_version_id=None,
                                  diff={"override": override, "after_run": True}))
        try:
            Deployment(store, bus).promote(candidate, report, override=reason if override else None)
        except GateError as exc:
            raise ConfigError(str(exc)) from None
    write_curation_log(store, run_id)
    return PromotionRecord(node_id, run_id, candidate.model_id, current["id"] if current else None, override,
                           decision)
