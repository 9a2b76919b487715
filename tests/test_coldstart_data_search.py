"""Cold-start from the description alone (issue 18): without --data the catalog is searched, the reviewer
chooses (auto: the best above the floor; never: none, and the run refuses listing the matches; a person:
one, several of one task combined, or none), and the choice is the run's record: its config, the first
section of data-curation.md, a `data` decision, and the held-out set's provenance.

Fast: a local-folder catalog under a bag-of-words embedder (tests/test_catalog.py) and the fake trainer.
Slow: the CLI end to end with the embedded MiniLM."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest
from fake_trainer import use_fake_trainer
from test_catalog import WordsEmbedder
from test_coldstart_mode import config_for, topic_file
from tiny_bert import build_tiny_bert

from engine.catalog import Catalog, LocalFolderSource
from engine.coldstart.data_search import find_data
from engine.coldstart.mode import cold_start
from engine.coldstart.registry import DataUnavailable, LoadedData, combine, load_file
from engine.curation_log import render_curation_log
from engine.errors import ConfigError
from engine.records import Example
from engine.search.reviewer import HeadlessReviewer, ScriptedReviewer, StdinReviewer
from pioneer_tui.cli import main
from store import Store


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), hidden_size=32))


def datasets(folder):
    """The workspace's datasets/: the topics file with its card, and an unrelated review file."""
    folder.mkdir(parents=True, exist_ok=True)
    topic_file(folder)
    (folder / "topics.card.json").write_text(json.dumps({
        "title": "Requests by topic", "description": "Short requests classified by topic: weather, music, sports.",
        "task": "classification"}))
    (folder / "reviews.jsonl").write_text("".join(json.dumps({"text": f"the film was {w}", "label": w}) + "\n"
                                                  for w in ("good", "bad") * 6))
    return folder


def catalog(folder) -> Catalog:
    return Catalog([LocalFolderSource(folder, load_file)], WordsEmbedder(), floor=0.3)


def searched_config(bert, description="classify requests by topic"):
    return replace(config_for("unused", bert), description=description, data=None)


def test_auto_takes_the_best_match_and_the_run_records_the_choice(tmp_path, bert, monkeypatch):
    use_fake_trainer(monkeypatch)
    found = catalog(datasets(tmp_path / "datasets"))
    with Store(tmp_path / "ws") as store:
        summary = cold_start(store, searched_config(bert), reviewer=HeadlessReviewer("auto"), catalog=found)
        run = store.runs.get(summary.run_id)
        sources = run["config"]["cold_start"]["data_sources"]
        assert [s["source"] for s in sources] == [str(tmp_path / "datasets" / "topics.jsonl")]
        data_decision = store.runs.decisions(summary.run_id)[0]
        assert (data_decision["kind"], data_decision["action"], data_decision["who"]) == ("data", "approve",
                                                                                         "headless:auto")
        assert "topics.jsonl" in data_decision["reason"] and "similarity" in data_decision["reason"]
        log = render_curation_log(store.runs.events(summary.run_id))
        assert log.index("Data search") < log.index("Task analysis")
        assert "**chosen** by headless:auto" in log and "reviews.jsonl" in log
        held_out = store.datasets.get(eval_version(store, summary.run_id))
        assert held_out["note"].startswith(f"file:{tmp_path / 'datasets' / 'topics.jsonl'}: held out")
    assert summary.status == "finished"


def eval_version(store, run_id):
    return next(e.payload["dataset_version_id"] for e in store.runs.events(run_id)
                if e.type == "curation_note" and e.payload.get("section") == "Evaluation set")


def test_never_refuses_before_any_run_opens_and_lists_the_matches(tmp_path, bert):
    found = catalog(datasets(tmp_path / "datasets"))
    with Store(tmp_path / "ws") as store:
        with pytest.raises(DataUnavailable) as err:
            cold_start(store, searched_config(bert), reviewer=HeadlessReviewer("never"), catalog=found)
        assert store.runs.list() == []
    message = str(err.value)
    assert "\n" not in message and "topics.jsonl (0." in message and "--data SOURCE" in message


def test_nothing_above_the_floor_is_refused_by_auto(tmp_path, bert):
    found = catalog(datasets(tmp_path / "datasets"))
    config = searched_config(bert, "translate German letters into French")
    with pytest.raises(DataUnavailable, match="no dataset chosen for 'translate German"):
        find_data(config, HeadlessReviewer("auto"), found)


def test_a_person_picks_by_number_on_stdin_and_may_pick_none(tmp_path, bert):
    found = catalog(datasets(tmp_path / "datasets"))
    out = io.StringIO()
    config, choice = find_data(searched_config(bert), StdinReviewer(io.StringIO("7\n2\n"), out), found)
    shown = out.getvalue()
    assert "1) " in shown and "2) " in shown and "please answer with numbers from 1 to 2" in shown
    assert [s["source"] for s in config.data_sources] == [choice.search.matches[1].card.source]
    with pytest.raises(DataUnavailable):  # none, and no teacher
        find_data(searched_config(bert), StdinReviewer(io.StringIO("\n"), io.StringIO()), found)


def test_data_already_named_skips_the_search(tmp_path, bert):
    config = config_for(topic_file(tmp_path), bert)
    assert find_data(config, ScriptedReviewer([]), catalog(tmp_path)) == (config, None)


def test_several_of_one_task_are_combined_and_mixed_tasks_are_refused(tmp_path, bert, monkeypatch):
    folder = datasets(tmp_path / "datasets")
    (folder / "tags.conll").write_text("Ann\tB-PER\nsings\tO\n\nBob\tB-PER\nruns\tO\n")
    found = catalog(folder)
    both = [str(folder / "topics.jsonl"), str(folder / "reviews.jsonl")]
    config, choice = find_data(searched_config(bert), ScriptedReviewer([both]), found)
    assert [s["source"] for s in config.data_sources] == both and "(combined)" in choice.markdown()
    with pytest.raises(ConfigError, match="different task types"):
        find_data(searched_config(bert), ScriptedReviewer([[both[0], str(folder / "tags.conll")]]), found)


def test_combine_keeps_rows_apart_and_says_which_splits_are_partial():
    a = LoadedData("a", "src-a", "jsonl", {"train": [Example("x", "p", "1")], "validation": [Example("v", "p", "2")]},
                   rationales={"1": "because"})
    b = LoadedData("b", "src-b", "csv", {"train": [Example("y", "q", "1")]})
    both = combine([a, b])
    assert [ex.id for ex in both.train] == ["1/1", "2/1"] and both.rationales == {"1/1": "because"}
    assert both.origin == "src-a + src-b" and both.format == "jsonl+csv"
    assert any("validation split comes from the sources that have one (not src-b)" in n for n in both.notes)
    assert combine([a]) is a


@pytest.mark.slow
def test_cli_without_data_searches_the_workspace_datasets_with_the_embedded_encoder(tmp_path, bert, capsys):
    workspace = tmp_path / "ws"
    datasets(workspace / "datasets")
    argv = ["--workspace", str(workspace), "cold-start", "classify short requests by topic: weather, music, sports",
            "--base", bert, "--embedder", "tfidf", "--headless", "--approve", "auto", "--max-iterations", "1",
            "--tau", "0.999", "--no-hub", "--threads", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Data search:" in out and "**chosen** by headless:auto: `" in out and "topics.jsonl" in out
    assert main([*argv[:3], "translate German letters into French", *argv[4:]]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "no dataset chosen for 'translate German letters" in err
