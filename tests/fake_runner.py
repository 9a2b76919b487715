"""A NodeRunner double at the loop's true boundary: real Store, real registry rows, real dataset
versions, no model. Loop-logic tests (veto, edit, refusal, close calls, promotion, resume) run on it
in milliseconds; the real runners have their own (slow) tests.

The curriculum a pipeline gets is a pure function of it (replay scope and composition change the rows),
and its evaluation is a function the test gives (`outcome(pipeline) -> Result`), so a scripted search
is reproducible and a revised pipeline really changes what a reviewer sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.models.base import Progress, ProgressCallback, TrainConfig
from engine.search.gates import TrafficEvidence
from engine.search.graph import Node
from engine.search.loop import LoopConfig, LoopParts, NodeEvaluation, NodeFailed, open_run
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.planner import RulePlanner
from store import Store

DEPLOYED = "deployed-v1"


@dataclass(frozen=True)
class Result:
    """What a candidate did on the run's sets: held-out fixes and broken passes (of 50 and 100)."""

    fixed: int = 45
    broken: int = 0
    score: float = 0.98


def traffic(result: Result) -> TrafficEvidence:
    return TrafficEvidence(n_traffic=1000, n_fixable=200, n_pass=700, holdout=50, holdout_fixed=result.fixed,
                           regression=100, broken=result.broken)


@dataclass
class FakeRunner:
    store: Store
    outcome: Callable[[Pipeline], Result]
    trained: list[str] = field(default_factory=list)

    def baseline(self) -> str:
        return DEPLOYED

    def labels(self) -> tuple[str, ...]:
        return ("a", "b")

    def build_curriculum(self, node: Node) -> str:
        data = node.pipeline.data
        replay = 20 if data.replay_scope == "all" else round(100 * data.replay_fraction)
        gold = round(100 * data.gold_fraction)
        rows = [{"id": f"gold:{i}", "input": f"gold {i}", "output": "a", "slice": "gold"} for i in range(gold)]
        rows += [{"id": f"replay:{i}", "input": f"replay {i}", "output": "b", "slice": "replay"}
                 for i in range(replay)]
        if data.gold_filter != "none":
            rows = rows[5:]
        return self.store.datasets.create(rows, task="classification", composition={"gold": gold, "replay": replay},
                                          qc_report={"checks": []})

    def train(self, node: Node, dataset_version_id: str, model_id: str, progress: ProgressCallback,
              should_stop: Callable[[], bool]) -> None:
        if self.outcome(node.pipeline) is None:
            raise NodeFailed("training diverged")
        progress(Progress(1, 1, 1.0, 0.1, 100.0, 0.0))
        self.trained.append(node.id)
        self.store.models.register(base_model="minilm", artifact_path=None, task="classification", method="full",
                                   parent_id=DEPLOYED, dataset_version_id=dataset_version_id,
                                   hyperparameters=node.pipeline.hyperparams.to_dict(), model_id=model_id)

    def evaluate(self, node: Node, model_id: str) -> NodeEvaluation:
        if model_id == DEPLOYED:
            return NodeEvaluation(score=0.0, promotable=False)
        r = self.outcome(node.pipeline)
        return NodeEvaluation(score=r.score, regressions=r.broken, failure_score=r.score, evidence=traffic(r),
                              metrics={"failure_set.accuracy": r.score})


def production_root() -> Pipeline:
    return Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.3,
                                replay_fraction=0.2, replay_scope="all"),
                    TrainConfig(task="classification", method="full", epochs=3.0, learning_rate=1e-4))


def fake_run(store: Store, outcome: Callable[[Pipeline], Result], config: LoopConfig | None = None,
             **extra: Any) -> tuple[Any, LoopParts, FakeRunner]:
    """A production-like run: the deployed model registered and deployed, the run opened."""
    if store.models.get(DEPLOYED) is None:
        store.models.register(base_model="minilm", artifact_path=None, task="classification", method="full",
                              status="deployed", model_id=DEPLOYED)
    bus = open_run(store, "production", {})
    runner = FakeRunner(store, outcome)
    parts = LoopParts(production_root(), RulePlanner(seed=0), runner, config or LoopConfig(), **extra)
    return bus, parts, runner
