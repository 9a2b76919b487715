"""Issue 13, item 8: what a person reads at 80x24. Panes carry a title or a one-line legend, the status line
names what is on screen, a curriculum's quality report reads as sentences, numbers are formatted for
people, the footers and the Clusters table fit 80 columns, the empty benchmark screen is not cut off,
and the score chart labels its bars."""

from __future__ import annotations

import io

import pytest
from fixtures.fixture_run import RUN_ID, build_fixture_run
from rich.console import Console
from tui_helpers import screen_text, settle

from engine.events import CurriculumProposed, EventBus
from pioneer_tui.app import create_app
from store import Store
from widgets.formatting import number, percent, plural, qc_lines, signed
from widgets.node_details import render_node

pytestmark = pytest.mark.anyio

# A production curriculum's quality report as engine.production.qc_checks writes it (the demo's first).
DEMO_QC = {
    "checks": [{"name": "leakage", "passed": True, "value": 0, "limit": 0, "dropped": 0},
               {"name": "exact_duplicates", "passed": True, "value": 0, "limit": 0, "dropped": 27, "conflicts": 0},
               {"name": "label_ratio", "passed": True, "value": 1.375, "limit": 3.0},
               {"name": "patterns_per_label", "passed": False, "value": "27-42", "limit": "3-5"}],
    "bands": {"gold": {"band": [0.45, 0.55], "ok": False, "value": 0.0951},
              "hard_negative": {"band": [0.3, 0.39999999999999997], "ok": False, "value": 0.0856},
              "replay": {"band": [0.15, 1.0], "ok": True, "value": 0.7771}},
    "dropped": {"exact_duplicate": 27, "near_duplicate": 55},
    "length_distance": {"ks": 0.3276, "n_target": 41, "target_mean": 66.68, "train_mean": 13.24,
                        "wasserstein": 53.4417},
    "per_cluster": {"C4": {"gold": 12, "hard_negative": 11, "shortfall": 0}, "C5": {"gold": 26, "hard_negative": 23,
                                                                                     "shortfall": 2}},
    "rows": "654 of 736 kept",
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ws")
    build_fixture_run(s)
    yield s
    s.close()


def test_numbers_read_as_people_write_them():
    assert [number(0.39999999999999997), number(41.0), number(0.91489), number(1230.4), number(None)] == \
        ["0.4", "41", "0.915", "1,230", "—"]
    assert [signed(41.0), signed(-0.0133), signed(0)] == ["+41", "-0.0133", "0"]
    assert (plural(1, "regression"), plural(2, "regression"), percent(0.0951), percent(0.4)) == \
        ("1 regression", "2 regressions", "9.5%", "40%")
    assert qc_lines(DEMO_QC) == [
        "✓ leakage 0 (limit 0)",
        "✓ exact duplicates 0 (limit 0): dropped 27",
        "✓ label ratio 1.38 (limit 3)",
        "✗ patterns per label 27-42 (limit 3-5)",
        "slices: ✗ gold 9.5% (want 45%–55%) · ✗ hard negatives 8.6% (want 30%–40%) · ✓ replay 77.7% (want ≥ 15%)",
        "input length: 13.2 words on average in training vs 66.7 in the 41 failing inputs (KS 0.328)",
        "gold / hard negatives per cluster: C4 12/11, C5 26/23 (short 2)",
        "rows: 654 of 736 kept",
    ]


async def test_the_main_screen_at_80x24_titles_its_panes_and_fits(store):
    app = create_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, lambda: "? Help" in screen_text(app))  # the footer is drawn last
        graph = screen_text(app).splitlines()
        assert graph[0].startswith(" production · finished · iter 4 · best 0.968 (1 regression) · 18:24/30:00")
        assert graph[4].rstrip() == " Search graph ● evaluated ✗ rejected ⊘ vetoed ↺ rolled back ◆ deployed ★ best"
        assert any(line.startswith("─score per evaluated node · ┈ τ 0.96") for line in graph)
        assert " node 0  1  2  4  5" in [line.rstrip() for line in graph]  # each bar's node under it
        assert graph[-1].split("▏")[0].rstrip().endswith("? Help")  # the footer fits
        await pilot.press("2")
        await pilot.pause()
        clusters = screen_text(app)
        assert "Failure clusters · 93 failures in 4 clusters: 84 fixable" in clusters
        assert " id  cluster" in clusters and "fixability  probe" in clusters
        await pilot.press("3")
        await pilot.pause()
        assert "data-curation.md · regenerated from the run's events" in screen_text(app)


async def test_the_data_pane_reads_the_quality_report_in_sentences(store):
    bus = EventBus(store, RUN_ID)  # one more proposal, with a production curriculum's full report
    bus.emit(CurriculumProposed(node_id=f"{RUN_ID}.n0005", dataset_version_id="ds-v5",
             composition={"gold": 8, "hard_negative": 5, "replay": 3}, qc=DEMO_QC))
    app = create_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.2)
        data = screen_text(app)
        assert "Curriculum of n0005 (the latest proposed)" in data
        assert "slices: ✗ gold 9.5% (want 45%–55%)" in data and "hard negatives 8.6% (want 30%–40%)" in data
        assert "{" not in data and "0.3999" not in data


async def test_node_details_format_scores_and_gates(store):
    app = create_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        node = app.main_screen.state.nodes[f"{RUN_ID}.n0005"]
        console = Console(width=60, record=True, file=io.StringIO())
        console.print(render_node(node, best=True, deployed=True))
        text = console.export_text()
        assert "score 0.968   regressions 1" in text
        words = " ".join(text.split())  # a gate's line wraps at 60 columns
        assert "✓ pass regressions on the regression set: 1 regression (must be ≤ 2)" in words
        assert "✓ pass accuracy on the failure set: 0.968 (must be ≥ 0.96)" in words


async def test_the_replay_footer_fits_80_columns(store):
    app = create_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r", "enter", "greater_than_sign")
        await settle(pilot, lambda: "Play" in screen_text(app))
        lines = screen_text(app).splitlines()
        assert lines[-1].split("▏")[0].rstrip().endswith("? Help")
        assert lines[-2].rstrip().endswith("· esc closes")


async def test_the_empty_benchmark_screen_says_all_it_has_to_say(tmp_path):
    app = create_app(Store(tmp_path / "ws"), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("B")
        await pilot.pause()
        text = " ".join(line.strip() for line in screen_text(app).splitlines()[:3])
        assert "run `pioneer-tui bench adaptft`, or press o to open a result.json" in text
