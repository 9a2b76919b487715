"""`--mlflow URI` (issue 17): a run's events logged to MLflow by a bus subscriber — configuration as
parameters, each node's score and metrics stepped by node order, gates with their verdicts, the promotion,
and data-curation.md at the end — against a local file store; a tracking failure never stops a run."""

from __future__ import annotations

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run

from engine.mlflow_tracking import MLflowSubscriber
from store import Store

mlflow = pytest.importorskip("mlflow")


def test_a_replayed_run_lands_in_mlflow_with_scores_gates_and_its_curation_log(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with Store(tmp_path / "ws") as store:
        build_fixture_run(store)
        events = store.runs.events(RUN_ID)
        nodes = [n for n in store.runs.nodes(RUN_ID) if n["score"] is not None]
    subscriber = MLflowSubscriber(str(tmp_path / "mlruns"))
    for event in events:
        subscriber(event)
    assert not subscriber.broken
    client = mlflow.tracking.MlflowClient(str(tmp_path / "mlruns"))
    run = client.get_run(subscriber.mlflow_run)
    assert run.info.run_name == RUN_ID and run.info.status == "FINISHED"
    assert run.data.tags["pioneer.mode"] == "production" and "promoted_model" in run.data.tags
    history = client.get_metric_history(run.info.run_id, "score")
    assert [round(m.value, 4) for m in history] == [round(n["score"], 4) for n in nodes]
    assert [m.step for m in history] == list(range(1, len(nodes) + 1))
    assert any(k.startswith("gate.") for k in run.data.metrics) and run.data.params
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"data-curation.md", "summary.json"}
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/data-curation.md")
    assert text.startswith(f"# Data curation log — run `{RUN_ID}`")


def test_an_unreachable_tracker_is_reported_once_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with Store(tmp_path / "ws") as store:
        build_fixture_run(store)
        events = store.runs.events(RUN_ID)
    subscriber = MLflowSubscriber("http://127.0.0.1:9")  # nothing listens on the discard port
    for event in events:
        subscriber(event)
    err = capsys.readouterr().err
    assert subscriber.broken and err.count("mlflow: logging to http://127.0.0.1:9 stopped") == 1
