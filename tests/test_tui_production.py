"""End to end: the real production loop (engine.production.improve) on a tiny-BERT deployment runs on
the app's engine worker; a person answers every human gate with keys in the TUI. The run's events
reach the main screen live, and what the screen shows equals a fold of the stored event log."""

from __future__ import annotations

import time

import pytest
from production_fixture import MODEL_NAME, build_template, copy_workspace

from engine.curation_log import curation_log_path, render_curation_log
from engine.production import ProductionConfig, improve
from pioneer_tui.app import EngineSession, create_app
from pioneer_tui.bridge import RunState
from pioneer_tui.screens.confirm import GateConfirmScreen
from pioneer_tui.screens.review import CurriculumReviewScreen
from store import Store

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_production_run_driven_from_the_tui(tmp_path):
    template = build_template(tmp_path / "deployment")
    workspace = copy_workspace(template, tmp_path / "ws")
    summaries = []

    def run_production(session: EngineSession) -> None:
        store = Store(session.workspace)
        try:
            config = ProductionConfig(model=MODEL_NAME, max_iterations=2, trainer_threads=1)
            summaries.append(improve(store, config, reviewer=session.reviewer, subscribers=(session.on_event,),
                                     should_stop=session.should_stop))
        finally:
            store.close()

    store = Store(workspace)
    app = create_app(store, start_demo=run_production, offer_demo=False)
    answered: list[str] = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_demo()
        deadline = time.monotonic() + 1200
        while not summaries:
            assert time.monotonic() < deadline, "the production run did not finish"
            if isinstance(app.screen, CurriculumReviewScreen):
                answered.append("curriculum")
                await pilot.press("a")
            elif isinstance(app.screen, GateConfirmScreen):
                answered.append(app.screen.review.kind)
                await pilot.press("y")
            await pilot.pause(0.1)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        summary = summaries[0]
        main = app.main_screen
        events = store.runs.events(summary.run_id)
        while main.state.last_seq < len(events):
            await pilot.pause(0.05)

        assert answered and answered[0] == "curriculum"
        assert [m.kind for m in app.review_log] == answered
        decisions = store.runs.decisions(summary.run_id)
        assert [d["kind"] for d in decisions] == answered
        assert all(d["who"].startswith("tui:") for d in decisions)

        replayed = RunState()
        for event in events:
            replayed.apply(event)
        assert main.state.run_id == summary.run_id
        assert main.state.graph_nodes() == replayed.graph_nodes()
        assert main.state.clusters == replayed.clusters and main.state.clusters
        assert render_curation_log(main.state.events) == curation_log_path(store, summary.run_id).read_text()
        assert main.state.state == summary.status
