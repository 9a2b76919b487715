"""Reviewers (headless, stdin, scripted), the edit diff, and decisions stored with their events."""

from __future__ import annotations

import io
import json

import pytest

from engine.events import EventBus
from engine.models.base import TrainConfig
from engine.search.graph import SearchGraph
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.reviewer import (
    Confirmation,
    CurriculumReview,
    Decision,
    HeadlessReviewer,
    ScriptedReviewer,
    StdinReviewer,
    apply_review,
    confirm,
    diff_rows,
    record_review,
)
from store import Store

ROWS = ({"id": "g1", "input": "translate hola", "output": "translate", "kind": "gold"},
        {"id": "h1", "input": "switch to spanish", "output": "change_language", "kind": "hard_negative"})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "ws") as s:
        yield s


PIPELINE = Pipeline(DatasetSpec(), TrainConfig(task="classification"))


def review(version: str | None = None, node_id: str = "n1") -> CurriculumReview:
    return CurriculumReview(node_id, PIPELINE, ROWS, version, {"gold": 1, "hard_negative": 1}, "confusion pair")


def run_with_node(store: Store, mode: str) -> tuple[EventBus, str]:
    run = store.runs.create(mode)
    return EventBus(store, run), SearchGraph(store, run).add(PIPELINE, operator="root").id


def test_decisions_validate_themselves():
    with pytest.raises(ValueError, match="veto needs a reason"):
        Decision("veto")
    with pytest.raises(ValueError, match="edit needs the edited rows"):
        Decision("edit")
    with pytest.raises(ValueError, match="not approve, veto or edit"):
        Decision("maybe")
    assert Decision("edit", rows=[{"id": "a"}]).rows == ({"id": "a"},)


def test_headless_policies():
    auto, never = HeadlessReviewer("auto"), HeadlessReviewer("never")
    info = Confirmation("n1", "promote m2")
    assert auto.review_curriculum(review()).action == "approve"
    assert auto.confirm_rollback(info) and auto.confirm_promotion(info)
    vetoed = never.review_curriculum(review())
    assert vetoed.action == "veto" and "never" in vetoed.reason
    assert not never.confirm_rollback(info) and not never.confirm_promotion(info)
    with pytest.raises(ValueError, match="policy"):
        HeadlessReviewer("sometimes")


def ask(answers: str) -> tuple[StdinReviewer, io.StringIO]:
    out = io.StringIO()
    return StdinReviewer(io.StringIO(answers), out), out


def test_stdin_reviewer_approves_vetoes_and_reprompts():
    reviewer, out = ask("what?\nA\n")
    assert reviewer.review_curriculum(review()).action == "approve"
    text = out.getvalue()
    assert "Curriculum for node n1: 2 rows" in text and "please answer a, v or e (got 'what?')" in text
    reviewer, out = ask("v\n1 2\nToo Many Near Duplicates\n")
    assert reviewer.review_curriculum(review()) == Decision("veto", "Too Many Near Duplicates",
                                                            reasons=("too_much_replay", "too_little_gold"))
    assert "1) too much replay" in out.getvalue()
    reviewer, _ = ask("v\n\nsomething else\n")  # no number: the person's words alone, as "other"
    assert reviewer.review_curriculum(review()) == Decision("veto", "something else", reasons=("other",))


def test_stdin_reviewer_says_which_veto_a_curriculum_answers():
    from dataclasses import replace

    revision = replace(review(), vetoed={"node_id": "n0", "reason": "too much replay", "revision": True})
    reviewer, out = ask("a\n")
    reviewer.review_curriculum(revision)
    assert "revision of the veto of n0 (too much replay)" in out.getvalue()
    unrevised = replace(revision, vetoed={**revision.vetoed, "revision": False})
    reviewer, out = ask("a\n")
    reviewer.review_curriculum(unrevised)
    assert "the planner found nothing to change for the veto of n0 (too much replay): the next proposal" \
        in out.getvalue()
    reviewer, out = ask("a\n")
    reviewer.review_curriculum(replace(review(), carried="carries the person's edits of n0001: 1 row removed"))
    assert "\n  carries the person's edits of n0001: 1 row removed\n" in out.getvalue()


def test_stdin_reviewer_edits_from_a_jsonl_file(tmp_path):
    edited = tmp_path / "edited.jsonl"
    edited.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps({"id": "g2", "input": "x", "output": "y"}) + "\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    reviewer, out = ask(f"e\n{broken}\ne\n{edited}\n")
    decision = reviewer.review_curriculum(review())
    assert decision.action == "edit" and [r["id"] for r in decision.rows] == ["g1", "g2"]
    assert f"cannot use {broken}: {broken}:1: not JSON" in out.getvalue()


def test_stdin_end_of_input_never_approves():
    reviewer, _ = ask("")
    assert reviewer.review_curriculum(review()).action == "veto"
    assert reviewer.confirm_promotion(Confirmation("n1", "promote")) is False
    reviewer, out = ask("maybe\ny\n")
    assert reviewer.confirm_rollback(Confirmation("n1", "m2 -> m1")) is True
    assert "Roll back? m2 -> m1" in out.getvalue()


def test_scripted_reviewer_answers_in_order_and_checks_types():
    reviewer = ScriptedReviewer([Decision("veto", "no"), True, Decision("approve")])
    assert reviewer.review_curriculum(review()).action == "veto"
    assert reviewer.confirm_promotion(Confirmation("n1", "p")) is True
    with pytest.raises(RuntimeError, match="expected a bool next"):
        reviewer.confirm_rollback(Confirmation("n1", "r"))
    with pytest.raises(RuntimeError, match="no answer left"):
        reviewer.review_curriculum(review())
    assert len(reviewer.seen) == 4


def test_diff_rows_by_id():
    new = [{**ROWS[0], "output": "translate_text"}, {"id": "g2", "input": "new", "output": "translate"}]
    assert diff_rows(ROWS, new) == {
        "removed": ["h1"],
        "added": [{"id": "g2", "input": "new", "output": "translate"}],
        "changed": [{"id": "g1", "before": ROWS[0], "after": new[0]}],
    }
    assert diff_rows(ROWS, ROWS) == {"removed": [], "added": [], "changed": []}
    with pytest.raises(ValueError, match="edited curriculum row 1 has no 'id'"):
        diff_rows(ROWS, [{"input": "x"}])
    with pytest.raises(ValueError, match="original curriculum row 2 repeats id 'g1'"):
        diff_rows([ROWS[0], ROWS[0]], [])


def test_apply_review_stores_each_decision_with_its_event(store):
    bus, node_id = run_with_node(store, "cold_start")
    run = bus.run_id
    version = store.datasets.create(list(ROWS), task="classification", run_id=run)
    edited_rows = (ROWS[0], {"id": "g2", "input": "traduce esto", "output": "translate"})
    reviewer = ScriptedReviewer([Decision("approve"), Decision("veto", "leaks eval rows"),
                                 Decision("edit", rows=edited_rows)], who="alice")
    assert apply_review(bus, reviewer, review(version, node_id))[1] == version
    assert apply_review(bus, reviewer, review(version, node_id))[1] is None
    decision, new_version = apply_review(bus, reviewer, review(version, node_id))
    assert decision.action == "edit" and new_version not in (None, version)
    created = store.datasets.get(new_version)
    assert created["parent_id"] == version and created["n_rows"] == 2 and "alice" in created["note"]
    assert store.datasets.rows(new_version) == list(edited_rows)
    stored = store.runs.decisions(run)
    assert [(d["kind"], d["action"], d["who"], d["dataset_version_id"]) for d in stored] == [
        ("curriculum", "approve", "alice", version), ("curriculum", "veto", "alice", version),
        ("curriculum", "edit", "alice", new_version)]
    assert stored[1]["reason"] == "leaks eval rows"
    assert stored[2]["diff"] == diff_rows(ROWS, edited_rows)
    events = [e for e in bus.history() if e.type == "decision_recorded"]
    assert [e.payload["decision_id"] for e in events] == [d["id"] for d in stored]
    assert events[2].payload["diff"]["removed"] == ["h1"]


def test_confirm_records_approve_or_refuse(store):
    bus, node_id = run_with_node(store, "production")
    reviewer = ScriptedReviewer([True, False])
    assert confirm(bus, reviewer, "promotion", Confirmation(node_id, "promote m3 (0.97)")) is True
    assert confirm(bus, reviewer, "rollback", Confirmation(node_id, "m3 -> m2")) is False
    assert [(d["kind"], d["action"], d["node_id"]) for d in store.runs.decisions(bus.run_id)] == [
        ("promotion", "approve", node_id), ("rollback", "refuse", node_id)]
    assert [e.payload["action"] for e in bus.history()] == ["approve", "refuse"]


def test_recording_joins_the_callers_transaction_so_a_crash_leaves_no_half_decision(store):
    bus, node_id = run_with_node(store, "cold_start")
    with pytest.raises(RuntimeError, match="killed"):
        with store.transaction():
            record_review(bus, "bob", review(None, node_id), Decision("veto", "wrong labels"))
            raise RuntimeError("killed before the node was closed")
    assert store.runs.decisions(bus.run_id) == [] and bus.history() == []
    with store.transaction():
        assert record_review(bus, "bob", review(None, node_id), Decision("veto", "wrong labels")) is None
    assert [e.type for e in bus.history()] == ["decision_recorded"]


def test_a_veto_names_known_reasons_only():
    with pytest.raises(ValueError, match="veto reason"):
        Decision("veto", "x", reasons=("too_slow",))
    assert Decision("veto", reasons=("wrong_focus",)).reason is None  # a structured reason is a reason


def test_stdin_close_call_asks_for_a_reason_before_promoting():
    info = Confirmation("n1", "promote m1: estimated gain +12%", {"regressions": [
        {"id": "t9", "expected": "yes", "prediction": "maybe"}]})
    reviewer, out = ask("y\n\nworth it\n")
    assert reviewer.promote_anyway(info) == "worth it"
    assert "a reason is required" in out.getvalue() and "broken t9: expected yes, now maybe" in out.getvalue()
    assert ask("n\n")[0].promote_anyway(info) is None
    assert HeadlessReviewer("auto").promote_anyway(info) is None


def test_stdin_reviewer_says_what_changed_and_shows_trace_text_as_data():
    """A row carrying terminal escapes (ESC, a right-to-left override) is printed as visible escapes; the
    pipeline change against the parent is said under why."""
    rows = (*ROWS, {"id": "g9", "input": "\x1b]0;owned\x07 pay\u202e", "output": "a"})
    changed = CurriculumReview("n2", PIPELINE, rows, None, {}, "averaged", change="strategy.merge_deployed 0 → 0.5")
    reviewer, out = ask("a\n")
    assert reviewer.review_curriculum(changed).action == "approve"
    text = out.getvalue()
    assert "change: strategy.merge_deployed 0 → 0.5" in text
    assert "\x1b" not in text and "\u202e" not in text and "\\u001b" in text
