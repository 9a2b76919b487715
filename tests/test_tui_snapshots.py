"""Snapshots (pytest-textual-snapshot) of the main screen, the curriculum review screen, a replay and
the AdaptFT-Bench results screen, all from the deterministic fixture run (and the fixture result
JSON) at fixed terminal sizes. Update with --snapshot-update."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from textual.pilot import Pilot

from engine.search.pipeline import Pipeline
from engine.search.reviewer import CurriculumReview
from pioneer_tui.app import create_app
from pioneer_tui.screens.review import CurriculumReviewScreen
from store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ws")
    build_fixture_run(s)
    yield s
    s.close()


def test_main_screen_80x24(snap_compare, store):
    assert snap_compare(create_app(store), terminal_size=(80, 24))


def test_main_screen_light_theme_clusters(snap_compare, store):
    assert snap_compare(create_app(store, theme="textual-light"), press=["2", "down"], terminal_size=(110, 32))


def test_curriculum_review_screen(snap_compare, store):
    node = next(n for n in store.runs.nodes(RUN_ID) if n["id"] == f"{RUN_ID}.n0002")
    review = CurriculumReview(node_id=node["id"], pipeline=Pipeline.from_dict(node["pipeline"]),
                              rows=tuple(store.datasets.rows("ds-v2")), dataset_version_id="ds-v2",
                              composition={"gold": 8, "hard_negative": 5, "replay": 3}, rationale=node["rationale"])
    app = create_app(store)

    async def show_review(pilot: Pilot) -> None:
        await pilot.app.push_screen(CurriculumReviewScreen(review, qc=store.datasets.get("ds-v2")["qc_report"]))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=show_review)


def test_replay_mid_run(snap_compare, store):
    # runs list -> replay -> three iterations in, then four more events: n0002 is training
    keys = ["r", "enter", "right_square_bracket", "right_square_bracket", "right_square_bracket",
            "full_stop", "full_stop", "full_stop", "full_stop"]
    assert snap_compare(create_app(store), press=keys, terminal_size=(100, 30))


def test_bench_results_80x24(snap_compare, store):
    folder = store.workspace.root / "bench" / "adaptft-clinc150-s0"
    folder.mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "fixtures" / "adaptft_result.json", folder / "result.json")
    assert snap_compare(create_app(store), press=["B"], terminal_size=(80, 24))
