"""What a person can do once a run has ended, offered on the main screen (`N`).

A run that was stopped (quit during the run) or failed can be resumed. After a promotion the improved
model serves traffic nobody has judged yet, so the loop cannot run again until it has traces: on the
demo the next week of traffic ships with the project (engine.demo), elsewhere the new-run form asks
for a file of the deployed model's judged traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.demo import NextWeek, next_week
from store import Store
from widgets.formatting import number


@dataclass(frozen=True)
class NextStep:
    """One line for the main screen and what `N` does: resume `resume` (a run id), serve the demo's
    `week`, or open the new-run form for `model_id`."""

    text: str
    model_id: str | None = None
    week: NextWeek | None = None
    resume: str | None = None


def next_step(store: Store, demo_dir: Path, run: dict | None = None) -> NextStep | None:
    """The step that makes sense after `run` (the run row on screen) ended: resuming it when it stopped
    or failed, else the next run of the deployed model; None when nothing is deployed."""
    if run is not None and run["status"] in ("interrupted", "failed"):
        return NextStep(f"N: resume {run['id']} where it {'stopped' if run['status'] == 'interrupted' else 'failed'}"
                        " (decisions already made are kept; the step in progress starts again)", resume=run["id"])
    deployed = store.models.deployed()
    if deployed is None:
        return None
    model = deployed["id"]
    week = next_week(store, demo_dir)
    if week is not None:
        return NextStep(f"N: run the loop again on next week's traffic — {model} answers {number(week.size)} new "
                        "demo requests, judged against their labels", model, week)
    n = store.conn.execute("SELECT COUNT(*) FROM traces WHERE model_id IN (?, ?)",
                           (model, deployed.get("name") or model)).fetchone()[0]
    if not n:
        return NextStep(f"N: start {model}'s next run — it has no traces yet: give a file of its judged traffic", model)
    return NextStep(f"N: run the loop again on {model}'s {number(n)} traces (a fresh diagnosis)", model)
