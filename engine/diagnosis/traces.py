"""The trace data model: judged traces decoded from the store's `traces` view (outputs in their task
type's canonical form, engine.tasks) and the labelled pools diagnosis compares failures with.

The `traces` view holds the effective verdict (a person's verdict wins over the judge's) and
`correction` is y*, the person's output when there is one; `Trace.from_row` decodes that shape.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, DatasetError
from engine.records import TASKS, Example
from engine.tasks import task_type

if TYPE_CHECKING:
    from store import Store


# --------------------------------------------------------------------------------------------
# Traces and pools
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trace:
    """One judged inference, decoded. `verdict` and `correction` are the effective ones."""

    id: str
    input: str
    prediction: Any
    correction: Any
    verdict: str
    task: str
    metadata: dict = field(default_factory=dict)
    reasoning: str | None = None
    human_verdict: str | None = None

    @property
    def gold(self) -> Any:
        """The right answer when known: y* for a failure; the prediction itself for a pass."""
        if self.correction is not None:
            return self.correction
        return self.prediction if self.verdict == "pass" else None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], task: str | None = None) -> Trace:
        """Decode a `traces` view row (or a raw trace_records row): a person's verdict / output win."""
        tid = str(row.get("id") or "")
        where = f"trace {tid or '<no id>'}"
        if not tid:
            raise DatasetError(f"{where}: field id is missing; every trace needs an id")
        task = row.get("task") or task
        if task not in TASKS:
            raise DatasetError(f"{where}: field task is {task!r}; set it to one of {', '.join(TASKS)} "
                             "(or pass task=...)")
        verdict = _first_set(row, "human_verdict", "verdict", "auto_verdict")
        if verdict not in ("pass", "fail"):
            raise DatasetError(f"{where}: verdict is {verdict!r}; it must be pass or fail")
        text = row.get("input")
        if not isinstance(text, str):
            raise DatasetError(f"{where}: field input must be text")
        metadata = row.get("metadata") or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: field metadata is not valid JSON ({exc.msg})") from exc
        if not isinstance(metadata, dict):
            raise DatasetError(f"{where}: field metadata must be a JSON object")
        return cls(
            id=tid, input=text, task=task, verdict=verdict, metadata=metadata,
            prediction=task_type(task).parse(row.get("prediction"), f"{where} field prediction"),
            correction=task_type(task).parse(_first_set(row, "human_output", "correction"),
                                             f"{where} field correction"),
            reasoning=row.get("reasoning"), human_verdict=row.get("human_verdict"),
        )


def _first_set(row: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if row.get(key) is not None:
            return row[key]
    return None


@dataclass(frozen=True)
class LabelledText:
    """An input with a known right answer, from the trace pool or the training pool (D_parent)."""

    id: str
    input: str
    output: Any
    origin: str


def pool_from_traces(traces: Iterable[Trace]) -> list[LabelledText]:
    return [LabelledText(t.id, t.input, t.gold, "trace") for t in traces if t.gold is not None]


def pool_from_rows(rows: Iterable[Mapping[str, Any] | Example], task: str, origin: str = "parent") -> list[LabelledText]:
    """Training rows ({input, output, id?} dicts or Examples) as a pool; ids default to origin:index."""
    pool = []
    for i, row in enumerate(rows):
        if isinstance(row, Example):
            text, out, rid = row.input, row.output, row.id
        else:
            text, out, rid = row.get("input"), row.get("output"), row.get("id")
        where = f"{origin} row {rid or i}"
        if not isinstance(text, str):
            raise DatasetError(f"{where}: field input must be text")
        output = task_type(task).parse(out, f"{where} field output")
        if output is None:
            raise DatasetError(f"{where}: field output is missing")
        pool.append(LabelledText(str(rid) if rid is not None else f"{origin}:{i}", text, output, origin))
    return pool


@dataclass(frozen=True)
class TraceWindow:
    """Which of a model's traces a run reads: those with `since <= ts < until` (ISO timestamps, either
    open), and at most `max_traces` of them, a seeded sample stratified by verdict (the pass/fail mix
    kept), so a run over a million logged inferences reads a bounded, representative slice."""

    since: str | None = None
    until: str | None = None
    max_traces: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_traces is not None and self.max_traces < 10:
            raise ConfigError(f"max_traces={self.max_traces} is invalid: use at least 10, or unset for all")
        if self.since and self.until and self.since >= self.until:
            raise ConfigError(f"the trace window since {self.since} until {self.until} is empty: since must be earlier")

    def where(self, model_ids: Sequence[str]) -> tuple[str, list[Any]]:
        clauses = [f"model_id IN ({', '.join('?' * len(model_ids))})"]
        args: list[Any] = list(model_ids)
        if self.since:
            clauses.append("ts >= ?")
            args.append(self.since)
        if self.until:
            clauses.append("ts < ?")
            args.append(self.until)
        return " AND ".join(clauses), args


def load_traces(store: Store, model_id: str | None = None, task: str | None = None) -> list[Trace]:
    """Read the `traces` view (the one place the human-over-judge rule lives)."""
    sql, args = "SELECT * FROM traces", []
    if model_id:
        sql, args = sql + " WHERE model_id = ?", [model_id]
    rows = store.db.query(sql + " ORDER BY ts, id", args)
    return [Trace.from_row(r, task) for r in rows]


def load_window(store: Store, model_ids: Sequence[str], task: str | None, window: TraceWindow
                ) -> tuple[list[Trace], int]:
    """(the window's traces, sampled when it holds more than max_traces; how many the window holds)."""
    where, args = window.where(model_ids)
    if window.max_traces is None:  # the whole window in one indexed read
        traces = [Trace.from_row(r, task) for r in store.db.query(f"SELECT * FROM traces WHERE {where} "
                                                                  "ORDER BY ts, id", args)]
        return traces, len(traces)
    keys = store.conn.execute(f"SELECT id, verdict FROM traces WHERE {where} ORDER BY ts, id", args).fetchall()
    chosen = [k[0] for k in keys]
    if len(keys) > window.max_traces:
        rng = random.Random(window.seed)
        by_verdict: dict[str, list[str]] = {}
        for tid, verdict in keys:
            by_verdict.setdefault(verdict, []).append(tid)
        picked: set[str] = set()
        for verdict in sorted(by_verdict):
            ids = by_verdict[verdict]
            picked.update(rng.sample(ids, max(1, round(window.max_traces * len(ids) / len(keys)))))
        chosen = [k[0] for k in keys if k[0] in picked]
    traces: list[Trace] = []
    for start in range(0, len(chosen), 500):  # SQLite's variable limit
        part = chosen[start:start + 500]
        rows = store.db.query(f"SELECT * FROM traces WHERE id IN ({', '.join('?' * len(part))}) ORDER BY ts, id",
                              part)
        traces += [Trace.from_row(r, task) for r in rows]
    return traces, len(keys)


@dataclass(frozen=True)
class Partition:
    fail: list[Trace]
    pass_: list[Trace]


def partition(traces: Iterable[Trace | Mapping[str, Any]], task: str | None = None) -> Partition:
    fail, pass_ = [], []
    for t in traces:
        trace = t if isinstance(t, Trace) else Trace.from_row(t, task)
        (fail if trace.verdict == "fail" else pass_).append(trace)
    return Partition(fail, pass_)
