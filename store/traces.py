"""Bulk trace writes and the per-(model, input) prediction cache."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.workspace import Store

TRACE_COLUMNS = (
    "id", "ts", "model_id", "task", "input", "prediction", "correction", "auto_verdict", "reasoning",
    "metadata", "human_verdict", "human_output", "latency_ms", "stage", "source", "content_hash",
    "ingested_at",
)


class TraceTable:
    def __init__(self, store: Store) -> None:
        self.store = store

    def insert_many(self, rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows given as tuples in TRACE_COLUMNS order; an existing id is left as it is.

        Returns how many rows were new. Runs inside the caller's transaction when there is one.
        """
        sql = (f"INSERT OR IGNORE INTO trace_records ({', '.join(TRACE_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(TRACE_COLUMNS))})")
        with self.store.transaction():
            before = self.store.conn.total_changes
            self.store.conn.executemany(sql, rows)
            return self.store.conn.total_changes - before

    def count(self, verdict: str | None = None) -> int:
        if verdict:
            return self.store.conn.execute("SELECT COUNT(*) FROM traces WHERE verdict = ?", (verdict,)).fetchone()[0]
        return self.store.conn.execute("SELECT COUNT(*) FROM traces").fetchone()[0]

    def set_human(self, trace_id: str, verdict: str | None, output: str | None, *, who: str | None = None,
                  at: str | None = None) -> None:
        """A person's verdict / output supersede the judge's wherever pass/fail is computed; `who` and
        `at` (default: now, UTC) record the relabel, and clearing both labels clears them too."""
        if verdict not in (None, "pass", "fail"):
            raise ValueError(f"human verdict {verdict!r} must be pass, fail or empty")
        labelled = verdict is not None or output is not None
        when = (at or datetime.now(UTC).isoformat(timespec="seconds")) if labelled else None
        with self.store.transaction():
            cur = self.store.conn.execute(
                "UPDATE trace_records SET human_verdict = ?, human_output = ?, human_by = ?, human_at = ? WHERE id = ?",
                (verdict, output, who if labelled else None, when, trace_id))
            if cur.rowcount == 0:
                raise KeyError(f"trace {trace_id} not found")

    def get(self, trace_id: str) -> dict[str, Any] | None:
        """One trace as the `traces` view shows it (effective verdict and correction), or None."""
        cur = self.store.conn.execute("SELECT * FROM traces WHERE id = ?", (trace_id,))
        row = cur.fetchone()
        return None if row is None else dict(zip([c[0] for c in cur.description], row, strict=True))


class PredictionCache:
    """Predictions keyed by (model key, input hash, threshold): re-evaluating an unchanged model is free."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_many(self, model_key: str, input_hashes: Sequence[str], threshold: str = "") -> dict[str, tuple[str, float]]:
        found: dict[str, tuple[str, float]] = {}
        for i in range(0, len(input_hashes), 500):
            chunk = list(input_hashes[i:i + 500])
            marks = ",".join("?" * len(chunk))
            for h, pred, conf in self.store.conn.execute(
                f"SELECT input_hash, prediction, confidence FROM prediction_cache "
                f"WHERE model_key = ? AND threshold = ? AND input_hash IN ({marks})",
                [model_key, threshold, *chunk],
            ):
                found[h] = (pred, conf)
        return found

    def put_many(self, model_key: str, items: Iterable[tuple[str, str, float]], threshold: str = "") -> None:
        with self.store.transaction():
            self.store.conn.executemany(
                "INSERT OR REPLACE INTO prediction_cache (model_key, input_hash, threshold, prediction, confidence) "
                "VALUES (?, ?, ?, ?, ?)",
                [(model_key, h, threshold, p, c) for h, p, c in items])
