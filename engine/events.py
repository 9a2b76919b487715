"""The one event stream. Every step of a run is appended to the store's `events` table *before*
it is published to subscribers, so live views, replays and data-curation.md all read the same log.

Each event type is one frozen dataclass below, and its fields are the only definition of what the
event says: emitters build one and call `EventBus.emit(event)`; the TUI's fold, data-curation.md,
the report and the headless printers `decode` the stored event and read the same attributes.
`encode(event) -> (type, payload)` gives the JSON object the store keeps, `decode(stored) -> event`
reads it back.

Decoding is lenient because a workspace keeps the events of every version that ever wrote to it: a
field an older version did not write takes its default (a gate's `rule`, a train step's `model_id`,
a run's `outcome`), and keys this version does not know are kept in `extra` and written back by
`encode`, so re-emitting a decoded event (a fork adopting its source's taxonomy) loses nothing.
Fields that emitters write only when they apply (`_when_set`) are left out of the payload otherwise,
so payloads keep the shape they always had.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from engine.gate_text import gate_words
from store import Event, Store

Subscriber = Callable[[Event], None]


def _when_set(default: Any = None) -> Any:
    """A field written only when it differs from its default (emitters add it only when it applies)."""
    return field(default=default, metadata={"when_set": True})


def _records(of: type[Record] | None = None, default: Any = ()) -> Any:
    """A tuple field stored as a JSON list: of nested records (`of`), or of plain values."""
    return field(default=default, metadata={"records": of, "when_set": default is None})


def _json(value: Any) -> Any:
    """A field's value as plain JSON data (records as objects, tuples as lists), copied."""
    if isinstance(value, Record):
        return value.to_payload()
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class Record:
    """A JSON object with known fields; keys it does not know ride along in `extra`."""

    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        payload = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "extra" and not (f.metadata.get("when_set") and value == f.default):
                payload[f.name] = _json(value)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Self:
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for name, f in known.items():
            if name not in payload:
                continue  # written by a version before the field existed: its default
            value = payload[name]
            if "records" in f.metadata and isinstance(value, list | tuple):
                of = f.metadata["records"]
                value = tuple(of.from_payload(v) if of is not None and isinstance(v, Mapping) else v for v in value)
            values[name] = value
        try:
            return cls(**values, extra={k: v for k, v in payload.items() if k not in known})
        except TypeError as exc:  # a field every version writes is missing: the stream is damaged
            raise ValueError(f"{cls.__name__} payload {dict(payload)!r} is incomplete: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class EngineEvent(Record):
    """One step of a run; `TYPE` is the name it is stored under."""

    TYPE: ClassVar[str]


# -- the event types, in the order a run emits them ---------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class RunStarted(EngineEvent):
    TYPE: ClassVar[str] = "run_started"
    mode: str
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ClusterExample(Record):
    """A representative failing trace of a cluster (prediction and correction as the task's JSON text)."""

    trace_id: str = ""
    input: str = ""
    prediction: str | None = ""
    correction: str | None = ""
    reasoning: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cluster(Record):
    """One failure cluster as the taxonomy reports it (engine.diagnosis.taxonomy.FailureCluster.to_dict;
    its other keys, e.g. trace_ids and labels, stay in `extra`)."""

    id: str = ""
    name: str = ""
    kind: str = ""
    size: int = 0
    fixability: str = ""
    confirmation_rate: float | None = None
    characteristics: Mapping[str, Any] = field(default_factory=dict)
    examples: tuple[ClusterExample, ...] = _records(ClusterExample)


@dataclass(frozen=True, kw_only=True)
class TaxonomyBuilt(EngineEvent):
    """The failure taxonomy of the traces diagnosed (no failures: no clusters). `triage` counts the
    fixable / poison verdicts; `stats` is the taxonomy's own bookkeeping."""

    TYPE: ClassVar[str] = "taxonomy_built"
    clusters: tuple[Cluster, ...] = _records(Cluster)
    task: str | None = _when_set()
    n_fail: int | None = _when_set()
    n_pass: int | None = _when_set()
    stats: Mapping[str, Any] | None = _when_set()
    triage: Mapping[str, Any] | None = _when_set()


@dataclass(frozen=True, kw_only=True)
class NodeAdded(EngineEvent):
    TYPE: ClassVar[str] = "node_added"
    node_id: str
    parent_id: str | None = None
    operator: str = ""
    iteration: int = 0
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    rationale: str | None = None


@dataclass(frozen=True, kw_only=True)
class CurriculumProposed(EngineEvent):
    """A curriculum waiting for review: its dataset version, slice sizes and quality-control report."""

    TYPE: ClassVar[str] = "curriculum_proposed"
    node_id: str
    dataset_version_id: str | None = None
    composition: Mapping[str, Any] = field(default_factory=dict)
    qc: Mapping[str, Any] = field(default_factory=dict)
    carried: str = ""  # the person's earlier edits it carries (engine.search.loop), in a sentence


@dataclass(frozen=True, kw_only=True)
class DecisionRecorded(EngineEvent):
    """A decision as stored (store.runs.record_decision): `diff` holds an edit's row changes, a veto's
    `reasons` and a close call's `override` marker."""

    TYPE: ClassVar[str] = "decision_recorded"
    kind: str
    action: str
    who: str
    decision_id: int | None = None
    reason: str | None = None
    node_id: str | None = None
    dataset_version_id: str | None = None
    diff: Mapping[str, Any] = field(default_factory=dict)

    @property
    def override(self) -> bool:
        """A person's answer to a close call (promote anyway, or keep the deployed model)."""
        return bool(self.diff.get("override"))


@dataclass(frozen=True, kw_only=True)
class TrainStarted(EngineEvent):
    """`total_steps` is the loop's estimate; the trainer's own count arrives with its first progress."""

    TYPE: ClassVar[str] = "train_started"
    node_id: str
    total_steps: int = 0
    model_id: str | None = None
    dataset_version_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class TrainProgress(EngineEvent):
    TYPE: ClassVar[str] = "train_progress"
    node_id: str
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    examples_per_s: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class NodeEvaluated(EngineEvent):
    """A node's result: `regressions` is None for a root scored on its own traces; `status` "failed"
    carries the error in `metrics["error"]`."""

    TYPE: ClassVar[str] = "node_evaluated"
    node_id: str
    score: float | None = None
    regressions: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    status: str = "evaluated"


@dataclass(frozen=True, kw_only=True)
class GateChecked(EngineEvent):
    """One gate's verdict: `value rule threshold` (rule ">=", "<=" or ">") under the promotion rule
    `gate_rule` ("traffic", "strict" or "stop"). What failing it means for the candidate is the gates
    module's to say (engine.search.gates.standing)."""

    TYPE: ClassVar[str] = "gate_checked"
    node_id: str
    gate: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    rule: str | None = None
    gate_rule: str | None = None

    @property
    def words(self) -> tuple[str, str, str]:
        """(what the gate measures, its value, what it must be), as every view shows them."""
        return gate_words({"gate": self.gate, "value": self.value, "threshold": self.threshold, "rule": self.rule})


@dataclass(frozen=True, kw_only=True)
class Rollback(EngineEvent):
    TYPE: ClassVar[str] = "rollback"
    from_model: str
    to_model: str
    node_id: str | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Promoted(EngineEvent):
    """`override` is a person's reason to promote a close call (it failed only the regression budget)."""

    TYPE: ClassVar[str] = "promoted"
    node_id: str
    model_id: str
    score: float | None = None
    override: str | None = None


@dataclass(frozen=True, kw_only=True)
class CurationNote(EngineEvent):
    """Markdown for data-curation.md: a section of its own, or a line of `node_id`'s iteration. Cold
    start attaches the structured data behind its setup notes (search and chosen for the data search,
    analysis, schema, data, report, dataset_version_id, baselines) for tools that read the stream."""

    TYPE: ClassVar[str] = "curation_note"
    section: str
    markdown: str
    node_id: str | None = _when_set()
    analysis: Mapping[str, Any] | None = _when_set()
    schema: Mapping[str, Any] | None = _when_set()
    data: Mapping[str, Any] | None = _when_set()
    report: Mapping[str, Any] | None = _when_set()
    dataset_version_id: str | None = _when_set()
    baselines: Mapping[str, Any] | None = _when_set()
    search: Mapping[str, Any] | None = _when_set()
    chosen: Sequence[Mapping[str, Any]] | None = _when_set()


@dataclass(frozen=True, kw_only=True)
class BudgetSpent(EngineEvent):
    """What the run spent against its limits (engine.search.budget); `paused` while a person decides,
    when the wall clock stops."""

    TYPE: ClassVar[str] = "budget"
    spent: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = _when_set(False)


@dataclass(frozen=True, kw_only=True)
class RunFinished(EngineEvent):
    """How the run ended. `outcome` is the decision in words; candidates a person refused are listed in
    `refused`; a close call left to a person names its node, the command that promotes it and the passes
    it broke (`broken`: id, input, expected, prediction)."""

    TYPE: ClassVar[str] = "run_finished"
    status: str
    reason: str = ""
    best_node: str | None = None
    best_score: float | None = None
    promoted_model: str | None = None
    outcome: str = ""
    refused: tuple[str, ...] | None = _records(default=None)
    close_call: str | None = _when_set()
    promote_command: str | None = _when_set()
    broken: tuple[Mapping[str, Any], ...] | None = _records(default=None)


EVENT_CLASSES: tuple[type[EngineEvent], ...] = (
    RunStarted, TaxonomyBuilt, NodeAdded, CurriculumProposed, DecisionRecorded, TrainStarted, TrainProgress,
    NodeEvaluated, GateChecked, Rollback, Promoted, CurationNote, BudgetSpent, RunFinished,
)
BY_TYPE: dict[str, type[EngineEvent]] = {cls.TYPE: cls for cls in EVENT_CLASSES}
EVENT_TYPES: tuple[str, ...] = tuple(BY_TYPE)


def encode(event: EngineEvent) -> tuple[str, dict[str, Any]]:
    """The (type, payload) the store keeps for an event."""
    return event.TYPE, event.to_payload()


def decode(event: Event) -> EngineEvent:
    """A stored event as its typed object (older shapes included, see the module docstring)."""
    cls = BY_TYPE.get(event.type)
    if cls is None:
        raise ValueError(f"unknown event type {event.type!r} (run {event.run_id}, seq {event.seq})")
    return cls.from_payload(event.payload)


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

    def emit(self, event: EngineEvent) -> Event:
        stored = self.store.runs.append_event(self.run_id, *encode(event))
        self.store.after_commit(lambda: self._publish(stored))
        return stored

    def _publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            fn(event)

    def history(self) -> list[Event]:
        return self.store.runs.events(self.run_id)
