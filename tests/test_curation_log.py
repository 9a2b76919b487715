"""data-curation.md is a pure function of a run's events: deterministic, complete, and regenerated
(so it cannot drift) whenever an event is appended."""

from __future__ import annotations

import random

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run

from engine.curation_log import (
    composition_text,
    curation_log_path,
    pipeline_change,
    qc_lines,
    render_curation_log,
    write_curation_log,
)
from engine.events import CurationNote, EventBus
from store import Event, Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ws")
    build_fixture_run(s)
    yield s
    s.close()


def test_same_events_same_bytes_in_any_input_order(store):
    events = store.runs.events(RUN_ID)
    first = render_curation_log(events)
    shuffled = list(events)
    random.Random(0).shuffle(shuffled)
    assert render_curation_log(shuffled) == first
    assert render_curation_log(list(events)) == first


def test_the_log_covers_versions_ratios_qc_results_rationale_and_decisions(store):
    text = render_curation_log(store.runs.events(RUN_ID))
    assert text.startswith(f"# Data curation log — run `{RUN_ID}`\n")
    assert "- Mode: **production**, started 2026-11-22T09:00:07.000+00:00" in text
    assert "| change_language ↔ translate | label_confusion | 42 | fixable | 83% |" in text
    assert "4 clusters covering 93 failures; 84 judged fixable, 9 external (not trained on)." in text
    # per-iteration: composition ratios, QC, decision, training, result, gates, rationale, change
    assert "### Iteration 1 · node `run-fixture.n0001` (expand from `run-fixture.n0000`)" in text
    assert ("- **Curriculum** dataset `ds-v1`: gold 8 (50%) · hard_negative 5 (31%) · replay 3 (19%) — 16 rows"
            in text)
    assert "  - ✗ near_duplicates: 3 (limit 0)" in text
    assert ("- **Decision** (curriculum): **edit** by tui:alice → dataset `ds-v2-edited` — dropped a stale "
            "replay row, added one gold example (diff: removed 1; added 1; changed 1)") in text
    assert "- **Decision** (curriculum): **veto** by tui:alice → dataset `ds-v3` — full fine-tune is too slow" in text
    assert "- **Training**: 110/110 steps, last loss 0.1, 95 ex/s" in text
    assert "- **Result**: score 0.9310, 4 regressions → **evaluated**" in text
    # a gate recorded before events carried its rule reads with the gate's own rule
    assert "- ✗ regressions on the regression set: 4 regressions (must be ≤ 2)" in text
    assert "- **Rollback**: model `m-n0004` → `m-n0002` — 4 regressions > epsilon 2" in text
    assert "- **Promoted** model `m-n0005` (score 0.9680)" in text
    assert "Rationale: 0.80-0.95: tune hyperparameters with the data fixed." in text
    assert "Change: hyperparams.epochs 3 → 5; hyperparams.learning_rate 0.0005 → 0.0002" in text
    # dataset versions: one row per version, with who used it and where edits came from
    assert "| `ds-v2-edited` | run-fixture.n0002, run-fixture.n0004 |" in text
    assert "edit by tui:alice (removed 1; added 1; changed 1)" in text
    assert "| 3 | curriculum | veto | tui:alice | run-fixture.n0003 | full fine-tune is too slow" in text
    assert "## Triage\n\n9 traces matched prompt-injection or gibberish rules" in text
    assert "- Best node: `run-fixture.n0005`, score 0.9680" in text


def test_write_is_atomic_and_regenerates_from_new_events(store):
    path = write_curation_log(store, RUN_ID)
    assert path == curation_log_path(store, RUN_ID) == store.artifacts / "runs" / RUN_ID / "data-curation.md"
    assert path.read_text(encoding="utf-8") == render_curation_log(store.runs.events(RUN_ID))
    assert [p.name for p in path.parent.iterdir()] == ["data-curation.md"]  # no temp files left
    EventBus(store, RUN_ID).emit(CurationNote(section="Follow-up", markdown="Re-judge 3 traces by hand."))
    write_curation_log(store, RUN_ID)
    assert path.read_text(encoding="utf-8").endswith("## Follow-up\n\nRe-judge 3 traces by hand.\n\n"
                                                     "## Budget\n\n- dollars: 0 of 1\n- iterations: 4 of 6\n"
                                                     "- seconds: 1104 of 1800\n- tokens: 0\n\n## Outcome\n\n"
                                                     "- Status: **finished** at 2026-11-22T09:06:18.000+00:00\n"
                                                     "- Reason: score gate met (0.968 >= 0.96) with 1 regression\n"
                                                     "- Best node: `run-fixture.n0005`, score 0.9680\n")


def test_empty_and_partial_runs_render():
    assert render_curation_log([]) == "# Data curation log — run `?`\n\n- (run_started not recorded)\n"
    partial = [Event("r", 1, "2026-01-01T00:00:00", "run_started", {"mode": "cold_start", "config": {}}),
               Event("r", 2, "2026-01-01T00:00:01", "node_added",
                     {"node_id": "r.n0000", "operator": "root", "iteration": 0, "pipeline": {}})]
    text = render_curation_log(partial)
    assert "### Iteration 0 · node `r.n0000` (root)" in text and "## Outcome" not in text


def test_helpers():
    assert composition_text({"gold": 0.6, "hard_negative": 0.4}) == "gold 60% · hard_negative 40%"
    assert composition_text({}) == "(empty)"
    assert qc_lines({"label_ratio": {"passed": False, "value": 4, "limit": 3}, "n_rows": 10}) == [
        "- ✗ label_ratio: 4 (limit 3)", "- n_rows: 10"]
    assert pipeline_change({"h": {"lr": 1, "bs": 8}}, {"h": {"lr": 2, "bs": 8}}) == "h.lr 1 → 2"
    assert pipeline_change({"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 2}, limit=2) == "a 1 → 2; b 1 → 2; +1 more"
    assert pipeline_change(None, {"a": 1}) == ""
    assert pipeline_change({"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 2, "c": 2}, limit=None) == "a 1 → 2; b 1 → 2; c 1 → 2"


def test_a_root_without_a_regression_count_says_so_not_none():
    events = [Event("r", 1, "2026-01-01T00:00:00", "node_added", {"node_id": "n0", "iteration": 0}),
              Event("r", 2, "2026-01-01T00:00:01", "node_evaluated",
                    {"node_id": "n0", "score": 0.5, "regressions": None, "status": "evaluated"}),
              Event("r", 3, "2026-01-01T00:00:02", "node_evaluated",
                    {"node_id": "n1", "score": 0.7, "regressions": 1, "status": "accepted"})]
    text = render_curation_log(events)
    assert "None" not in text
    assert "- **Result**: score 0.5000, regressions — → **evaluated**" in text
    assert "- **Result**: score 0.7000, 1 regression → **accepted**" in text
