"""`pioneer-tui improve / runs / resume / report` end to end on the synthetic intent deployment."""

from __future__ import annotations

import json
import re

import pytest
from production_fixture import MODEL_NAME, build_template, copy_workspace

from pioneer_tui import app as tui_app
from pioneer_tui.cli import main
from store import Store

IMPROVE = ("improve", "--model", MODEL_NAME, "--headless", "--approve", "auto", "--max-iterations", "2")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process CLI runs train with $OMP_NUM_THREADS threads: one, on a shared 2-core machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return build_template(tmp_path_factory.mktemp("deployment"))


@pytest.fixture(scope="module")
def finished(template, tmp_path_factory):
    """A workspace with one finished headless improve run (traces re-ingested through --traces)."""
    workspace = copy_workspace(template, tmp_path_factory.mktemp("cli") / "ws")
    return workspace, main(["--workspace", str(workspace), *IMPROVE, "--traces", str(template.traces)])


def cli(workspace, *args):
    return main(["--workspace", str(workspace), *args])


def test_runs_on_an_empty_workspace(tmp_path, capsys):
    assert cli(tmp_path / "ws", "runs") == 0
    assert "no runs yet" in capsys.readouterr().out
    assert cli(tmp_path / "ws", "runs", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.slow
def test_improve_headless_prints_taxonomy_iterations_gates_and_the_decision(finished, template, capsys):
    workspace, code = finished
    assert code == 0
    with Store(workspace) as store:
        (run,) = store.runs.list()
        events = store.runs.events(run["id"])
        assert store.traces.count() == template.n_fail + template.n_pass  # re-ingesting added nothing
    finished_event = events[-1].payload
    assert finished_event["outcome"]

    # runs --json: status, best score and the budget spent, as stored
    assert cli(workspace, "runs", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["mode"], row["status"]) == (run["id"], "production", "finished")
    assert row["best_score"] == pytest.approx(finished_event["best_score"])
    assert row["spent"]["iterations"] == sum(1 for e in events if e.type == "train_started") <= 2
    assert row["limits"]["iterations"] == 2 and row["limits"]["seconds"] == 1800.0
    assert row["stop_reason"] == finished_event["reason"]
    assert cli(workspace, "runs") == 0
    table = capsys.readouterr().out
    assert run["id"] in table and "finished" in table and f"{row['spent']['iterations']}/2" in table


@pytest.mark.slow
def test_improve_output_and_json_summary(template, tmp_path, capsys):
    workspace = copy_workspace(template, tmp_path / "ws")
    assert cli(workspace, *IMPROVE, "--json") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    narration = captured.err
    assert "Failure taxonomy: 23 failing, 43 passing traces" in narration
    assert "prompt-injection / jailbreak attempts" in narration and "triage: fixable" in narration
    # the default (traffic) rule's gates, in words: "    PASS estimated gain on traffic, lower bound: +6.7% (must be > 0)"
    assert re.search(r"^    (PASS|FAIL) estimated gain on traffic, lower bound: [+-]?[\d.]+% \(must be > 0\)$", narration, re.M)
    assert re.search(r"^    (PASS|FAIL) held-out passes broken: [\d.]+% \(must be ≤ [\d.]+%\)$", narration, re.M)
    assert f"Final decision: {summary['outcome']}" in narration
    assert summary["status"] == "finished" and summary["clusters"] and summary["iterations"][0]["operator"] == "root"
    for it in summary["iterations"][1:]:
        if it["status"] == "evaluated":
            assert f"{it['node_id'].rsplit('.', 1)[-1]}: score {it['score']:.4f}" in narration


@pytest.mark.slow
def test_report_is_one_offline_html_file(finished, capsys):
    workspace, _ = finished
    with Store(workspace) as store:
        run_id = store.runs.list()[-1]["id"]
    assert cli(workspace, "report", run_id) == 0
    path = capsys.readouterr().out.strip()
    html = open(path, encoding="utf-8").read()
    assert path.endswith(f"runs/{run_id}/report.html")
    for chart in ("chart-score", "chart-regressions", "chart-clusters", "chart-composition"):
        assert f'id="{chart}"' in html
    assert "<script src=" not in html and "Plotly" in html and len(html) > 1_000_000  # plotly.js inline
    assert run_id in html and "Failure taxonomy" in html
    out = workspace / "elsewhere.html"
    assert cli(workspace, "report", run_id, "--out", str(out)) == 0
    assert out.read_text(encoding="utf-8") == html  # rendered from stored state only


@pytest.mark.slow
def test_resume_of_a_finished_run_and_bad_input(finished, capsys):
    workspace, _ = finished
    with Store(workspace) as store:
        run_id = store.runs.list()[-1]["id"]
    assert cli(workspace, "resume", run_id, "--headless") == 0
    assert "already finished" in capsys.readouterr().out
    assert cli(workspace, "resume", "run-nope", "--headless") == 2
    assert "run run-nope does not exist" in capsys.readouterr().err
    assert cli(workspace, "report", "run-nope") == 2
    assert cli(workspace, "improve", "--model", "nope", "--headless") == 2
    assert "--model nope: no such model in the registry" in capsys.readouterr().err
    assert cli(workspace, "improve", "--model", MODEL_NAME, "--headless", "--traces", str(workspace / "x.jsonl")) == 2


@pytest.mark.slow
def test_without_headless_the_run_opens_in_the_tui(template, tmp_path, monkeypatch):
    """The TUI is replaced at its seam (run_app): the run hook it is given drives a real engine session."""
    from engine.search.reviewer import HeadlessReviewer
    from pioneer_tui.app import EngineSession

    seen = []

    def run_app(ctx, run=None):
        run(EngineSession(ctx.workspace, HeadlessReviewer("auto"), seen.append, lambda: False))
        return 0

    monkeypatch.setattr(tui_app, "run_app", run_app)
    workspace = copy_workspace(template, tmp_path / "tui")
    assert cli(workspace, "improve", "--model", MODEL_NAME, "--max-iterations", "1") == 0
    assert seen and seen[0].type == "run_started" and seen[-1].type == "run_finished"
