"""Issue 13, relabel: enter on a trace in the trace explorer opens it in full (nothing cut off); a person
sets a verdict and an output there, recorded with who and when; the next diagnosis of the model uses
them (the store's `traces` view gives a person's label precedence)."""

from __future__ import annotations

import pytest
from fixtures.fork_source import MODEL_NAME, deploy
from textual.widgets import DataTable, Input, Select
from tui_helpers import screen_text, settle

from engine.events import EventBus
from engine.production import ProductionConfig, diagnose
from pioneer_tui.app import create_app
from pioneer_tui.screens.trace_view import TraceScreen
from pioneer_tui.screens.traces import TraceExplorerScreen
from store import Store

pytestmark = pytest.mark.anyio
LONG = "please " * 30 + "what is the weather in berlin tomorrow"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_person_relabels_a_trace_and_the_next_diagnosis_uses_it(tmp_path):
    store = Store(tmp_path / "ws")
    deploy(store, tmp_path)
    store.conn.execute("UPDATE trace_records SET input = ? WHERE id = 't000'", (LONG,))
    before = store.traces.get("t000")
    assert before["verdict"] == "pass" and before["prediction"] == "weather"

    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        explorer = app.screen
        assert isinstance(explorer, TraceExplorerScreen)
        explorer.query_one("#sql", Input).value = "SELECT id, verdict, input FROM traces WHERE id = 't000'"
        await pilot.press("enter")
        await settle(pilot, lambda: explorer.outcome is not None)
        await pilot.press("tab", "enter")  # to the result, then open the row
        await settle(pilot, lambda: isinstance(app.screen, TraceScreen))
        shown = screen_text(app)
        assert "berlin tomorrow" in shown and "…" not in shown  # the whole input, wrapped
        await pilot.press("tab", *"travel", "ctrl+s")  # typed into the verdict list: nothing changed, nothing saved
        await pilot.pause()
        assert isinstance(app.screen, TraceScreen) and store.traces.get("t000")["human_by"] is None
        app.screen.query_one("#trace-verdict", Select).value = "fail"
        app.screen.query_one("#trace-output", Input).value = "travel"
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: app.screen is explorer and explorer.outcome.rows[0][1] == "fail")

    after = store.traces.get("t000")
    assert (after["human_verdict"], after["human_output"], after["verdict"], after["correction"]) == \
        ("fail", "travel", "fail", "travel")
    assert after["human_by"] == app.who and after["human_at"].startswith("20")
    assert after["auto_verdict"] == "pass" and after["judge_correction"] is None  # the judge's stay on record

    run_id = store.runs.create("production", {})
    diagnosis = diagnose(store, EventBus(store, run_id), ProductionConfig(model=MODEL_NAME, embedder="tfidf"))
    assert "t000" in diagnosis.fail_ids and "t000" not in diagnosis.pass_ids
    item = next(i for i in diagnosis.failure.items if i.id == "t000")
    assert item.expected == "travel"

    store.traces.set_human("t000", None, None, who=app.who)  # cleared: the judge's label counts again
    cleared = store.traces.get("t000")
    assert cleared["verdict"] == "pass" and cleared["human_by"] is None and cleared["human_at"] is None
    store.close()


async def test_enter_on_a_row_that_is_no_trace_shows_it_in_full(tmp_path):
    store = Store(tmp_path / "ws")
    app = create_app(store, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        explorer = app.screen
        explorer.query_one("#sql", Input).value = f"SELECT '{LONG}' AS text"
        await pilot.press("enter")
        await settle(pilot, lambda: explorer.outcome is not None)
        assert "…" in str(explorer.query_one(DataTable).get_row_at(0)[0])
        await pilot.press("tab", "enter")
        await pilot.pause()
        assert "berlin tomorrow" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is explorer
    store.close()
