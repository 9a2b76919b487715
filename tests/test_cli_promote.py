"""`pioneer-tui promote NODE --reason TEXT`: a close call a headless run kept back is deployed later by a
person, recorded as a human decision in its run; anything the gates refused outright is not."""

from __future__ import annotations

import io

import pytest
from fake_runner import DEPLOYED, Result, fake_run

from engine.curation_log import curation_log_path
from engine.production.mode import summarize_run
from engine.search.budget import BudgetLimits
from engine.search.gates import GateConfig
from engine.search.loop import LoopConfig, promote_command, run_loop
from engine.search.reviewer import HeadlessReviewer
from pioneer_tui.cli import main
from pioneer_tui.commands.improve import RunPrinter
from store import Store


def headless_run(workspace, result: Result) -> tuple[str, str]:
    """A finished headless run on the fake runner: (run id, its best node)."""
    with Store(workspace) as store:
        bus, parts, _ = fake_run(store, lambda p: result, LoopConfig(gates=GateConfig(max_regression_rate=0.02)))
        outcome = run_loop(bus, parts, HeadlessReviewer("auto"), BudgetLimits(iterations=1))
        return bus.run_id, outcome.best_node


def test_a_close_call_is_promoted_later_with_a_reason_and_recorded_in_its_run(tmp_path, capsys):
    ws = tmp_path / "ws"
    run_id, node = headless_run(ws, Result(broken=5))
    with Store(ws) as store:  # the run's summary carries the command (JSON users read it there)
        assert summarize_run(store, run_id).promote_command == promote_command(node)
    code = main(["--workspace", str(ws), "promote", node, "--reason", "five broken greetings are acceptable"])
    out = capsys.readouterr().out
    assert code == 0 and f"from {node} anyway (over the regression budget), replacing {DEPLOYED}" in out
    with Store(ws) as store:
        deployed = store.models.deployed()
        assert deployed["id"] == f"{node}.m1" and store.models.get(DEPLOYED)["status"] == "retired"
        decision = [d for d in store.runs.decisions(run_id) if d["kind"] == "promotion"][-1]
        assert (decision["action"], decision["reason"], decision["diff"]) == (
            "approve", "five broken greetings are acceptable", {"override": True, "after_run": True})
        assert decision["who"].startswith("cli:")
        events = store.runs.events(run_id)
        assert [e.type for e in events[-2:]] == ["decision_recorded", "promoted"]
        log = curation_log_path(store, run_id).read_text(encoding="utf-8")
        assert "anyway (over the regression budget): five broken greetings are acceptable" in log
    # once deployed, promoting it again is refused by the registry's lineage check
    assert main(["--workspace", str(ws), "promote", node, "--reason", "again"]) == 2
    assert "is deployed" in capsys.readouterr().err


def test_promote_refuses_what_the_gates_refused_outright_and_unknown_nodes(tmp_path, capsys):
    ws = tmp_path / "ws"
    _, node = headless_run(ws, Result(fixed=5, broken=40))  # no significant gain: not a close call
    assert main(["--workspace", str(ws), "promote", node, "--reason", "I like it"]) == 2
    assert "failed gain" in capsys.readouterr().err
    assert main(["--workspace", str(ws), "promote", "run-nope.n0001", "--reason", "x"]) == 2
    assert "no search node run-nope.n0001" in capsys.readouterr().err
    assert main(["--workspace", str(ws), "promote", node, "--reason", "  "]) == 2
    assert "needs --reason" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --reason is required
        main(["--workspace", str(ws), "promote", node])
    with Store(ws) as store:
        assert store.models.deployed()["id"] == DEPLOYED


def test_the_headless_summary_lists_the_broken_passes_and_prints_the_command(tmp_path):
    ws = tmp_path / "ws"
    run_id, node = headless_run(ws, Result(broken=5))
    out = io.StringIO()
    with Store(ws) as store:
        printer = RunPrinter(out)
        for event in store.runs.events(run_id):
            printer(event)
    text = out.getvalue()
    assert "failed only the regression budget" in text
    assert f'pioneer-tui promote {node} --reason "..."' in text
