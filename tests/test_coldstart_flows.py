"""Cold-start mode's flows, each on a fake trainer (fast; tests/fake_trainer.py) and on real training of a
tiny BERT (slow): setup before any training, the baseline root, the portfolio trained one after another,
E never trained on (also through a reviewer's edit), resume after an interruption (cold-start's own and
the shared MODE_FACTORIES path), and the `pioneer-tui cold-start` command."""

from __future__ import annotations

import json

import pytest
from fake_trainer import use_fake_trainer
from test_coldstart_mode import config_for, topic_file, trained_rows
from tiny_bert import build_tiny_bert

from engine.coldstart.eval_sets import HeldOutSet
from engine.coldstart.mode import cold_start, resume_cold_start
from engine.coldstart.setup import load_setup
from engine.data.quality import input_hash
from engine.search.reviewer import Decision, HeadlessReviewer, ScriptedReviewer
from pioneer_tui.cli import main
from store import Store


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    """A tiny BERT built from a config: the fake trainer reads only its config and tokenizer, the real one trains it."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), hidden_size=32))


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.slow)])
def trainer(request, monkeypatch):
    """Each flow runs on the fake trainer (fast tier) and on real training of the tiny BERT (slow tier);
    the fake one (None for real training) also says what reached the trainer."""
    return use_fake_trainer(monkeypatch) if request.param == "fake" else None


def test_setup_comes_first_then_the_portfolio_is_trained_one_after_another_and_never_on_e(tmp_path, bert, trainer):
    events = []
    with Store(tmp_path / "ws") as store:
        summary = cold_start(store, config_for(topic_file(tmp_path), bert), reviewer=HeadlessReviewer("auto"),
                             subscribers=(events.append,))
        types = [(e.type, e.payload.get("section")) for e in events]
        first_train = types.index(("train_started", None))
        setup_notes = [s for t, s in types[:first_train] if t == "curation_note"]
        assert setup_notes == ["Task analysis", "Data", "Evaluation set", "Baseline"]
        assert summary.analysis["task"] == "classification" and summary.analysis["metric"] == "accuracy"
        assert summary.baseline in ("majority_class", "nearest_centroid")
        assert set(summary.baselines) == {"majority_class", "nearest_centroid"}
        # the root is the baseline: evaluated, never trained
        root = store.runs.nodes(summary.run_id)[0]
        assert root["metrics"]["baseline_name"] == summary.baseline and root["score"] == summary.baseline_score
        assert not [e for e in events if e.type == "train_started" and e.payload["node_id"] == root["id"]]
        # iteration 1: the portfolio, two configurations, trained one after another
        methods = [(c.iteration, c.method, c.status) for c in summary.configs]
        assert methods == [(1, "linear_probe", "evaluated"), (1, "full", "evaluated")]
        assert trainer is None or len(trainer.trained) == 2
        starts = [i for i, e in enumerate(events) if e.type == "train_started"]
        evaluated = [i for i, e in enumerate(events) if e.type == "node_evaluated"]
        assert starts[0] < evaluated[1] < starts[1]
        assert summary.reason.startswith("iterations budget spent")
        assert summary.best_score == max(c.score for c in summary.configs)
        # E never trained on: no training row shares a normalised input with E
        setup = load_setup(store, summary.run_id)
        rows = trained_rows(store, summary.run_id)
        assert rows and not {input_hash(r["input"]) for r in rows} & setup.eval_set.input_hashes()
        assert setup.eval_set.content_hash() == setup.eval_hash == summary.eval_report["content_hash"]
        log = (store.artifacts / "runs" / summary.run_id / "data-curation.md").read_text()
        assert "## Evaluation set" in log and "cold-start portfolio" in log


def test_a_reviewer_edit_that_smuggles_e_into_training_fails_that_node_only(tmp_path, bert, trainer):
    with Store(tmp_path / "ws") as store:
        config = config_for(topic_file(tmp_path), bert)
        reviewer = ScriptedReviewer([])

        def review(review):
            setup = load_setup(store, review.node_id.rsplit(".", 1)[0])
            if review.node_id.endswith("n0001"):
                leaked = [{"id": f"leak{i}", "input": item.input, "output": item.expected}
                          for i, item in enumerate(setup.eval_set.items)]
                return Decision("edit", rows=tuple(list(review.rows) + leaked))
            return Decision("approve")
        reviewer.review_curriculum = review
        summary = cold_start(store, config, reviewer=reviewer)
        first, second = summary.configs
        assert first.status == "failed" and "held-out evaluation set" in first.note
        assert second.status == "evaluated"
        assert trainer is None or len(trainer.trained) == 1  # the leaking curriculum never reached the trainer
        setup = load_setup(store, summary.run_id)
        assert not {input_hash(r["input"]) for r in trained_rows(store, summary.run_id)} & setup.eval_set.input_hashes()


def test_an_interrupted_run_resumes_without_asking_twice_and_finishes(tmp_path, bert, trainer):
    stop = {"now": False}

    def watch(event):
        if event.type == "train_progress":
            stop["now"] = True

    with Store(tmp_path / "ws") as store:
        config = config_for(topic_file(tmp_path), bert)
        first = cold_start(store, config, reviewer=HeadlessReviewer("auto"), subscribers=(watch,),
                           should_stop=lambda: stop["now"])
        assert first.status == "interrupted" and (trainer is None or trainer.trained == [])
        # the fake trainer stops at its first step, so the node is caught mid-training (a real one may be
        # stopped before or after its trainer starts)
        interrupted = next((n for n in store.runs.nodes(first.run_id) if n["status"] == "training"), None)
        assert (trainer is None) or store.models.get(f"{interrupted['id']}.m1")["status"] == "failed"
        asked_before = len([d for d in store.runs.decisions(first.run_id) if d["kind"] == "curriculum"])
        reviewer = ScriptedReviewer([Decision("approve")])  # only the second node is still to be reviewed
        done = resume_cold_start(store, first.run_id, reviewer=reviewer)
        assert done.status == "finished" and [c.status for c in done.configs] == ["evaluated", "evaluated"]
        decisions = [d for d in store.runs.decisions(first.run_id) if d["kind"] == "curriculum"]
        assert len(decisions) == asked_before + 1 == 2
        assert len({d["node_id"] for d in decisions}) == 2
        # the interrupted node was trained again from the base, under a new model id
        assert interrupted is None or next(n for n in store.runs.nodes(first.run_id)
                                           if n["id"] == interrupted["id"])["model_id"] == f"{interrupted['id']}.m2"
        snapshot = json.loads((store.artifacts / "runs" / first.run_id / "coldstart.json").read_text())
        assert HeldOutSet.from_dict(snapshot["eval_set"]).content_hash() == snapshot["eval_hash"]


def test_loop_parts_fits_the_shared_resume_machinery(tmp_path, bert, trainer, monkeypatch):
    """`pioneer-tui resume` rebuilds a run through MODE_FACTORIES; registered, cold start resumes there too."""
    from engine.search import loop

    monkeypatch.setitem(loop.MODE_FACTORIES, "cold_start", "engine.coldstart.mode:loop_parts")
    stop = {"now": False}
    with Store(tmp_path / "ws") as store:
        first = cold_start(store, config_for(topic_file(tmp_path), bert), reviewer=HeadlessReviewer("auto"),
                           subscribers=(lambda e: stop.update(now=stop["now"] or e.type == "node_evaluated"
                                                              and e.payload["node_id"].endswith("n0001")),),
                           should_stop=lambda: stop["now"])
        assert first.status == "interrupted"
        result = loop.resume_run(store, first.run_id, reviewer=HeadlessReviewer("auto"))
        assert result.status == "finished"
        assert [n["status"] for n in store.runs.nodes(first.run_id)] == ["evaluated"] * 3
        assert trainer is None or len(trainer.trained) == 2


def test_cli_cold_start_headless_narrates_and_bad_data_is_one_line(tmp_path, bert, trainer, capsys):
    data = topic_file(tmp_path)
    argv = ["--workspace", str(tmp_path / "ws"), "cold-start", "classify requests by topic", "--data", str(data),
            "--base", bert, "--embedder", "tfidf", "--headless", "--approve", "auto", "--max-iterations", "1",
            "--tau", "0.999"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("Task analysis:", "Evaluation set:", "E_pos", "Baseline:", "linear_probe", "Best ", "Stopped because"):
        assert text in out, text
    assert trainer is None or len(trainer.trained) == 2
    bad = tmp_path / "bad.tsv"
    bad.write_text("Label\tSMS\nham\thi\nspam\tx\ty\n")
    assert main([*argv[:4], "--data", str(bad), *argv[6:]]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "bad.tsv:3: expected 2 fields" in err
