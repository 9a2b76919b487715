"""The curriculum review (issue 13, the person in the loop): a veto with structured reasons goes through
the real loop and the revised curriculum says what changed; edits are checked as they are typed (labels,
NER spans, slice ratios) and a bad one keeps its dialog open with the text kept; the QC that an edit
can change is recomputed on screen."""

from __future__ import annotations

import pytest
from fake_runner import Result
from fixtures.fixture_run import RUN_ID, build_fixture_run
from person_loop import ScreenHost, loop_app
from textual.pilot import Pilot
from textual.widgets import Input, Select, SelectionList, Static, TextArea
from tui_helpers import screen_text, settle

from engine.models.base import TrainConfig
from engine.search.pipeline import DatasetSpec, Pipeline
from engine.search.reviewer import CurriculumReview, Decision
from pioneer_tui.app import create_app
from pioneer_tui.screens.confirm import GateConfirmScreen
from pioneer_tui.screens.review import (
    CurriculumReviewScreen,
    RowEditorScreen,
    TextPromptScreen,
    VetoScreen,
    output_error,
)
from store import Store

pytestmark = pytest.mark.anyio
LABELS = ("transfer", "balance", "rollover_401k")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _review(rows, task: str = "classification", labels=LABELS, **kw) -> CurriculumReview:
    pipeline = Pipeline(DatasetSpec(mode="production", gold_fraction=0.5, hard_negative_fraction=0.3,
                                    replay_fraction=0.2), TrainConfig(task=task))
    return CurriculumReview("run-t.n0004", pipeline, tuple(rows), "ds-1", labels=labels, **kw)


def _rows() -> list[dict]:
    """10 rows: gold 5 (50%), hard 3 (30%), replay 2 (20%); labels 4 / 3 / 3."""
    def row(i: int, slice_name: str, label: str) -> dict:
        return {"id": f"r{i}", "input": f"example {i} for {label}", "output": label, "slice": slice_name}
    return ([row(i, "gold", LABELS[i % 3]) for i in range(5)] + [row(i, "hard_negative", LABELS[i % 3])
            for i in range(5, 8)] + [row(i, "replay", LABELS[i % 3]) for i in range(8, 10)])


async def _open(app, pilot: Pilot, review: CurriculumReview, answers: list) -> CurriculumReviewScreen:
    screen = CurriculumReviewScreen(review)
    await app.push_screen(screen, answers.append)
    await pilot.pause()
    return screen


def _said(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def test_a_veto_with_reasons_revises_the_curriculum_and_the_next_review_says_what_changed(tmp_path):
    box: dict = {}
    app, store = loop_app(tmp_path, box, lambda p: Result(), iterations=3)
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        first = app.screen.review
        assert first.vetoed is None and "was vetoed" not in screen_text(app)
        await pilot.press("v")
        await settle(pilot, lambda: isinstance(app.screen, VetoScreen))
        await pilot.press("ctrl+s")  # neither a reason nor words: refused, the dialog stays
        assert isinstance(app.screen, VetoScreen)
        assert "pick a reason or write one" in _said(app.screen, "#veto-check")
        assert app.screen.focused is app.screen.query_one(Input)
        app.screen.query_one(Input).value = "86% replay, only 5% gold"
        await pilot.press("enter")  # the words end, nothing is picked: on to the reasons, not sent
        assert isinstance(app.screen, VetoScreen) and app.screen.focused is app.screen.query_one(SelectionList)
        await pilot.press("space")  # the first reason: too much replay
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen) and app.screen.review is not first)
        revised = app.screen
        assert app.review_log[0].result == Decision("veto", "86% replay, only 5% gold", reasons=("too_much_replay",))
        assert revised.review.vetoed["node_id"] == first.node_id
        # what the revision changed in the pipeline is said, not only why
        assert revised.review.change == "data.replay_scope all → share"
        assert "change: data.replay_scope all → share" in revised.summary_text()
        vetoed_at = first.node_id.rsplit(".", 1)[-1]
        assert f"Revision of {vetoed_at}, vetoed (too much replay; 86% replay, only 5% gold): replay −5" \
            in screen_text(app)
        await pilot.press("a")
        await settle(pilot, lambda: isinstance(app.screen, GateConfirmScreen))
        await pilot.press("y")
        await settle(pilot, lambda: "result" in box)
        assert box["result"].promoted_model is not None
    veto = next(d for d in store.runs.decisions(box["run_id"]) if d["action"] == "veto")
    assert veto["diff"]["reasons"] == ["too_much_replay"] and veto["who"].startswith("tui:")
    store.close()


async def test_other_needs_words(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        await _open(app, pilot, _review(_rows()), answers)
        await pilot.press("v")
        await settle(pilot, lambda: isinstance(app.screen, VetoScreen))
        app.screen.query_one(SelectionList).select("other")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, VetoScreen) and "'other': say what is wrong" in _said(app.screen, "#veto-check")
        app.screen.query_one(Input).value = "the corrections come from a stale judge"
        await pilot.press("enter")
        await pilot.pause()
        assert answers == [Decision("veto", "the corrections come from a stale judge", reasons=("other",))]


async def test_a_classification_output_is_picked_from_the_labels_and_a_typo_in_the_data_is_flagged(tmp_path):
    rows = _rows()
    rows[0]["output"] = "trasnfer"
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        screen = await _open(app, pilot, _review(rows), answers)
        said = screen.summary_text()
        assert "✗ 1 row marked ! in the table: row 1 'trasnfer' is not a label (did you mean 'transfer'?)" in said
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, RowEditorScreen))
        editor = app.screen
        assert len(editor.query("TextArea#row-output")) == 0  # a picker, not free text
        picker = editor.query_one("#row-output", Select)
        assert picker.value is Select.NULL
        await pilot.press("ctrl+s")
        assert app.screen is editor and "pick the expected label" in _said(editor, "#row-check")
        picker.value = "transfer"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is screen)
        assert screen.rows[0]["output"] == "transfer" and "marked !" not in screen.summary_text()


def _ner_review() -> CurriculumReview:
    text = "Ada flew to Paris"
    rows = [{"id": "n1", "input": text, "output": [{"start": 0, "end": 3, "label": "PER"}], "slice": "gold"},
            {"id": "n2", "input": "Bob stayed", "output": [{"start": 0, "end": 3, "label": "PER"}], "slice": "gold"}]
    return _review(rows, task="ner", labels=("PER", "LOC"))


async def test_an_ner_label_typo_is_refused_beside_the_field_and_the_text_is_kept(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        screen = await _open(app, pilot, _ner_review(), answers)
        await pilot.press("e")
        await settle(pilot, lambda: isinstance(app.screen, RowEditorScreen))
        editor = app.screen
        typed = '[{"start": 0, "end": 3, "label": "PER"}, {"start": 12, "end": 17, "label": "LCO"}]'
        editor.query_one("#row-output", TextArea).text = typed
        await pilot.pause()
        assert "span 2: 'LCO' is not an entity type (did you mean 'LOC'?)" in _said(editor, "#row-check")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is editor and editor.query_one("#row-output", TextArea).text == typed
        editor.query_one("#row-output", TextArea).text = typed.replace('"end": 17', '"end": 18').replace("LCO", "LOC")
        await pilot.press("ctrl+s")
        assert app.screen is editor and "span 2: needs 0 ≤ start < end ≤ 17" in _said(editor, "#row-check")
        editor.query_one("#row-output", TextArea).text = typed.replace("LCO", "LOC")
        await pilot.pause()
        assert """✓ PER 'Ada' · LOC 'Paris'""" in _said(editor, "#row-check")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is screen)
        assert screen.rows[0]["output"][1] == {"start": 12, "end": 17, "label": "LOC"}
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert answers[0].action == "edit" and answers[0].rows[0]["output"][1]["label"] == "LOC"


def test_output_checks():
    assert output_error("balance", "x", "classification", LABELS) is None
    assert output_error("anything", "x", "classification", ()) is None  # no label set known: free text
    assert output_error("  ", "x", "generation", ()) == "the output is empty: write the expected output"
    assert output_error({"start": 0}, "abc", "ner", ()).startswith("write a JSON list of spans")
    assert output_error([{"start": 2, "end": 2, "label": "X"}], "abc", "ner", ()).startswith("span 1: needs")
    assert output_error([{"start": 0, "end": 3, "label": "ANY"}], "abc", "ner", ()) is None


async def test_a_bad_ratio_keeps_the_dialog_open_with_what_was_typed(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        screen = await _open(app, pilot, _review(_rows()), answers)
        await pilot.press("s")
        await settle(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        prompt = app.screen
        assert "keeps 10 rows" in _said(prompt, "#prompt-check")  # what the current ratios keep
        prompt.query_one(Input).value = "gold=50 hard=50"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is prompt and prompt.query_one(Input).value == "gold=50 hard=50"
        assert "'hard=50': write slice=value with slice one of gold, hard_negative, replay" in \
            _said(prompt, "#prompt-check")
        prompt.query_one(Input).value = "gold=50 hard_negative=50 replay=0"
        await pilot.pause()
        assert "keeps 6 rows: gold 3 (50%) · hard negatives 3 (50%) · replay 0 (0%); drops 4" in \
            _said(prompt, "#prompt-check")
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen is screen)
        assert len(screen.rows) == 6 and answers == []


async def test_qc_is_recomputed_after_an_edit(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        answers: list = []
        screen = await _open(app, pilot, _review(_rows()), answers)
        said = screen.summary_text()
        assert "✓ exact duplicates 0" in said and "✓ label ratio 1.33" in said
        assert "slices: ✓ gold 50% (want 40%–60%) · ✓ hard negatives 30% (want 25%–35%)" in said
        await pilot.press("x", "x", "x")  # three gold rows gone
        await pilot.press("n")
        await settle(pilot, lambda: isinstance(app.screen, RowEditorScreen))
        app.screen.query_one("#row-input", TextArea).text = "Example 6 for transfer!"  # row 4's input, normalised
        app.screen.query_one("#row-output", Select).value = "transfer"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is screen)
        said = screen.summary_text()
        assert "QC (edited: slices, label ratio and duplicates recomputed)" in said
        assert "✗ exact duplicates 1 (limit 0)" in said
        assert "✗ 1 row marked ! in the table: row 8 repeats row 4's input" in said
        assert "✗ gold 37.5% (want 40%–60%)" in said  # 3 of 8: the new row is gold like the highlighted one
        assert said.index("✗ exact duplicates") < said.index("✓ label ratio")  # warnings first
        table_text = screen_text(app)
        assert "! 8" in table_text


def test_replay_of_the_whole_pool_bands_each_slice_as_its_share_of_the_loss():
    from pioneer_tui.screens.review import live_qc

    rows = _rows()
    review = _review(rows)
    whole = CurriculumReview(review.node_id, Pipeline(DatasetSpec(
        mode="production", gold_fraction=0.5, hard_negative_fraction=0.3, replay_fraction=0.2, replay_scope="all",
        balance=True),
        TrainConfig(task="classification")), review.rows)
    built = {"bands": {"replay_coverage": {"value": 1.0, "band": [0.9, 1.0], "ok": True}}}
    bands = live_qc(rows[:-1], whole, built)["bands"]
    # the rows are weighted so each slice is the pipeline's share of the loss, whatever the row counts
    assert (bands["gold"]["value"], bands["hard_negative"]["value"], bands["replay"]["value"]) == \
        pytest.approx((0.5, 0.3, 0.2)) and all(bands[p]["ok"] for p in ("gold", "hard_negative", "replay"))
    # the pool's coverage is what an edit changes: one of its two replay rows removed
    assert bands["replay_coverage"]["value"] == 0.5 and not bands["replay_coverage"]["ok"]


def test_review_snapshot_80x24(snap_compare, tmp_path):
    store = Store(tmp_path / "ws")
    build_fixture_run(store)
    node = next(n for n in store.runs.nodes(RUN_ID) if n["id"] == f"{RUN_ID}.n0002")
    review = CurriculumReview(
        node_id=node["id"], pipeline=Pipeline.from_dict(node["pipeline"]), rows=tuple(store.datasets.rows("ds-v2")),
        dataset_version_id="ds-v2", rationale=node["rationale"],
        vetoed={"node_id": f"{RUN_ID}.n0001", "reason": "too much replay", "revision": True, "composition": {},
                "added": {"gold": 12}, "removed": {"replay": 561}})

    qc = store.datasets.get("ds-v2")["qc_report"]
    assert snap_compare(ScreenHost(lambda: CurriculumReviewScreen(review, qc=qc)), terminal_size=(80, 24))


def test_the_help_legend_says_what_the_marks_mean():
    from pioneer_tui.screens.help import HELP
    from widgets.curriculum_table import FLAG
    from widgets.search_graph import STATUS_MARKERS

    assert f"{STATUS_MARKERS['failed']} failed" in HELP and f"`{FLAG}` marks a row the review's QC flags" in HELP


def test_a_veto_without_a_revision_is_said_as_such_on_the_next_proposal():
    from pioneer_tui.screens.review import vetoed_text

    said = vetoed_text({"node_id": f"{RUN_ID}.n0001", "reason": "I do not trust these rows", "revision": False,
                        "added": {"gold": 3}, "removed": {}})
    assert said.startswith("n0001 was vetoed (I do not trust these rows), and the planner found nothing to change")
    assert said.endswith("this is the search's next proposal. Against n0001: gold +3")


async def test_a_curriculum_that_carries_earlier_edits_says_so(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        carried = "carries the person's edits of n0001: 1 row changed"
        screen = await _open(app, pilot, _review(_rows(), carried=carried), [])
        assert f"\n{carried}\n" in screen.summary_text()
