"""The one event stream. Every step of a run is appended to the store's `events` table *before*
it is published to subscribers, so live views, replays and data-curation.md all read the same log.

Event types and their payload fields (plain JSON):

- run_started        {mode, config}
- taxonomy_built     {clusters: [{id, name, kind, size, fixability, confirmation_rate, characteristics,
                                  examples: [{trace_id, input, prediction, correction, reasoning}]}]}
- node_added         {node_id, parent_id, operator, iteration, pipeline, rationale}
- curriculum_proposed{node_id, dataset_version_id, composition: {gold, hard_negative, replay}, qc}
- decision_recorded  {decision_id, kind, action, who, reason, node_id, dataset_version_id, diff}
- train_started      {node_id, total_steps}
- train_progress     {node_id, step, total_steps, loss, examples_per_s, eta_s}
- node_evaluated     {node_id, score, regressions, metrics, status}
- gate_checked       {node_id, gate, passed, value, threshold}
- rollback           {node_id, from_model, to_model, reason}
- promoted           {node_id, model_id, score}
- curation_note      {section, markdown}
- budget             {spent: {iterations, seconds, tokens, dollars}, limits}
- run_finished       {status, reason, best_node, best_score}
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from store import Event, Store

Subscriber = Callable[[Event], None]

EVENT_TYPES = (
    "run_started", "taxonomy_built", "node_added", "curriculum_proposed", "decision_recorded",
    "train_started", "train_progress", "node_evaluated", "gate_checked", "rollback", "promoted",
    "curation_note", "budget", "run_finished",
)


class EventBus:
    """Append-then-publish: subscribers see an event only after the transaction holding it commits
    (and never, if it rolls back). They run on the committing thread and must not block."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def emit(self, type_: str, **payload: object) -> Event:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}; add it to engine.events.EVENT_TYPES")
        event = self.store.runs.append_event(self.run_id, type_, dict(payload))
        self.store.after_commit(lambda: self._publish(event))
        return event

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            fn(event)

    def history(self) -> list[Event]:
        return self.store.runs.events(self.run_id)
