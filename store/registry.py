"""Model registry with lineage, and dataset versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.artifacts import atomic_write_jsonl, file_hash
from store.jsoncols import decode, dumps, new_id, now

if TYPE_CHECKING:
    from store.workspace import Store

MODEL_STATUSES = ("candidate", "deployed", "rolled_back", "retired", "failed")
_MODEL_JSON = ("hyperparameters", "metrics")
_DATASET_JSON = ("composition", "qc_report")


class ModelRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(
        self,
        *,
        base_model: str,
        artifact_path: str | Path | None,
        task: str | None = None,
        method: str | None = None,
        parent_id: str | None = None,
        dataset_version_id: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        status: str = "candidate",
        wall_time_s: float | None = None,
        peak_memory_mb: float | None = None,
        name: str | None = None,
        model_id: str | None = None,
    ) -> str:
        """Record a trained model. The artifact must already be complete on disk."""
        if status not in MODEL_STATUSES:
            raise ValueError(f"model status {status!r} is not one of {MODEL_STATUSES}")
        if artifact_path is not None and not Path(artifact_path).exists():
            raise FileNotFoundError(f"model artifact {artifact_path} does not exist: write it before registering")
        model_id = model_id or new_id("m")
        ts = now()
        with self.store.transaction():
            self.store.db["models"].insert({
                "id": model_id, "name": name or model_id, "task": task, "base_model": base_model,
                "parent_id": parent_id, "method": method,
                "artifact_path": str(artifact_path) if artifact_path is not None else None,
                "dataset_version_id": dataset_version_id,
                "hyperparameters": dumps(hyperparameters or {}), "metrics": dumps(metrics or {}),
                "status": status, "wall_time_s": wall_time_s, "peak_memory_mb": peak_memory_mb,
                "created_at": ts, "updated_at": ts,
            })
        return model_id

    def get(self, model_id: str) -> dict[str, Any] | None:
        row = self.store.conn.execute("SELECT * FROM models WHERE id = ? OR name = ?", (model_id, model_id))
        cols = [c[0] for c in row.description]
        found = row.fetchone()
        return decode(dict(zip(cols, found, strict=True)), *_MODEL_JSON) if found else None

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self.store.db.query(f"SELECT * FROM models {where} ORDER BY created_at, id", args)
        return [decode(r, *_MODEL_JSON) for r in rows]

    def set_status(self, model_id: str, status: str) -> None:
        if status not in MODEL_STATUSES:
            raise ValueError(f"model status {status!r} is not one of {MODEL_STATUSES}")
        with self.store.transaction():
            self.store.conn.execute("UPDATE models SET status = ?, updated_at = ? WHERE id = ?",
                                    (status, now(), model_id))

    def update_metrics(self, model_id: str, metrics: dict[str, Any]) -> None:
        current = (self.get(model_id) or {}).get("metrics", {})
        with self.store.transaction():
            self.store.conn.execute("UPDATE models SET metrics = ?, updated_at = ? WHERE id = ?",
                                    (dumps({**current, **metrics}), now(), model_id))

    def deployed(self) -> dict[str, Any] | None:
        rows = self.list("deployed")
        return rows[-1] if rows else None

    def ancestors(self, model_id: str) -> list[dict[str, Any]]:
        """The model and each ancestor (nearest first), each with the dataset version it was trained on."""
        rows = self.store.db.query(
            """
            WITH RECURSIVE chain(id, depth) AS (
                SELECT id, 0 FROM models WHERE id = :id
                UNION ALL
                SELECT m.parent_id, chain.depth + 1 FROM models m JOIN chain ON m.id = chain.id
                WHERE m.parent_id IS NOT NULL
            )
            SELECT m.*, chain.depth, d.artifact_path AS dataset_path, d.content_hash AS dataset_hash
            FROM chain JOIN models m ON m.id = chain.id
            LEFT JOIN dataset_versions d ON d.id = m.dataset_version_id
            ORDER BY chain.depth
            """,
            {"id": model_id},
        )
        return [decode(r, *_MODEL_JSON) for r in rows]


class DatasetVersions:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        rows: list[dict[str, Any]],
        *,
        name: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        run_id: str | None = None,
        composition: dict[str, Any] | None = None,
        qc_report: dict[str, Any] | None = None,
        note: str | None = None,
    ) -> str:
        """Write the rows as JSONL (atomically), then record the version; identical content is reused."""
        version_id = new_id("ds")
        path = self.store.artifacts / "datasets" / f"{version_id}.jsonl"
        atomic_write_jsonl(path, rows)
        digest = file_hash(path)
        with self.store.transaction():
            self.store.db["dataset_versions"].insert({
                "id": version_id, "parent_id": parent_id, "run_id": run_id, "name": name or version_id,
                "task": task, "content_hash": digest, "artifact_path": str(path), "n_rows": len(rows),
                "composition": dumps(composition or {}), "qc_report": dumps(qc_report or {}),
                "note": note, "created_at": now(),
            })
        return version_id

    def get(self, version_id: str) -> dict[str, Any] | None:
        rows = list(self.store.db.query("SELECT * FROM dataset_versions WHERE id = ?", [version_id]))
        return decode(rows[0], *_DATASET_JSON) if rows else None

    def list(self, run_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        rows = self.store.db.query(f"SELECT * FROM dataset_versions {where} ORDER BY created_at, id", args)
        return [decode(r, *_DATASET_JSON) for r in rows]

    def rows(self, version_id: str) -> list[dict[str, Any]]:
        import json

        version = self.get(version_id)
        if version is None:
            raise KeyError(f"dataset version {version_id} not found")
        with open(version["artifact_path"], encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
