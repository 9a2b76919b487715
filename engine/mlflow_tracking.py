"""Logging runs to MLflow (`--mlflow URI` on improve and cold-start): an event-bus subscriber, so the
engine knows nothing of it. One MLflow run per Pioneer run: the run's configuration as parameters; each
evaluated node's score and numeric metrics as metrics stepped by node order; each gate's value as
`gate.<name>` with its verdict as a tag; the promotion or rollback as tags; data-curation.md and the
run's summary as artifacts at the end.

Tracking never stops a run: the first failure to log is reported once on stderr and logging stops.
A local folder URI (a path or file://) uses MLflow's file store, which MLflow now keeps only behind
MLFLOW_ALLOW_FILE_STORE; asking for a folder is taken as that consent.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from engine.dotted import flatten
from engine.events import GateChecked, NodeEvaluated, Promoted, Rollback, RunFinished, RunStarted, decode

EXPERIMENT = "pioneer-tui"
MAX_PARAM = 500  # MLflow's limit on a parameter value's length


class MLflowSubscriber:
    """Subscribe it to a run's EventBus; it opens its MLflow run at `run_started`."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT) -> None:
        self.uri = uri
        self.experiment = experiment
        self.client: Any = None
        self.mlflow_run: str | None = None
        self.events: list[Any] = []
        self.step = 0
        self.broken = False

    def __call__(self, event: Any) -> None:
        if self.broken:
            return
        self.events.append(event)
        try:
            self._log(decode(event), event)
        except Exception as exc:  # noqa: BLE001 - whatever the tracking server says, the run goes on
            self.broken = True
            print(f"mlflow: logging to {self.uri} stopped ({type(exc).__name__}: {str(exc)[:200]}); the run "
                  "goes on", file=sys.stderr)

    def _log(self, e: Any, raw: Any) -> None:
        if isinstance(e, RunStarted):
            self._start(raw.run_id, e)
            return
        if self.mlflow_run is None:
            return
        from mlflow.entities import Metric

        client, run = self.client, self.mlflow_run
        if isinstance(e, NodeEvaluated) and e.score is not None:
            self.step += 1
            values = {"score": e.score, **{k: v for k, v in flatten(dict(e.metrics or {})).items()
                                             if isinstance(v, int | float) and not isinstance(v, bool)}}
            if e.regressions is not None:
                values["regressions"] = e.regressions
            stamp = _millis(raw.ts)
            client.log_batch(run, metrics=[Metric(_key(k), float(v), stamp, self.step) for k, v in values.items()])
            client.set_tag(run, f"node.{self.step}", e.node_id)
        elif isinstance(e, GateChecked):
            if e.value is not None:
                client.log_metric(run, _key(f"gate.{e.gate}"), float(e.value), step=self.step)
            client.set_tag(run, f"gate.{e.gate}.{self.step}", "pass" if e.passed else "fail")
        elif isinstance(e, Promoted):
            client.set_tag(run, "promoted_model", e.model_id)
        elif isinstance(e, Rollback):
            client.set_tag(run, "rolled_back_to", e.to_model)
        elif isinstance(e, RunFinished):
            self._finish(e)

    def _start(self, run_id: str, e: RunStarted) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        if "://" not in self.uri or self.uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(self.experiment)
        experiment = found.experiment_id if found else self.client.create_experiment(self.experiment)
        run = self.client.create_run(experiment, run_name=run_id, tags={"pioneer.run_id": run_id,
                                                                        "pioneer.mode": e.mode})
        self.mlflow_run = run.info.run_id
        params = [Param(_key(k), json.dumps(v, default=str)[:MAX_PARAM] if not isinstance(v, str) else v[:MAX_PARAM])
                  for k, v in flatten(dict(e.config)).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.mlflow_run, params=params[start:start + 100])

    def _finish(self, e: RunFinished) -> None:
        from engine.curation_log import render_curation_log

        client, run = self.client, self.mlflow_run
        client.log_text(run, render_curation_log(self.events), "data-curation.md")
        client.log_dict(run, {"status": e.status, "reason": e.reason, "outcome": e.outcome,
                              "best_node": e.best_node, "best_score": e.best_score}, "summary.json")
        if e.best_score is not None:
            client.log_metric(run, "best_score", float(e.best_score))
        client.set_terminated(run, "FINISHED" if e.status == "finished" else "KILLED")


def _key(name: str) -> str:
    """An MLflow key: letters, digits and _ - . / space only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in str(name))[:250]


def _millis(ts: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(ts).timestamp() * 1000)
