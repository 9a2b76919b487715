"""Runs, the search graph (nodes and edges), per-example evaluations, human decisions and the
append-only event stream."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from store.jsoncols import decode, dumps, new_id, now
from store.redact import redact

if TYPE_CHECKING:
    from store.workspace import Store

RUN_STATUSES = ("running", "finished", "failed", "interrupted", "stopped")


@dataclass(frozen=True)
class Event:
    run_id: str
    seq: int
    ts: str
    type: str
    payload: dict[str, Any]


class RunLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- runs -------------------------------------------------------------------------------
    def create(self, mode: str, config: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        run_id = run_id or new_id("run")
        with self.store.transaction():
            self.store.db["runs"].insert({"id": run_id, "mode": mode, "config": dumps(config or {}),
                                          "status": "running", "spent": "{}", "started_at": now()})
        return run_id

    def get(self, run_id: str) -> dict[str, Any] | None:
        rows = list(self.store.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        return decode(rows[0], "config", "spent") if rows else None

    def list(self) -> list[dict[str, Any]]:
        return [decode(r, "config", "spent")
                for r in self.store.db.query("SELECT * FROM runs ORDER BY started_at, id")]

    def update(self, run_id: str, **fields: Any) -> None:
        if "status" in fields and fields["status"] not in RUN_STATUSES:
            raise ValueError(f"run status {fields['status']!r} is not one of {RUN_STATUSES}")
        fields = {k: dumps(v) if k in ("config", "spent") else redact(v) for k, v in fields.items()}
        with self.store.transaction():
            self.store.db["runs"].update(run_id, fields)

    # -- search graph -----------------------------------------------------------------------
    def add_node(self, run_id: str, pipeline: dict[str, Any], pipeline_hash: str, *,
                 parent_id: str | None = None, iteration: int = 0, rationale: str | None = None,
                 status: str = "proposed", node_id: str | None = None) -> str:
        node_id = node_id or new_id("n")
        with self.store.transaction():
            self.store.db["search_nodes"].insert({
                "id": node_id, "run_id": run_id, "parent_id": parent_id, "iteration": iteration,
                "pipeline": dumps(pipeline), "pipeline_hash": pipeline_hash, "status": status,
                "rationale": redact(rationale), "metrics": "{}", "created_at": now(),
            })
        return node_id

    def update_node(self, node_id: str, **fields: Any) -> None:
        fields = {k: dumps(v) if k in ("pipeline", "metrics") else redact(v) for k, v in fields.items()}
        with self.store.transaction():
            self.store.db["search_nodes"].update(node_id, fields)

    def nodes(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.store.db.query(
            "SELECT * FROM search_nodes WHERE run_id = ? ORDER BY created_at, rowid", [run_id])
        return [decode(r, "pipeline", "metrics") for r in rows]

    def add_edge(self, run_id: str, src: str, dst: str, operator: str,
                 modification: dict[str, Any] | str | None = None, reason: str | None = None) -> None:
        mod = redact(modification) if isinstance(modification, str) or modification is None else dumps(modification)
        with self.store.transaction():
            self.store.db["search_edges"].insert({"run_id": run_id, "src": src, "dst": dst,
                                                  "operator": operator, "modification": mod,
                                                  "reason": redact(reason)}, replace=True)

    def edges(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.store.db.query("SELECT * FROM search_edges WHERE run_id = ? ORDER BY rowid",
                                        [run_id]))

    # -- evaluations ------------------------------------------------------------------------
    def add_evaluations(self, rows: Iterable[dict[str, Any]]) -> int:
        ts = now()
        prepared = [{**r, "created_at": ts} for r in rows]
        with self.store.transaction():
            self.store.db["evaluations"].insert_all(prepared)
        return len(prepared)

    def evaluations(self, node_id: str, eval_set: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM evaluations WHERE node_id = ?", [node_id]
        if eval_set:
            sql, args = sql + " AND eval_set = ?", args + [eval_set]
        return list(self.store.db.query(sql + " ORDER BY id", args))

    # -- decisions --------------------------------------------------------------------------
    def record_decision(self, run_id: str, kind: str, action: str, who: str, *, node_id: str | None = None,
                        reason: str | None = None, diff: dict[str, Any] | None = None,
                        dataset_version_id: str | None = None) -> int:
        with self.store.transaction():
            table = self.store.db["decisions"].insert({
                "run_id": run_id, "node_id": node_id, "kind": kind, "action": action, "who": who,
                "reason": redact(reason), "diff": dumps(diff or {}), "dataset_version_id": dataset_version_id,
                "ts": now(),
            })
        return int(table.last_pk)

    def decisions(self, run_id: str) -> list[dict[str, Any]]:
        return [decode(r, "diff")
                for r in self.store.db.query("SELECT * FROM decisions WHERE run_id = ? ORDER BY id", [run_id])]

    # -- events -----------------------------------------------------------------------------
    def append_event(self, run_id: str, type_: str, payload: dict[str, Any] | None = None) -> Event:
        """Append an event (the next seq for the run) and return it; callers publish only after this."""
        ts = now()
        body = dumps(payload or {})
        with self.store.transaction():
            seq = self.store.conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
            self.store.conn.execute("INSERT INTO events (run_id, seq, ts, type, payload) VALUES (?, ?, ?, ?, ?)",
                                    (run_id, seq, ts, type_, body))
        return Event(run_id, int(seq), ts, type_, decode({"p": body}, "p")["p"])

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        rows = self.store.conn.execute(
            "SELECT run_id, seq, ts, type, payload FROM events WHERE run_id = ? AND seq > ? ORDER BY seq",
            (run_id, after_seq)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], decode({"p": r[4]}, "p")["p"]) for r in rows]
