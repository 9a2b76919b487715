"""Display widgets on plain data: the search graph's layout, folding and navigation, the score chart,
the status bar, and the review screen's ratio arithmetic."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from pioneer_tui.screens.review import parse_ratios, resample_to_ratios
from widgets.curriculum_table import CurriculumRow, CurriculumTable
from widgets.formatting import value_text
from widgets.score_chart import ScorePoint, chart_rows
from widgets.search_graph import GraphNode, SearchGraph
from widgets.status_bar import RunStatus, StepProgress, progress_bar, status_lines
from widgets.tick_list import TickList

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class GraphApp(App):
    def compose(self) -> ComposeResult:
        yield SearchGraph(id="g")


class Recorder(GraphApp):
    """Records the ids of the nodes the graph reports as selected."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def on_search_graph_node_selected(self, message: SearchGraph.NodeSelected) -> None:
        self.seen.append(message.node_id)


def tree() -> list[GraphNode]:
    """root -> a -> a1 -> a2 (a chain), root -> b (rejected) -> b1 (rolled back), root -> c (best)."""
    return [
        GraphNode("root", None, name="root", status="accepted", score=0.5, regressions=0),
        GraphNode("a", "root", name="a", status="evaluated", score=0.7, modification="epochs 3 → 5"),
        GraphNode("b", "root", name="b", status="rejected", score=0.6, regressions=4),
        GraphNode("c", "root", name="c", status="deployed", score=0.97, regressions=1),
        GraphNode("a1", "a", name="a1", status="evaluated", score=0.8),
        GraphNode("b1", "b", name="b1", status="rolled_back", score=0.65),
        GraphNode("a2", "a1", name="a2", status="training"),
    ]


async def test_chains_stay_in_one_column_and_branches_indent():
    app = GraphApp()
    async with app.run_test(size=(100, 20)):
        graph = app.query_one(SearchGraph)
        graph.set_graph(tree(), best_id="c", deployed_id="c")
        lines = graph.visible_text()
        assert [line.split()[0] + " " + line.split()[1] for line in lines[:1]] == ["● root"]
        assert lines[1].startswith("├─● a 0.700") and "← epochs 3 → 5" in lines[1]
        assert lines[2].startswith("│ ● a1 0.800")  # single child: same column as its parent
        assert lines[3].startswith("│ ◐ a2 training")
        assert lines[4].startswith("├─✗ b 0.600 r4 rejected ▸ +1 folded")  # pruned branch folded
        assert lines[5].startswith("└─◆ c 0.970 r1 deployed ★best ◆deployed")
        assert len(lines) == 6


async def test_pruned_toggle_fold_and_jump_to_best():
    app = GraphApp()
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(SearchGraph)
        graph.focus()
        graph.set_graph(tree(), best_id="c", deployed_id="c")
        await pilot.press("p")
        assert graph.line_count == 7 and any("b1" in line for line in graph.visible_text())
        await pilot.press("p")
        assert graph.line_count == 6
        assert graph.jump_to("b1")  # a hidden node unfolds its pruned ancestor
        assert graph.highlighted_id == "b1" and graph.line_count == 7
        await pilot.press("home")
        assert graph.highlighted_id == "root"
        await pilot.press("down", "f")  # fold the chain under a
        assert graph.line_count == 5 and "▸ +2 folded" in graph.visible_text()[1]
        await pilot.press("b")
        assert graph.highlighted_id == "c"


async def test_cursor_keeps_its_node_across_refreshes_and_reports_selection():
    app = Recorder()
    seen = app.seen
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(SearchGraph)
        graph.focus()
        nodes = tree()
        graph.set_graph(nodes[:4])
        await pilot.press("end")
        assert graph.highlighted_id == "c"
        graph.set_graph(nodes)  # new nodes above the cursor: it stays on c
        assert graph.highlighted_id == "c"
        await pilot.press("enter")
        await pilot.pause()
        assert seen == ["c"]


async def test_five_hundred_node_refresh_lays_out_every_node():
    nodes = [GraphNode("n0", None, name="n0", status="accepted", score=0.5)]
    for i in range(1, 500):
        parent = f"n{(i - 1) // 3}"
        nodes.append(GraphNode(f"n{i}", parent, name=f"n{i}", status="rejected" if i % 7 == 0 else "evaluated",
                               score=0.5 + (i % 50) / 100))
    app = GraphApp()
    async with app.run_test(size=(100, 30)) as pilot:
        graph = app.query_one(SearchGraph)
        graph.set_graph(nodes, best_id="n49")
        graph.show_pruned = True
        assert graph.line_count == 500
        graph.jump_to("n499")
        await pilot.pause()
        assert graph.highlighted_id == "n499" and graph.scroll_y > 0


def test_chart_rows_mark_tau_and_scale_bars():
    rows = chart_rows([ScorePoint(0.70, True), ScorePoint(0.96, True), ScorePoint(0.9, False)], width=20,
                      height=4, threshold=0.95)
    assert len(rows) == 4
    labels = [label for label, _ in rows]
    assert labels[0].strip().startswith("0.95") and labels[-1].strip().startswith("0.70")
    bottom = [kind for _, kind in rows[-1][1] if kind != "tau"]
    assert "bar-bad" in bottom and "bar-ok" in bottom
    top_cells = "".join(cell for cell, _ in rows[0][1])
    assert "┈" in top_cells  # the tau row
    assert chart_rows([], 20, 4) and all(not cells for _, cells in chart_rows([], 20, 4))


def test_status_lines_show_budget_progress_and_eta():
    status = RunStatus(run_id="r", mode="production", state="running", iteration=3, best_score=0.9412,
                       regressions=1, spent={"seconds": 125.0, "tokens": 12400, "dollars": 0.034},
                       limits={"seconds": 1800.0},
                       progress=StepProgress("train n0003", 45, 120, eta_s=32.0, loss=0.4123))
    first, second = status_lines(status)
    assert first == "production · running · iter 3 · best 0.941 (1 regression) · 2:05/30:00 12.4k tok $0.03"
    assert second.startswith("train n0003 ") and "45/120  37%" in second and second.endswith("ETA 0:32")
    assert "loss 0.412" in second
    assert progress_bar(0, 10, 10) == "─" * 10 and progress_bar(10, 10, 10) == "━" * 10
    preparing = StepProgress("train n0001", 0, 0, elapsed_s=12.4)
    assert status_lines(RunStatus(run_id="r", progress=preparing))[1] == \
        "train n0001 · preparing (loading, tokenizing or embedding) 0:12"
    done = StepProgress("train n0001", 211, 211, eta_s=0.0)
    assert status_lines(RunStatus(run_id="r", progress=done))[1].endswith("211/211 100% · evaluating")
    assert status_lines(RunStatus()) == ("No run on screen",
                                         "d runs the demo project · n starts a new run · r lists runs")


def test_resample_to_ratios_only_drops_rows():
    rows = ([{"id": f"g{i}", "slice": "gold"} for i in range(10)]
            + [{"id": f"h{i}", "slice": "hard_negative"} for i in range(3)]
            + [{"id": f"r{i}", "slice": "replay"} for i in range(4)])
    kept = resample_to_ratios(rows, {"gold": 50, "hard_negative": 30, "replay": 20})
    counts = {s: sum(r["slice"] == s for r in kept) for s in ("gold", "hard_negative", "replay")}
    assert counts == {"gold": 5, "hard_negative": 3, "replay": 2}
    assert [r["id"] for r in kept if r["slice"] == "gold"] == ["g0", "g1", "g2", "g3", "g4"]
    with pytest.raises(ValueError):
        resample_to_ratios(rows, {"gold": 0, "replay": 0})


def test_parse_ratios_names_the_bad_part():
    assert parse_ratios("gold=60, hard_negative=30% replay=10") == {"gold": 60, "hard_negative": 30, "replay": 10}
    with pytest.raises(ValueError, match="'silver=3'"):
        parse_ratios("gold=60 silver=3")
    with pytest.raises(ValueError, match="not a number"):
        parse_ratios("gold=lots")


async def test_clicking_a_node_selects_it():
    app = Recorder()
    seen = app.seen
    async with app.run_test(size=(100, 20)) as pilot:
        graph = app.query_one(SearchGraph)
        graph.set_graph(tree(), best_id="c")
        await pilot.pause()
        await pilot.click(SearchGraph, offset=(4, 5))  # the sixth line: c
        await pilot.pause()
        assert graph.highlighted_id == "c" and seen == ["c"]


def test_cluster_characteristics_read_as_one_line_each():
    assert value_text({"music->weather": 2, "weather->music": 6}) == "music->weather 2, weather->music 6"
    assert value_text(["50% question", "100% lowercase"]) == "50% question; 100% lowercase"
    assert value_text({"mean": 3.5123, "p90": 4.0}) == "mean 3.51, p90 4"


class TableApp(App):
    def compose(self) -> ComposeResult:
        yield CurriculumTable(id="t")


async def test_a_curriculum_table_fits_a_window_made_narrower():
    """Columns keep their widest cell's width unless rebuilt: after 100 -> 80 columns the output was cut."""
    rows = [CurriculumRow("gold", "please move four hundred dollars from checking to my savings account " * 2,
                          "transfer_between_accounts"), CurriculumRow("replay", "change the language", "change_language")]
    app = TableApp()
    async with app.run_test(size=(100, 12)) as pilot:
        table = app.query_one(CurriculumTable)
        table.set_rows(rows)
        await pilot.pause()
        await pilot.resize_terminal(80, 12)
        await pilot.pause()
        widths = [c.get_render_width(table) for c in table.columns.values()]
        assert sum(widths) <= 80 and table.virtual_size.width <= 80
        assert str(table.get_row_at(1)[3]) == "change_language"


class TicksApp(App):
    def compose(self) -> ComposeResult:
        yield TickList[str](("too much replay", "replay"), ("bad corrections", "gold"), id="l")


async def test_ticked_and_unticked_boxes_differ_without_colour():
    app = TicksApp()
    async with app.run_test(size=(40, 6)) as pilot:
        ticks = app.query_one(TickList)
        ticks.focus()
        await pilot.press("space")  # ticks the highlighted first reason
        await pilot.pause()
        lines = [ticks.render_line(y).text for y in range(2)]
        assert lines[0].startswith("▐✓▌ too much replay") and lines[1].startswith("▐ ▌ bad corrections")
        assert ticks.selected == ["replay"]


def test_a_revision_with_the_same_rows_says_what_else_changed():
    from pioneer_tui.screens.review import vetoed_text

    text = vetoed_text({"node_id": "run-1.n0001", "reason": "too little gold", "revision": True})
    assert text == ("Revision of n0001, vetoed (too little gold): the same rows; what changed is their weights, "
                    "outputs or slices (see why)")
    moved = vetoed_text({"node_id": "run-1.n0002", "reason": "too much replay", "revision": True,
                         "removed": {"replay": 70}})
    assert moved.endswith("replay −70")
