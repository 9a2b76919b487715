"""Issue 13, item 7: one count of the failures everywhere. A real production diagnosis (the fork source of
tests/fixtures/fork_source.py) is shown in the workbench: the Clusters pane, the curation log's triage
and evaluation-set notes and the taxonomy itself split the failures the same way, and the pane shows
the cluster ids the quality report, the probes and the node metrics use."""

from __future__ import annotations

import pytest
from fixtures.fork_source import build_source
from textual.widgets import DataTable, Static

from pioneer_tui.app import create_app
from store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_the_panes_and_the_log_count_failures_the_same_way(tmp_path):
    store = Store(tmp_path / "ws")
    source = build_source(store, tmp_path)
    events = store.runs.events(source.run_id)
    clusters = next(e.payload for e in events if e.type == "taxonomy_built")["clusters"]
    total = sum(c["size"] for c in clusters)
    fixable = sum(c["size"] for c in clusters if c["fixability"] == "fixable")
    uncorrected = sum(c["size"] for c in clusters if c["kind"] == "uncorrected")
    poison = total - fixable - uncorrected
    assert fixable and poison
    notes = {e.payload["section"]: e.payload["markdown"] for e in events if e.type == "curation_note"}
    assert notes["Triage"].startswith(f"{total} failures: {fixable + uncorrected} in-domain ({fixable} with a "
                                      f"correction, {uncorrected} without one), {poison} poison (")
    assert f"- failure set: {total} traces: {fixable} fixable with a correction (the search's targets), " \
           f"{uncorrected} fixable without a correction, {poison} poison (reported separately)" in notes["Evaluation sets"]

    app = create_app(store, run_id=source.run_id, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        summary = str(app.screen.query_one("#cluster-summary", Static).render())
        assert summary.replace("\n", " ") == (
            f"Failure clusters · {total} failures in {len(clusters)} clusters: {fixable} fixable (what the search "
            f"targets), {total - fixable} external ({uncorrected} without a correction, {poison} poison)")
        table = app.screen.query_one("#cluster-table", DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == [c["id"] for c in clusters]
        assert [str(c.label) for c in table.columns.values()] == ["id", "cluster", "size", "fixability", "probe"]
        assert sum(table.columns[k].get_render_width(table) for k in table.columns) <= 80  # nothing hidden at 80x24
    store.close()
