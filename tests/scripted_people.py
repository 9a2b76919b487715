"""People scripted for loop tests: a reviewer who vetoes then edits, one who approves everything and
fails the test if asked again what is already recorded, and a stop request raised by an event."""

from __future__ import annotations

from engine.search.reviewer import Confirmation, CurriculumReview, Decision, ScriptedReviewer


class VetoThenEdit(ScriptedReviewer):
    """Vetoes the first curriculum, edits the second (drops one replay row, adds one gold row), approves
    the rest; confirmations come from the script."""

    def __init__(self, script: list[bool], gold_output: str = "travel") -> None:
        super().__init__(list(script), who="tester")
        self.gold_output = gold_output
        self.curricula: list[CurriculumReview] = []

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        self.curricula.append(review)
        if len(self.curricula) == 1:
            return Decision("veto", "too few hard negatives for travel")
        if len(self.curricula) == 2:
            rows = [r for r in review.rows if r["id"] != next(x["id"] for x in review.rows if x["slice"] == "replay")]
            rows.append({"id": "gold:added-by-tester", "input": "went to berlin tomorrow", "output": self.gold_output,
                         "slice": "gold", "source": "tester"})
            return Decision("edit", "dropped a replay row, added a travel example", rows=tuple(rows))
        return Decision("approve")


class Asker:
    """Approves everything; fails the test if asked a (kind, node) question whose answer was already recorded."""

    who = "tester"

    def __init__(self, never_ask: set[tuple[str, str]] = frozenset()) -> None:
        self.never_ask = set(never_ask)
        self.asked: list[tuple[str, str | None]] = []

    def review_curriculum(self, review: CurriculumReview) -> Decision:
        return self._ask("curriculum", review.node_id, Decision("approve"))

    def confirm_rollback(self, info: Confirmation) -> bool:
        return self._ask("rollback", info.node_id, True)

    def confirm_promotion(self, info: Confirmation) -> bool:
        return self._ask("promotion", info.node_id, True)

    def promote_anyway(self, info: Confirmation) -> str | None:
        return self._ask("override", info.node_id, None)

    def _ask(self, kind, node_id, answer):
        assert (kind, node_id) not in self.never_ask, f"{kind} for {node_id} was asked again after being recorded"
        self.asked.append((kind, node_id))
        return answer


class StopOn:
    """A should_stop flag raised by the first event matching `kind` that names a node."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.raised = False
        self.node: str | None = None

    def __call__(self, event) -> None:
        if not self.raised and event.type == self.kind and event.payload.get("node_id"):
            self.raised, self.node = True, event.payload["node_id"]

    def should_stop(self) -> bool:
        return self.raised
