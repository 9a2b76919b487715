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
from store import Event
from widgets.cluster_pane import ClusterExample, ClusterView
from widgets.formatting import duration
from widgets.score_chart import ScorePoint
from widgets.search_graph import GraphNode
from widgets.status_bar import RunStatus, StepProgress

# Gates whose failure only means "below the threshold, keep searching"; failing only the regression
# budget makes a close call (a person may promote it anyway); any other failing gate rejects it.
SCORE_GATES = frozenset({"stop", "failure_set", "score"})
BUDGET_GATES = frozenset({"regression_budget", "regression_rate", "cross_budget"})
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
    decisions: list[dict[str, Any]] = field(default_factory=list)
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
        """Fold one event; returns the names of the panes it changed. Old or foreign events are ignored."""
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
            changed |= handler(event.payload)
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
    def _on_run_started(self, p: dict[str, Any]) -> set[str]:
        self.mode = str(p.get("mode") or "")
        self.config = dict(p.get("config") or {})
        self.state = "running"
        self.activity = ("diagnosing the traces: triage, failure taxonomy, probes" if self.mode == "production"
                         else "preparing the data and the held-out evaluation set")
        return {"status", "chart"}

    def _on_taxonomy_built(self, p: dict[str, Any]) -> set[str]:
        self.clusters = [
            ClusterView(id=str(c.get("id", i)), name=str(c.get("name", "?")), kind=str(c.get("kind", "?")),
                        size=int(c.get("size") or 0), fixability=str(c.get("fixability", "?")),
                        confirmation_rate=c.get("confirmation_rate"),
                        characteristics=dict(c.get("characteristics") or {}),
                        examples=tuple(ClusterExample(str(e.get("trace_id", "")), str(e.get("input", "")),
                                                      str(e.get("prediction", "")), str(e.get("correction", "")),
                                                      str(e.get("reasoning") or ""))
                                       for e in c.get("examples") or ()))
            for i, c in enumerate(p.get("clusters") or [])
        ]
        self.activity = "scoring the deployed model on its failures"
        return {"clusters", "status"}

    def _on_node_added(self, p: dict[str, Any]) -> set[str]:
        node_id = str(p["node_id"])
        parent = self.nodes.get(str(p.get("parent_id")))
        modification = p.get("modification")
        if not isinstance(modification, str):
            modification = pipeline_change(parent.pipeline if parent else None, p.get("pipeline"), limit=2,
                                           short=True)
        prefix = f"{self.run_id}."
        self.nodes[node_id] = GraphNode(
            id=node_id, parent_id=p.get("parent_id"), name=node_id.removeprefix(prefix),
            iteration=int(p.get("iteration") or 0), operator=str(p.get("operator") or ""),
            modification=modification, rationale=str(p.get("rationale") or ""),
            pipeline=dict(p.get("pipeline") or {}))
        self.iteration = max(self.iteration, self.nodes[node_id].iteration)
        self.activity = "building the next curriculum" if p.get("parent_id") else f"evaluating {self.nodes[node_id].name}"
        return {"graph", "status"}

    def _node(self, p: dict[str, Any]) -> GraphNode | None:
        return self.nodes.get(str(p.get("node_id")))

    def _name(self, p: dict[str, Any]) -> str:
        node = self._node(p)
        return node.name if node else str(p.get("node_id")).removeprefix(f"{self.run_id}.")

    def _on_curriculum_proposed(self, p: dict[str, Any]) -> set[str]:
        self.curriculum = dict(p)
        self.activity = f"waiting for a person to review {self._name(p)}'s curriculum"
        return {"curriculum", "status"}

    def _on_decision_recorded(self, p: dict[str, Any]) -> set[str]:
        self.decisions.append(dict(p))
        node = self._node(p)
        if node is not None and p.get("kind") == "curriculum":
            node.status = "vetoed" if p.get("action") == "veto" else "approved"
        if node is not None and p.get("kind") == "promotion" and p.get("action") == "refuse" \
                and not (p.get("diff") or {}).get("override"):
            node.status = "refused"  # a person kept the deployed model; the search goes on
        if p.get("kind") == "curriculum" and p.get("action") == "edit" and self.curriculum is not None:
            self.curriculum = {**self.curriculum, "dataset_version_id": p.get("dataset_version_id"),
                               "edited_by": p.get("who"), "diff": p.get("diff") or {}}
        if p.get("kind") == "curriculum":
            self.activity = f"planning after the veto of {self._name(p)}" if p.get("action") == "veto" else \
                f"training {self._name(p)}"
        return {"graph", "curriculum", "status"}

    def _on_train_started(self, p: dict[str, Any]) -> set[str]:
        """The step's length is unknown until the trainer's first report: the loop's estimate counts
        other steps than some trainers do (a linear probe embeds first, then fits), so none is shown."""
        node = self._node(p)
        if node is not None:
            node.status = "training"
        self.progress = StepProgress(f"train {self._name(p)}", 0, 0)
        self.train_at = self.last_at
        self.rate_from = None
        return {"graph", "status"}

    def _on_train_progress(self, p: dict[str, Any]) -> set[str]:
        """ETA from the measured rate between this report and the step's first one (the first report
        follows setup such as tokenizing or embedding, so its own estimate says little)."""
        step, total = int(p.get("step") or 0), int(p.get("total_steps") or 0)
        eta = None
        if self.rate_from is None or step < self.rate_from[0]:
            self.rate_from = (step, self.last_at) if self.last_at else None
        elif step > self.rate_from[0] and self.last_at:
            per_step = (self.last_at - self.rate_from[1]).total_seconds() / (step - self.rate_from[0])
            eta = max(total - step, 0) * per_step
        self.progress = StepProgress(f"train {self._name(p)}", step, total, eta_s=eta, loss=p.get("loss"))
        if step >= total > 0:
            self.activity = f"evaluating {self._name(p)}"
        return {"status"}

    def _on_node_evaluated(self, p: dict[str, Any]) -> set[str]:
        node = self._node(p)
        if node is None:
            return set()
        node.score = p.get("score")
        node.regressions = p.get("regressions")
        node.metrics = dict(p.get("metrics") or {})
        node.status = str(p.get("status") or "evaluated")
        self.progress = None
        self.activity = f"checking {node.name} against the gates, then planning the next step"
        self._rank()
        return {"graph", "status", "chart"}

    def _on_gate_checked(self, p: dict[str, Any]) -> set[str]:
        node = self._node(p)
        if node is None:
            return set()
        node.gates.append({k: p.get(k) for k in ("gate", "passed", "value", "threshold")})
        if node.status in ("evaluated", "accepted", "rejected"):
            failed = [g["gate"] for g in node.gates if not g["passed"]]
            if failed and set(failed) <= BUDGET_GATES:
                node.status = "close_call"
            elif any(g not in SCORE_GATES for g in failed):
                node.status = "rejected"
            elif not failed:
                node.status = "accepted"
            else:
                node.status = "evaluated"
            self._rank()
        failed = [g["gate"] for g in node.gates if not g["passed"]]
        self.activity = (f"{node.name} failed the {', '.join(failed)} gate; planning the next step" if failed else
                         f"{node.name} passed every gate so far: a promotion needs a person's approval")
        return {"graph", "status", "chart"}

    def _on_rollback(self, p: dict[str, Any]) -> set[str]:
        node = self._node(p)
        if node is not None:
            node.status = "rolled_back"
        self._rank()
        return {"graph", "status", "chart"}

    def _on_promoted(self, p: dict[str, Any]) -> set[str]:
        previous = self.nodes.get(self.deployed_id or "")
        if previous is not None and previous.status == "deployed":
            previous.status = "accepted"
        node = self._node(p)
        if node is not None:
            node.status = "deployed"
            self.deployed_id = node.id
        self._rank()
        return {"graph", "status", "chart"}

    def _on_budget(self, p: dict[str, Any]) -> set[str]:
        self.spent = {k: float(v) for k, v in (p.get("spent") or {}).items() if isinstance(v, int | float)}
        self.limits = {k: float(v) for k, v in (p.get("limits") or {}).items() if isinstance(v, int | float)}
        self.budget_at = self.last_at
        self.clock_paused = bool(p.get("paused"))
        return {"status"}

    def _on_run_finished(self, p: dict[str, Any]) -> set[str]:
        self.state = str(p.get("status") or "finished")
        self.stop_reason = str(p.get("reason") or "")
        self.outcome = str(p.get("outcome") or "")
        self.promoted_model = p.get("promoted_model") or None
        self.progress = None
        if p.get("best_node") in self.nodes:
            self.declared_best = str(p["best_node"])
        self._rank()
        return {"graph", "status"}

    def _rank(self) -> None:
        """Best = the run's declared best, else the highest score among nodes still in the running."""
        if self.declared_best is not None:
            self.best_id = self.declared_best
            return
        ranked = [n for n in self.nodes.values() if n.score is not None and n.status in RANKED_STATUSES]
        self.best_id = max(ranked, key=lambda n: n.score).id if ranked else None


def event_time(event: Event) -> datetime | None:
    """An event's timestamp (ISO-8601, as the store writes it); None when it does not parse."""
    try:
        return datetime.fromisoformat(event.ts)
    except (TypeError, ValueError):
        return None
