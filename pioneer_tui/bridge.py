"""Engine events -> Textual messages, and the fold of a run's events into what the panes show.

One path for live runs and replays: a live run's EventBus calls `EventBridge.publish` on the engine
thread, a replay calls it with events read from `store.runs.events`; either way the screen receives
`RunEvent` messages and folds them with `RunState.apply`. Consecutive `train_progress` events are
merged at the source while the previous one is still queued, so a fast trainer cannot flood the UI
(the message queue holds at most one progress message at its tail, always the latest). Textual's
`Message.can_replace` would merge only when the older message is dequeued, so a flood would still
grow the queue while the UI is busy; merging at the source keeps the queue short.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from engine.curation_log import pipeline_change
from engine.events import (
    BudgetSpent,
    CurriculumProposed,
    DecisionRecorded,
    GateChecked,
    NodeAdded,
    NodeEvaluated,
    Promoted,
    Rollback,
    RunFinished,
    RunStarted,
    TaxonomyBuilt,
    TrainProgress,
    TrainStarted,
    decode,
    encode,
)
from engine.search.gates import standing
from engine.search.graph import best_of
from store import Event
from widgets.cluster_pane import ClusterExample, ClusterView
from widgets.formatting import duration
from widgets.score_chart import ScorePoint
from widgets.search_graph import GraphNode
from widgets.status_bar import RunStatus, StepProgress

RANKED_STATUSES = frozenset({"evaluated", "accepted", "deployed", "close_call", "refused"})
STOPPED = frozenset({"interrupted", "failed"})  # run states recorded only in the run's row


class RunEvent(Message):
    """One engine event for the screen showing its run."""

    def __init__(self, event: Event, epoch: int) -> None:
        self.event = event
        self.epoch = epoch
        super().__init__()


class EventBridge:
    """Thread-safe publisher of RunEvent messages to one target (a screen)."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._last_posted: RunEvent | None = None
        self._pending_progress: RunEvent | None = None
        self._epoch = 0
        self.posted = 0
        self.merged = 0

    def reset(self) -> None:
        """Void every message still queued (a replay jumping backwards starts a new epoch)."""
        with self._lock:
            self._epoch += 1
            self._last_posted = self._pending_progress = None

    def publish(self, event: Event) -> None:
        """Callable from any thread (an EventBus subscriber or a replay driver); never blocks."""
        with self._lock:
            pending = self._pending_progress
            if (event.type == "train_progress" and pending is not None and pending is self._last_posted
                    and pending.event.run_id == event.run_id):
                pending.event = event  # still queued and nothing after it: update in place
                self.merged += 1
                return
            message = RunEvent(event, self._epoch)
            self._last_posted = message
            self._pending_progress = message if event.type == "train_progress" else None
            self.posted += 1
        self.target.post_message(message)

    def received(self, message: RunEvent) -> Event | None:
        """Called by the target when it handles a message: later progress gets a new message.
        None for a message voided by `reset`."""
        with self._lock:
            if message is self._pending_progress:
                self._pending_progress = None
            return message.event if message.epoch == self._epoch else None


@dataclass
class RunState:
    """Everything the panes show, folded from a run's events in seq order (replay == live)."""

    run_id: str = ""
    mode: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    state: str = "waiting"
    stop_reason: str = ""
    iteration: int = 0
    nodes: dict[str, GraphNode] = field(default_factory=dict)
    best_id: str | None = None
    declared_best: str | None = None
    deployed_id: str | None = None
    clusters: list[ClusterView] = field(default_factory=list)
    curriculum: dict[str, Any] | None = None
    decisions: list[DecisionRecorded] = field(default_factory=list)
    progress: StepProgress | None = None
    spent: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    last_seq: int = 0
    activity: str = ""  # what the run is doing between train steps, e.g. "diagnosing the traces"
    activity_at: datetime | None = None  # since when
    outcome: str = ""
    promoted_model: str | None = None
    last_at: datetime | None = None  # the newest event's time: "now" for a replay or a finished run
    budget_at: datetime | None = None  # when `spent` was measured
    clock_paused: bool = False  # the wall-clock budget stops while a person decides
    train_at: datetime | None = None  # when the running train step started
    rate_from: tuple[int, datetime] | None = None  # (step, time) of its first progress report

    def apply(self, event: Event) -> set[str]:
        """Fold one event (decoded once, to the engine's typed event); returns the names of the panes it
        changed. Old or foreign events are ignored."""
        if event.seq <= self.last_seq or (self.run_id and event.run_id != self.run_id):
            return set()
        self.run_id = event.run_id
        self.last_seq = event.seq
        if self.state in STOPPED and event.type != "run_finished":
            self.state = "running"  # new events of a stopped run: it was resumed
        self.last_at = event_time(event) or self.last_at
        self.events.append(event)
        handler = getattr(self, f"_on_{event.type}", None)
        changed = {"log"} if event.type != "train_progress" else set()
        activity = self.activity
        if handler is not None:
            changed |= handler(decode(event))
        if self.activity != activity:
            self.activity_at = self.last_at
        return changed

    # -- view models ---------------------------------------------------------------------------
    def graph_nodes(self) -> list[GraphNode]:
        return list(self.nodes.values())

    def score_points(self) -> list[ScorePoint]:
        """One bar per evaluated node, labelled with the node's number (n0003 -> 3)."""
        return [ScorePoint(n.score, n.status in RANKED_STATUSES, n.name.lstrip("n").lstrip("0") or "0"
                           if n.name[1:].isdigit() else n.name)
                for n in self.nodes.values() if n.score is not None]

    @property
    def threshold(self) -> float | None:
        """tau from the run's config, wherever the mode nested it (e.g. config.loop.gates.tau); None
        under the traffic rule, whose gate is not a score threshold."""
        level: list[dict[str, Any]] = [self.config]
        while level:
            for d in level:
                if "traffic" in (d.get("rule"), d.get("gate")):
                    return None
                if isinstance(d.get("tau"), int | float):
                    return float(d["tau"])
            level = [v for d in level for v in d.values() if isinstance(v, dict)]
        return None

    def status(self, state: str | None = None, note: str = "", now: datetime | None = None) -> RunStatus:
        """The status bar's view at `now` (a live run's wall clock; default: the newest event's time,
        which is what a replay or a finished run shows). While the run is running its clock and the
        train step's elapsed time keep counting from the last measurement instead of waiting for the
        next budget event."""
        best = self.nodes.get(self.best_id or "")
        now = now if now is not None and self.state == "running" else self.last_at
        spent = dict(self.spent)
        if self.state == "running" and now and self.budget_at and "seconds" in spent and not self.clock_paused:
            spent["seconds"] += max((now - self.budget_at).total_seconds(), 0.0)
        progress = self.progress
        if progress is not None and now:  # the phase's time: preparing since the start, evaluating since the end
            since = self.train_at if progress.total <= 0 else self.activity_at if progress.step >= progress.total \
                else None
            if since is not None:
                progress = replace(progress, elapsed_s=max((now - since).total_seconds(), 0.0))
        doing = self.activity
        if doing and now and self.activity_at:
            doing += f" · {duration(max((now - self.activity_at).total_seconds(), 0.0))}"
        return RunStatus(run_id=self.run_id, mode=self.mode, state=state or self.state, iteration=self.iteration,
                         best_score=best.score if best else None, regressions=best.regressions if best else None,
                         spent=spent, limits=dict(self.limits), progress=progress,
                         note=note or (doing if self.state == "running" else self.stop_reason))

    def set_stored_status(self, run: dict[str, Any] | None) -> bool:
        """Adopt the run row's status when it ended without a run_finished event (a run that failed or
        was interrupted records that only in its row). True when the state changed."""
        if run is None or run["id"] != self.run_id or run["status"] in ("running", self.state):
            return False
        if self.state not in ("waiting", "running"):
            return False
        self.state = str(run["status"])
        self.stop_reason = str(run.get("stop_reason") or "")
        self.progress = None
        for node in self.nodes.values():
            if node.status == "training":
                node.status = "stopped"  # its training was cut off (a resume trains it again)
        return True

    # -- handlers ------------------------------------------------------------------------------
    def _on_run_started(self, e: RunStarted) -> set[str]:
        self.mode = e.mode
        self.config = dict(e.config)
        self.state = "running"
        self.activity = ("diagnosing the traces: triage, failure taxonomy, probes" if self.mode == "production"
                         else "preparing the data and the held-out evaluation set")
        return {"status", "chart"}

    def _on_taxonomy_built(self, e: TaxonomyBuilt) -> set[str]:
        self.clusters = [
            ClusterView(id=c.id, name=c.name, kind=c.kind, size=c.size, fixability=c.fixability,
                        confirmation_rate=c.confirmation_rate, characteristics=dict(c.characteristics),
                        examples=tuple(ClusterExample(x.trace_id, x.input, str(x.prediction), str(x.correction),
                                                      x.reasoning or "") for x in c.examples))
            for c in e.clusters
        ]
        self.activity = "scoring the deployed model on its failures"
        return {"clusters", "status"}

    def _on_node_added(self, e: NodeAdded) -> set[str]:
        parent = self.nodes.get(str(e.parent_id))
        self.nodes[e.node_id] = GraphNode(
            id=e.node_id, parent_id=e.parent_id, name=e.node_id.removeprefix(f"{self.run_id}."),
            iteration=e.iteration, operator=e.operator,
            modification=pipeline_change(parent.pipeline if parent else None, dict(e.pipeline), limit=2, short=True),
            rationale=e.rationale or "", pipeline=dict(e.pipeline))
        self.iteration = max(self.iteration, e.iteration)
        self.activity = "building the next curriculum" if e.parent_id else f"evaluating {self.nodes[e.node_id].name}"
        return {"graph", "status"}

    def _node(self, node_id: str | None) -> GraphNode | None:
        return self.nodes.get(str(node_id))

    def _name(self, node_id: str | None) -> str:
        node = self._node(node_id)
        return node.name if node else str(node_id).removeprefix(f"{self.run_id}.")

    def _on_curriculum_proposed(self, e: CurriculumProposed) -> set[str]:
        self.curriculum = encode(e)[1]  # the curriculum pane reads it as plain data
        self.activity = f"waiting for a person to review {self._name(e.node_id)}'s curriculum"
        return {"curriculum", "status"}

    def _on_decision_recorded(self, e: DecisionRecorded) -> set[str]:
        self.decisions.append(e)
        node = self._node(e.node_id)
        if node is not None and e.kind == "curriculum":
            node.status = "vetoed" if e.action == "veto" else "approved"
        if node is not None and e.kind == "promotion" and e.action == "refuse" and not e.override:
            node.status = "refused"  # a person kept the deployed model; the search goes on
        if e.kind == "curriculum" and e.action == "edit" and self.curriculum is not None:
            self.curriculum = {**self.curriculum, "dataset_version_id": e.dataset_version_id, "edited_by": e.who,
                               "diff": dict(e.diff)}
        if e.kind == "curriculum":
            self.activity = f"planning after the veto of {self._name(e.node_id)}" if e.action == "veto" else \
                f"training {self._name(e.node_id)}"
        return {"graph", "curriculum", "status"}

    def _on_train_started(self, e: TrainStarted) -> set[str]:
        """The step's length is unknown until the trainer's first report: the loop's estimate counts
        other steps than some trainers do (a linear probe embeds first, then fits), so none is shown."""
        node = self._node(e.node_id)
        if node is not None:
            node.status = "training"
        self.progress = StepProgress(f"train {self._name(e.node_id)}", 0, 0)
        self.train_at = self.last_at
        self.rate_from = None
        return {"graph", "status"}

    def _on_train_progress(self, e: TrainProgress) -> set[str]:
        """ETA from the measured rate between this report and the step's first one (the first report
        follows setup such as tokenizing or embedding, so its own estimate says little)."""
        step, total = e.step, e.total_steps
        eta = None
        if self.rate_from is None or step < self.rate_from[0]:
            self.rate_from = (step, self.last_at) if self.last_at else None
        elif step > self.rate_from[0] and self.last_at:
            per_step = (self.last_at - self.rate_from[1]).total_seconds() / (step - self.rate_from[0])
            eta = max(total - step, 0) * per_step
        self.progress = StepProgress(f"train {self._name(e.node_id)}", step, total, eta_s=eta, loss=e.loss)
        if step >= total > 0:
            self.activity = f"evaluating {self._name(e.node_id)}"
        return {"status"}

    def _on_node_evaluated(self, e: NodeEvaluated) -> set[str]:
        node = self._node(e.node_id)
        if node is None:
            return set()
        node.score = e.score
        node.regressions = e.regressions
        node.metrics = dict(e.metrics)
        node.status = e.status
        self.progress = None
        self.activity = f"checking {node.name} against the gates, then planning the next step"
        self._rank()
        return {"graph", "status", "chart"}

    def _on_gate_checked(self, e: GateChecked) -> set[str]:
        node = self._node(e.node_id)
        if node is None:
            return set()
        node.gates.append({"gate": e.gate, "passed": e.passed, "value": e.value, "threshold": e.threshold,
                           "words": e.words})
        failed = [g["gate"] for g in node.gates if not g["passed"]]
        if node.status in ("evaluated", "accepted", "rejected"):
            node.status = standing(failed)
            self._rank()
        self.activity = (f"{node.name} failed the {', '.join(failed)} gate; planning the next step" if failed else
                         f"{node.name} passed every gate so far: a promotion needs a person's approval")
        return {"graph", "status", "chart"}

    def _on_rollback(self, e: Rollback) -> set[str]:
        node = self._node(e.node_id)
        if node is not None:
            node.status = "rolled_back"
        self._rank()
        return {"graph", "status", "chart"}

    def _on_promoted(self, e: Promoted) -> set[str]:
        previous = self.nodes.get(self.deployed_id or "")
        if previous is not None and previous.status == "deployed":
            previous.status = "accepted"
        node = self._node(e.node_id)
        if node is not None:
            node.status = "deployed"
            self.deployed_id = node.id
        self._rank()
        return {"graph", "status", "chart"}

    def _on_budget(self, e: BudgetSpent) -> set[str]:
        self.spent = {k: float(v) for k, v in e.spent.items() if isinstance(v, int | float)}
        self.limits = {k: float(v) for k, v in e.limits.items() if isinstance(v, int | float)}
        self.budget_at = self.last_at
        self.clock_paused = e.paused
        return {"status"}

    def _on_run_finished(self, e: RunFinished) -> set[str]:
        self.state = e.status
        self.stop_reason = e.reason
        self.outcome = e.outcome
        self.promoted_model = e.promoted_model or None
        self.progress = None
        if e.best_node in self.nodes:
            self.declared_best = e.best_node
        self._rank()
        return {"graph", "status"}

    def _rank(self) -> None:
        """Best = the run's declared best, else the highest score among nodes still in the running."""
        if self.declared_best is not None:
            self.best_id = self.declared_best
            return
        ranked = [n for n in self.nodes.values() if n.score is not None and n.status in RANKED_STATUSES]
        best = best_of(ranked)
        self.best_id = best.id if best else None


def event_time(event: Event) -> datetime | None:
    """An event's timestamp (ISO-8601, as the store writes it); None when it does not parse."""
    try:
        return datetime.fromisoformat(event.ts)
    except (TypeError, ValueError):
        return None
