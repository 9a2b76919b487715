"""Issue 13, item 5: the status bar, clock, progress and ETA are true at every moment of a run, a run that
fails says so, and the runs list shows what `pioneer-tui runs` prints. The real loop runs on the app's
engine worker with a paced NodeRunner (tests/fixtures/paced_run.py), so the test reads the screen
between any two steps."""

from __future__ import annotations

import pytest
from fixtures.paced_run import deploy, paced_hook, start_paced_run
from textual.widgets import DataTable
from tui_helpers import settle

from pioneer_tui.app import create_app
from pioneer_tui.cli import main
from pioneer_tui.run_list import run_rows
from pioneer_tui.screens.confirm import GateConfirmScreen
from pioneer_tui.screens.review import CurriculumReviewScreen
from pioneer_tui.screens.runs import RunsScreen
from store import Store
from widgets.formatting import duration
from widgets.status_bar import StatusBar, status_lines

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def lines(app) -> tuple[str, str]:
    return status_lines(app.main_screen.query_one(StatusBar).status)


async def test_status_clock_progress_and_eta_follow_the_run(tmp_path):
    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    app = create_app(store, start_demo=paced_hook(box, [(10, 211), (110, 211), (211, 211)]), offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_paced_run(app, pilot, box)
        runner, status = box[0], app.main_screen.query_one(StatusBar)
        await settle(pilot, lambda: "curriculum" in lines(app)[1])
        assert lines(app)[0].startswith("production · running · iter 1 · best 0.000")
        assert lines(app)[1].startswith("building the next curriculum · 0:0")
        clock = status.status.spent["seconds"]
        await settle(pilot, lambda: status.status.spent["seconds"] >= clock + 1.0, timeout=3)  # no event: it runs
        assert "/20:00" in lines(app)[0]

        runner.curriculum.release()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        node = app.main_screen.state.nodes[app.screen.review.node_id].name
        assert lines(app)[1].startswith(f"waiting for a person to review {node}'s curriculum · 0:0")
        await pilot.press("a")
        await settle(pilot, lambda: runner.steps[0].reached.is_set() and status.status.progress is not None)
        # the loop's step estimate is not the trainer's: nothing is claimed before its first report, but
        # the time spent preparing keeps counting
        await settle(pilot, lambda: status.status.progress.elapsed_s >= 1.0, timeout=3)
        assert lines(app)[1].startswith(f"train {node} · preparing (loading, tokenizing or embedding) 0:0")

        runner.steps[0].release()
        await settle(pilot, lambda: status.status.progress.step == 10)
        assert " 10/211   4%" in lines(app)[1] and "ETA" not in lines(app)[1]  # one report: no rate yet
        await pilot.pause(1.0)
        runner.steps[1].release()
        await settle(pilot, lambda: status.status.progress.step == 110)
        eta = status.status.progress.eta_s
        assert eta is not None and 0.9 <= eta <= 1.01 * (101 / 100) * 3  # ~1 s per 100 steps, 101 steps left
        assert lines(app)[1].endswith(f"ETA 0:0{round(eta)}")
        runner.steps[2].release()
        await settle(pilot, lambda: status.status.progress.step == 211)
        assert lines(app)[1].endswith("211/211 100% loss 0.500 · evaluating 0:00")
        await settle(pilot, lambda: lines(app)[1].endswith("· evaluating 0:01"), timeout=3)  # evaluation has its clock

        runner.evaluation.release()
        await settle(pilot, lambda: isinstance(app.screen, GateConfirmScreen))
        await pilot.press("y")
        await settle(pilot, lambda: app.main_screen.state.state == "finished")
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        first, second = lines(app)
        assert first.startswith("production · finished · iter 1 · best 1.000 (1 regression) · ")
        spent = store.runs.list()[-1]["spent"]["spent"]["seconds"]
        assert f" · {duration(spent)}/20:00" in first  # the stored clock, not a guess
        assert second.startswith("gates passed at ")
        assert status.status.spent["seconds"] == pytest.approx(spent, abs=0.5)

        await pilot.press("r")
        await settle(pilot, lambda: isinstance(app.screen, RunsScreen))
        shown = [str(c) for c in app.screen.query_one(DataTable).get_row_at(0)]
        assert shown == list(run_rows(store)[0].cells()) and shown[4] == "1/1"
    store.close()


async def test_a_run_that_fails_says_failed_and_why(tmp_path, capsys):
    store = Store(tmp_path / "ws")
    deploy(store)
    box: list = []
    hook = paced_hook(box, [(5, 10)], fail_training=RuntimeError("the trainer ran out of memory"))
    app = create_app(store, start_demo=hook, offer_demo=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_paced_run(app, pilot, box)
        box[0].curriculum.release()
        await settle(pilot, lambda: isinstance(app.screen, CurriculumReviewScreen))
        await pilot.press("a")
        await settle(pilot, lambda: box[0].steps[0].reached.is_set())
        box[0].steps[0].release()
        await settle(pilot, lambda: app.main_screen.state.state == "failed")
        await pilot.pause(0.1)
        first, second = lines(app)
        assert first.startswith("production · failed · iter 1")
        assert second == "RuntimeError: the trainer ran out of memory"
        assert app.main_screen.query_one(StatusBar).status.progress is None

    assert main(["--workspace", str(tmp_path / "ws"), "runs"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split() == " ".join(run_rows(store)[0].cells()).split()
    assert "failed" in printed[1] and printed[2].strip() == "RuntimeError: the trainer ran out of memory"
    store.close()
