"""AdaptFT-Bench results in the workbench: the light result loader (checked against the engine's own
report on the same file), its one-line errors, the trajectory chart's layout, and the bench screen
opened with `B` from the main screen (a result in the workspace, another opened by path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static
from tui_helpers import notes, settle

from pioneer_tui.app import create_app
from pioneer_tui.bench_results import BenchResultError, find_results, load_result
from pioneer_tui.screens.bench import BenchScreen, checkpoint_cells, series_of
from pioneer_tui.screens.review import TextPromptScreen
from store import Store
from widgets.trajectory_chart import Series, TrajectoryChart, trajectory_rows

FIXTURE = Path(__file__).parent / "fixtures" / "adaptft_result.json"


def place(root: Path, name: str, raw: dict | None = None) -> Path:
    folder = root / "bench" / name
    folder.mkdir(parents=True)
    if raw is None:
        shutil.copy(FIXTURE, folder / "result.json")
    else:
        (folder / "result.json").write_text(json.dumps(raw), encoding="utf-8")
    return folder / "result.json"


def test_the_loader_agrees_with_the_engines_report_on_the_same_file():
    from engine.bench.adaptft import BenchResult
    from engine.bench.report import agent_monotone, checkpoint_rows, final_gap

    view = load_result(FIXTURE)
    result = BenchResult.from_dict(json.loads(FIXTURE.read_text(encoding="utf-8")))
    report = checkpoint_rows(result)
    assert [c.name for c in view.checkpoints] == [r["checkpoint"] for r in report] == ["C1", "C2", "C3", "C4"]
    assert [c.delta for c in view.checkpoints] == [r["delta"] for r in report]
    assert [c.poison_rate for c in view.checkpoints] == [r["poison_rate"] for r in report]
    assert [c.promoted for c in view.checkpoints] == [r["promoted"] for r in report]
    assert (view.final_gap, view.agent_monotone) == (final_gap(result), agent_monotone(result)) == (0.231, True)
    assert view.arms == ("agent", "naive", "oracle", "clean_only", "random_aug")

    head, rows = checkpoint_cells(view)
    assert head == ["ckpt", "poison", "agent", "naive", "delta", "oracle", "clean", "random", "promoted"]
    assert rows[0] == ("C1", "—", "91.2", "91.2", "+0.0", "91.2", "91.2", "91.2", "—")
    assert rows[3] == ("C4", "40%", "94.4", "71.3", "+23.1", "93.4", "91.2", "88.9", "yes")
    assert [s.label for s in series_of(view)][-1] == "agent"  # drawn last, on top


@pytest.mark.parametrize(("text", "message"), [
    ('{"checkpoints": [', "line 1: not JSON"),
    ('{"dataset": "x", "checkpoints": []}', "field checkpoints is empty"),
    ('{"checkpoints": [{"name": "C1", "scores": {"naive": 0.5}}]}', "field checkpoints[0].scores has no agent score"),
    ('{"checkpoints": [{"name": "C1", "scores": {"agent": 91.2}}]}',
     "field checkpoints[0].scores.agent is 91.2, not a score in [0, 1]"),
    ('{"checkpoints": [{"name": "C1", "scores": {"agent": 0.9, "naive": 0.8}},'
     ' {"name": "C2", "scores": {"agent": 0.9}}]}', "field checkpoints[1].scores lacks naive (C1 has them)"),
    ('{"checkpoints": [{"name": "C1", "scores": {"agent": 0.9}}]}', "field dataset is missing"),
])
def test_a_bad_result_file_is_named_with_its_field(tmp_path, text, message):
    path = tmp_path / "result.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BenchResultError, match=r"result\.json") as info:
        load_result(tmp_path)  # a bench output folder resolves to its result.json
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BenchResultError, match="no such file"):
        load_result(tmp_path / "missing.json")


def test_trajectory_rows_place_markers_lines_and_checkpoint_names():
    series = [Series("naive", (0.9, 0.7), "✕"), Series("agent", (0.9, 1.0), "●")]
    rows = trajectory_rows(["C1", "C2"], series, width=27, height=6)
    assert len(rows) == 6 and all(len(cells) == 20 for _, cells in rows)
    grid = ["".join(c for c, _ in cells) for _, cells in rows]
    owner = [[k for _, k in cells] for _, cells in rows]
    # y range 0.70-1.00 over five rows: agent ends on the top row, naive on the bottom one
    assert rows[0][0] == "100.0 ┤" and rows[4][0] == " 70.0 ┤" and rows[5][0].endswith("└")
    assert grid[0][18] == "●" and owner[0][18] == 1
    assert grid[4][18] == "✕" and owner[4][18] == 0
    assert grid[1][1] == "●" and owner[1][1] == 1  # both start at 0.9: the agent (drawn last) on top
    assert "·" in grid[0] + grid[1] and "·" in grid[2] + grid[3]  # both segments drawn
    assert (grid[5].index("C1"), grid[5].index("C2")) == (0, 17)  # centred under their columns 1 and 18


def test_find_results_lists_the_bench_folders_of_the_workspace(tmp_path):
    first = place(tmp_path, "adaptft-clinc150-s0")
    (tmp_path / "bench" / "adaptft-sms_spam-s0" / "workspace").mkdir(parents=True)  # a run still in progress
    assert find_results(tmp_path) == [first]
    assert find_results(tmp_path / "nowhere") == []



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_bench_screen_opens_from_the_main_screen_and_opens_a_path(tmp_path):
    store = Store(tmp_path / "ws")
    place(store.workspace.root, "adaptft-clinc150-s0")
    place(store.workspace.root, "adaptft-broken", {"dataset": "x", "checkpoints": [{"name": "C1"}]})
    elsewhere = tmp_path / "out" / "adaptft-sms_spam-s1"
    elsewhere.mkdir(parents=True)
    raw = json.loads(FIXTURE.read_text(encoding="utf-8"))
    raw.update(dataset="sms_spam", seed=1)
    for c in raw["checkpoints"]:
        c["scores"] = {"agent": c["scores"]["agent"], "naive": c["scores"]["naive"]}
    (elsewhere / "result.json").write_text(json.dumps(raw), encoding="utf-8")

    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("B")
        await settle(pilot, lambda: isinstance(app.screen, BenchScreen))
        screen = app.screen
        results = screen.query_one("#bench-results", DataTable)
        assert [results.get_row_at(i)[0] for i in range(results.row_count)] == ["clinc150", "unreadable"]
        table = screen.query_one("#bench-checkpoints", DataTable)
        assert table.row_count == 4 and table.get_row_at(3)[:5] == ["C4", "40%", "94.4", "71.3", "+23.1"]
        assert "+23.1 points" in str(screen.query_one("#bench-summary", Static).render())
        chart = screen.query_one(TrajectoryChart)
        assert [s.label for s in chart._series] == ["naive", "oracle", "clean", "random", "agent"]

        await pilot.press("down")  # the unreadable one: its error, no table, no chart
        await pilot.pause()
        assert "field checkpoints[0].scores is missing" in str(screen.query_one("#bench-summary", Static).render())
        assert table.row_count == 0 and chart._series == []

        await pilot.press("o")
        await settle(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = str(tmp_path / "nothing-here")
        await pilot.press("enter")
        await settle(pilot, lambda: any("nothing-here: no such file" in n for n in notes(app)))
        assert app.screen is screen

        await pilot.press("o")
        await settle(pilot, lambda: isinstance(app.screen, TextPromptScreen))
        app.screen.query_one(Input).value = str(elsewhere)
        await pilot.press("enter")
        await settle(pilot, lambda: app.screen is screen and results.row_count == 3)
        assert results.get_row_at(results.cursor_row)[:2] == ["sms_spam", "1"]
        assert table.get_row_at(3) == ["C4", "40%", "94.4", "71.3", "+23.1", "yes"]
        assert [s.label for s in chart._series] == ["naive", "agent"]

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen
    store.close()
