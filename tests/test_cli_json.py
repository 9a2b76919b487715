"""Every command answers --json (issue 17): a script can read what any command did without parsing prose.
Commands that narrate (improve, cold-start, resume, bench) send the narration to stderr then."""

from __future__ import annotations

import argparse
import json

from fixtures.fixture_run import RUN_ID, build_fixture_run
from test_models_add import classifier

from pioneer_tui.cli import build_parser, main
from store import Store


def commands(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from commands(sub, f"{prefix}{name} ")


def test_every_command_takes_json():
    lacking = [name for name, sub in commands(build_parser())
               if not any("--json" in a.option_strings for a in sub._actions)
               and not any(isinstance(a, argparse._SubParsersAction) and a.required for a in sub._actions)]
    assert lacking == []


def test_predict_report_and_resume_answer_in_json(tmp_path, capsys):
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "models", "add", str(classifier(tmp_path / "m")), "--task",
                 "classification", "--name", "m"]) == 0
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"input": "rain today"}) + "\n")
    capsys.readouterr()
    assert main(["--workspace", str(ws), "predict", "m", "--input", str(inputs), "--output",
                 str(tmp_path / "out.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"] == 1
    with Store(tmp_path / "run") as store:
        build_fixture_run(store)
    assert main(["--workspace", str(tmp_path / "run"), "report", RUN_ID, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["report"].endswith("report.html")
    with Store(tmp_path / "run") as store:
        reason = store.runs.get(RUN_ID)["stop_reason"]
    assert main(["--workspace", str(tmp_path / "run"), "resume", RUN_ID, "--headless", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run": RUN_ID, "status": "finished", "resumed": False,
                                                   "reason": reason}


def test_headless_narration_shows_training_progress_with_the_time_left_now_and_then(monkeypatch):
    import io

    from engine.events import TrainProgress, encode
    from pioneer_tui.commands import improve
    from store import Event

    clock = iter([100.0, 101.0, 112.0])
    monkeypatch.setattr(improve.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    printer = improve.RunPrinter(out)
    for step in (10, 20, 30):
        kind, payload = encode(TrainProgress(node_id="run-1.n0001", step=step, total_steps=100, examples_per_s=80.4,
                                             eta_s=95.0))
        printer(Event("run-1", step, "2026-12-06T00:00:00", kind, payload))
    assert out.getvalue().splitlines() == ["    step 10/100 (10%), 80 ex/s, about 1:35 left",
                                           "    step 30/100 (30%), 80 ex/s, about 1:35 left"]
