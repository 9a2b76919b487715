"""The TUI's Reviewer: the engine's worker thread blocks while a person decides in a modal screen.

`review_curriculum` / `confirm_rollback` / `confirm_promotion` / `promote_anyway` / `choose_data` are
called on the engine thread; they push the screen on the UI thread (`App.call_from_thread`), wait on a
threading.Event set by the screen's dismiss callback, post a `ReviewDecided` message to the app, and
return the typed result. If the app exits first, the answer is the safe one: veto / refuse / keep the
deployed model / no dataset (never a silent approval).
"""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.message import Message
from textual.screen import Screen

from engine.catalog import CatalogSearch, Match
from engine.search.reviewer import Confirmation, CurriculumReview, Decision
from pioneer_tui.screens.confirm import GateConfirmScreen, GateReview, PromoteAnywayScreen
from pioneer_tui.screens.data_choice import DataChoiceScreen
from pioneer_tui.screens.review import CurriculumReviewScreen
from store import Store

POLL_S = 0.2
GATE_REVIEW_KEYS = ("from_model", "to_model", "before", "after", "regressions", "gates", "rollback_to", "close_call")


@dataclass
class ReviewDecided(Message):
    """A person answered a human gate (posted to the app; the engine records it as a decision).
    `override` is the close call: True promotes it anyway for `reason`, False keeps the deployed model."""

    kind: str  # curriculum | rollback | promotion | override
    node_id: str | None
    result: Decision | bool
    reason: str | None = None


def gate_review(kind: str, info: Confirmation) -> GateReview:
    """Confirmation -> the modal's view. Recognised `details` keys: from_model, to_model, rollback_to,
    before and after (metric dicts), regressions (list of dicts), gates (a GateReport.to_dict(), or a
    list of its results), close_call; anything else is listed as a detail."""
    d = dict(info.details)
    gates = d.get("gates") or []
    if isinstance(gates, dict):
        gates = gates.get("results") or []
    return GateReview(kind=kind, node_id=info.node_id, from_model=d.get("from_model"), to_model=d.get("to_model"),
                      reason=info.summary, before=dict(d.get("before") or {}), after=dict(d.get("after") or {}),
                      regressions=list(d.get("regressions") or []), gates=list(gates),
                      rollback_to=d.get("rollback_to"), close_call=bool(d.get("close_call")),
                      details={k: v for k, v in d.items() if k not in GATE_REVIEW_KEYS})


class TuiReviewer:
    """Implements engine.search.reviewer.Reviewer for a running PioneerApp."""

    def __init__(self, app: App, store: Store | None = None, who: str | None = None) -> None:
        self.app = app
        self.store = store  # the UI thread's store, read only on the UI thread (QC reports)
        self.who = who or f"tui:{getpass.getuser()}"

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        def screen() -> Screen:
            return CurriculumReviewScreen(review, qc=self._qc(review.dataset_version_id))

        answer = self._ask(screen)
        decision = answer if isinstance(answer, Decision) else Decision("veto", "the TUI closed before a decision")
        self._post(ReviewDecided("curriculum", review.node_id, decision))
        return decision

    def confirm_rollback(self, info: Confirmation) -> bool:
        return self._confirm("rollback", info)

    def confirm_promotion(self, info: Confirmation) -> bool:
        return self._confirm("promotion", info)

    def promote_anyway(self, info: Confirmation) -> str | None:
        answer = self._ask(lambda: PromoteAnywayScreen(gate_review("promotion", info)))
        reason = answer.strip() if isinstance(answer, str) and answer.strip() else None
        self._post(ReviewDecided("override", info.node_id, reason is not None, reason))
        return reason

    def choose_data(self, search: CatalogSearch) -> tuple[Match, ...]:
        answer = self._ask(lambda: DataChoiceScreen(search))
        return tuple(search.matches[i] for i in answer) if isinstance(answer, tuple) else ()

    def _confirm(self, kind: str, info: Confirmation) -> bool:
        answer = self._ask(lambda: GateConfirmScreen(gate_review(kind, info)))
        ok = answer is True
        self._post(ReviewDecided(kind, info.node_id, ok))
        return ok

    def _qc(self, version_id: str | None) -> dict[str, Any]:
        if self.store is None or not version_id:
            return {}
        version = self.store.datasets.get(version_id)
        return dict(version["qc_report"]) if version else {}

    def _ask(self, make_screen: Callable[[], Screen]) -> Any:
        """Show the screen on the UI thread and block this (engine) thread until it is dismissed."""
        done = threading.Event()
        box: list[Any] = []

        def answered(result: Any) -> None:
            box.append(result)
            done.set()

        def show() -> None:
            self.app.push_screen(make_screen(), answered)

        try:
            self.app.call_from_thread(show)
        except RuntimeError:  # the app is not running (closing, or never started)
            return None
        while not done.wait(POLL_S):
            if not self.app.is_running:
                return None
        return box[0]

    def _post(self, message: ReviewDecided) -> None:
        if self.app.is_running:
            self.app.post_message(message)
