"""Shared helpers for tests/test_ingest.py and tests/test_query.py: small trace files and a DB fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.ingest import ingest_traces
from store import Store, file_hash


def trace(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid judged trace; `overrides` set fields, a value of None removes the field."""
    record: dict[str, Any] = {
        "ts": f"2026-03-01T10:{i % 60:02d}:00Z", "model_id": "intent-v1", "task": "classification",
        "input": f"request number {i}", "prediction": f"label_{i % 3}", "verdict": "fail" if i % 4 == 0 else "pass",
        "correction": f"label_{(i + 1) % 3}" if i % 4 == 0 else None, "reasoning": "judge says so",
        "metadata": {"judge": "gpt-judge", "criteria": ["exact label"]}, "latency_ms": 10 + i,
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def seeded_workspace(root: Path, n: int = 8) -> Path:
    """A workspace holding n traces, with every connection closed (so the DB file is settled)."""
    with Store(root) as store:
        ingest_traces(store, write_jsonl(root.parent / f"{root.name}-seed.jsonl", [trace(i) for i in range(n)]))
    return root


def db_fingerprint(root: Path) -> str:
    """Hash of the settled database file: compare before / after with no connection open."""
    return file_hash(root / "pioneer.db")
